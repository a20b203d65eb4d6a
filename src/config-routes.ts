// zod (see config.ts): the route list is nested JSON, validated with per-field messages.
import { z } from 'zod'
import type { RouteConfig } from './config.js'

export const httpUrl = z.string().refine((v) => {
  try {
    const u = new URL(v)
    return u.protocol === 'https:' || u.protocol === 'http:'
  } catch {
    return false
  }
}, 'must be an absolute http(s) URL')

/** Paths tokenward itself answers; a route may not shadow them. */
export const RESERVED_PREFIXES = ['/auth', '/healthz', '/readyz', '/metrics']

const routeSchema = z
  .object({
    prefix: z
      .string()
      .regex(/^\/[A-Za-z0-9._~!$&'()*+,;=:@/-]*$/, 'must be an absolute path of plain characters')
      .refine((p) => !p.split('/').some((s) => s === '.' || s === '..'), 'must not contain . or .. segments')
      .refine((p) => !p.includes('//'), 'must not contain empty segments'),
    upstream: httpUrl,
    token: z.enum(['user', 'optional', 'none', 'client']),
    methods: z
      .array(z.string().regex(/^[A-Za-z]+$/, 'must be HTTP method names'))
      .nonempty()
      .optional(),
    scopes: z.array(z.string().min(1)).optional(),
    resource: z.string().url().optional(),
    timeoutMs: z.number().int().positive().max(3_600_000).optional(),
    maxBodyBytes: z.number().int().nonnegative().optional(),
    websocket: z.boolean().optional(),
  })
  .strict()

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
      const where = issue.path.length > 0 ? `[${issue.path.join('].')}`.replace(/\]\.(\w+)$/, '].$1') : ''
      problems.push(`BFF_ROUTES${where} ${issue.message}`)
    }
    return []
  }
  const routes: RouteConfig[] = []
  parsed.data.forEach((r, i) => {
    const prefix = r.prefix.length > 1 ? r.prefix.replace(/\/+$/, '') : r.prefix
    const upstream = new URL(r.upstream)
    if (prefix === '/' || RESERVED_PREFIXES.some((p) => prefix === p || prefix.startsWith(`${p}/`))) {
      problems.push(`BFF_ROUTES[${i}].prefix ${prefix} collides with tokenward's own paths`)
    }
    if (upstream.protocol === 'http:' && !allowHttp) {
      problems.push(`BFF_ROUTES[${i}].upstream must be https:// (set BFF_ALLOW_HTTP=true for development only)`)
    }
    if (upstream.search || upstream.hash || upstream.username || upstream.password) {
      problems.push(`BFF_ROUTES[${i}].upstream must not carry a query, fragment or credentials`)
    }
    if (routes.some((o) => o.prefix === prefix)) problems.push(`BFF_ROUTES[${i}].prefix ${prefix} is listed twice`)
    routes.push(
      Object.freeze({
        prefix,
        upstream,
        token: r.token,
        methods: r.methods?.map((m) => m.toUpperCase()),
        scopes: r.scopes,
        resource: r.resource,
        timeoutMs: r.timeoutMs ?? 30_000,
        maxBodyBytes: r.maxBodyBytes ?? 10 * 1024 * 1024,
        websocket: r.websocket ?? false,
      }),
    )
  })
  if (parsed.data.length === 0) problems.push('BFF_ROUTES must list at least one route')
  // Longest prefix first, so the most specific route wins.
  return routes.sort((a, b) => b.prefix.length - a.prefix.length)
}
