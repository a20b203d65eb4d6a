// zod (see config.ts): the route list is nested JSON, validated with per-field messages.
import { z } from 'zod'
import type { RouteConfig } from './config.js'
import { normaliseSegment } from './proxy/paths.js'
import { METHOD_NAME_RE, RESERVED_PREFIXES, SCOPE_TOKEN_RE } from './protocol.js'

export const httpUrl = z.string().refine((v) => {
  try {
    const u = new URL(v)
    return u.protocol === 'https:' || u.protocol === 'http:'
  } catch {
    return false
  }
}, 'must be an absolute http(s) URL')

const NO_PREFIXES: readonly string[] = Object.freeze([])

const scopeToken = z.string().regex(SCOPE_TOKEN_RE, 'must be scope tokens (RFC 6749 §3.3): no spaces, quotes or backslashes')

/**
 * A route's token-exchange target (RFC 8693 §2.1). Neither value may contain
 * whitespace: besides being what IdPs expect, it keeps the session cache key of
 * an exchange (exchangeKey in src/tokens/exchange.ts) free of spaces, and so
 * distinct from every refresh-audience key.
 */
const tokenExchangeSchema = z
  .object({
    audience: z
      .string()
      .min(1, 'must not be empty')
      .refine((v) => !/[\s\p{Cc}]/u.test(v), 'must be one name without whitespace or control characters')
      .optional(),
    resource: z
      .string()
      .refine((v) => {
        // RFC 8707 §2: an absolute URI without a fragment.
        if (/[\s\p{Cc}#]/u.test(v)) return false
        try {
          new URL(v)
          return true
        } catch {
          return false
        }
      }, 'must be an absolute URI without whitespace or fragment (RFC 8707 §2)')
      .optional(),
    scopes: z.array(scopeToken).nonempty('must list at least one scope (or be left out)').optional(),
  })
  .strict()
  .refine((t) => t.audience !== undefined || t.resource !== undefined, 'needs an audience or a resource (RFC 8693 §2.1), or both')

const routeSchema = z
  .object({
    prefix: z
      .string()
      .regex(/^\/[A-Za-z0-9._~!$&'()*+,;=:@/-]*$/, 'must be an absolute path of plain characters')
      .refine((p) => !p.split('/').some((s) => s === '.' || s === '..'), 'must not contain . or .. segments')
      .refine((p) => !p.includes('//'), 'must not contain empty segments'),
    upstream: httpUrl,
    token: z.enum(['user', 'optional', 'none', 'client']),
    methods: z.array(z.string().regex(METHOD_NAME_RE, 'must be HTTP method names')).nonempty().optional(),
    scopes: z.array(z.string().min(1)).optional(),
    resource: z.string().url().optional(),
    timeoutMs: z.number().int().positive().max(3_600_000).optional(),
    maxBodyBytes: z.number().int().nonnegative().optional(),
    websocket: z.boolean().optional(),
    tokenExchange: tokenExchangeSchema.optional(),
    mtls: z.boolean().optional(),
  })
  .strict()

/** A zod issue path as the variable's reader writes it: `[0].tokenExchange.scopes[1]`. */
function fieldPath(path: ReadonlyArray<PropertyKey>): string {
  return path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('')
}

/** Parses BFF_ROUTES; problems are appended to `problems`, naming the route index and field. */
export function parseRoutes(raw: string | undefined, allowHttp: boolean, problems: string[]): RouteConfig[] {
  if (raw === undefined) return []
  let json: unknown
  try {
    json = JSON.parse(raw)
  } catch {
    problems.push('BFF_ROUTES must be valid JSON (an array of routes)')
    return []
  }
  const parsed = z.array(routeSchema).safeParse(json)
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      problems.push(`BFF_ROUTES${fieldPath(issue.path)} ${issue.message}`)
    }
    return []
  }
  const prefixes = parsed.data.map((r) => (r.prefix.length > 1 ? r.prefix.replace(/\/+$/, '') : r.prefix))
  // The form mapRequest matches paths on (src/proxy/paths.ts): prefixes have no `%` to decode.
  const matchPrefixes = prefixes.map((p) => p.split('/').map(normaliseSegment).join('/'))
  const routes: RouteConfig[] = []
  parsed.data.forEach((r, i) => {
    const prefix = prefixes[i]!
    const matchPrefix = matchPrefixes[i]!
    const upstream = new URL(r.upstream)
    if (prefix === '/' || RESERVED_PREFIXES.some((p) => prefix === p || prefix.startsWith(`${p}/`))) {
      problems.push(`BFF_ROUTES[${i}].prefix ${prefix} collides with tokenward's own paths`)
    }
    if (upstream.protocol === 'http:' && !allowHttp) {
      problems.push(`BFF_ROUTES[${i}].upstream must be https:// (set BFF_ALLOW_HTTP=true for development only)`)
    }
    // A client certificate is a TLS handshake: over plain http there is none to present (RFC 8705 §3).
    if (r.mtls === true && upstream.protocol !== 'https:') problems.push(`BFF_ROUTES[${i}].mtls needs an https:// upstream`)
    if (upstream.search || upstream.hash || upstream.username || upstream.password) {
      problems.push(`BFF_ROUTES[${i}].upstream must not carry a query, fragment or credentials`)
    }
    if (routes.some((o) => o.prefix === prefix)) problems.push(`BFF_ROUTES[${i}].prefix ${prefix} is listed twice`)
    else {
      // Two routes an upstream may not tell apart (it ignores case or drops `;`
      // parameters) would leave it to chance which policy a path gets.
      const twin = routes.find((o) => o.matchPrefix === matchPrefix)
      if (twin)
        problems.push(
          `BFF_ROUTES[${i}].prefix ${prefix} is the same path as ${twin.prefix} once letters are case-folded and ";" parameters removed`,
        )
    }
    if (prefix !== '/' && matchPrefix.slice(1).split('/').includes(''))
      problems.push(`BFF_ROUTES[${i}].prefix ${prefix} has a segment made only of ";" parameters`)
    const nested = matchPrefixes.filter((m) => m.startsWith(`${matchPrefix}/`))
    if (r.tokenExchange) {
      // RFC 8693 exchanges the user's token: a route without a user session has none to exchange.
      if (r.token !== 'user' && r.token !== 'optional') {
        problems.push(
          `BFF_ROUTES[${i}].tokenExchange needs token "user" or "optional" (it exchanges the user's access token), not "${r.token}"`,
        )
      }
      // Two policies for one upstream token would be ambiguous: the exchange names its own audience and scopes.
      if (r.resource !== undefined || r.scopes !== undefined) {
        problems.push(
          `BFF_ROUTES[${i}].tokenExchange cannot be combined with the route's own resource or scopes: give them inside tokenExchange`,
        )
      }
    }
    routes.push(
      Object.freeze({
        prefix,
        matchPrefix,
        nestedPrefixes: nested.length === 0 ? NO_PREFIXES : Object.freeze(nested),
        upstream,
        token: r.token,
        methods: r.methods?.map((m) => m.toUpperCase()),
        scopes: r.scopes,
        resource: r.resource,
        timeoutMs: r.timeoutMs ?? 30_000,
        maxBodyBytes: r.maxBodyBytes ?? 10 * 1024 * 1024,
        websocket: r.websocket ?? false,
        tokenExchange: r.tokenExchange
          ? Object.freeze({
              audience: r.tokenExchange.audience,
              resource: r.tokenExchange.resource,
              scopes: r.tokenExchange.scopes ? Object.freeze([...r.tokenExchange.scopes]) : undefined,
            })
          : undefined,
        mtls: r.mtls,
      }),
    )
  })
  if (parsed.data.length === 0) problems.push('BFF_ROUTES must list at least one route')
  // Longest prefix first, so the most specific route wins.
  return routes.sort((a, b) => b.prefix.length - a.prefix.length)
}
