import type { Context } from 'hono'
import { BffError, toErrorResponse } from './errors.js'
import type { IncomingHttpHeaders } from 'node:http'
import { audit, type AuditFields, type Logger } from './log.js'
import type { Session } from './session/sessions.js'
import type { AppEnv, Deps } from './types.js'

type Ctx = Context<AppEnv>

/** The client's address: the socket peer, or what trusted proxies say (client-address.ts). */
export function clientIp(c: Ctx): string | undefined {
  return c.get('client')?.client
}

/** Who asked, as the audit trail records it: the peer address and a bounded User-Agent. */
export function requester(ip: string | undefined, userAgent: string | undefined): { ip: string | undefined; userAgent: string | undefined } {
  return { ip, userAgent: userAgent?.slice(0, 256) }
}

export function auditFields(c: Ctx, fields: AuditFields): AuditFields {
  return { ...requester(clientIp(c), header(c, 'user-agent')), ...fields }
}

export function auditFor(c: Ctx, event: Parameters<typeof audit>[1], fields: AuditFields): void {
  audit(c.get('log'), event, auditFields(c, fields))
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** The caller's `X-Request-Id` when it is well-formed (kept so logs correlate end to end), else undefined. */
export function requestIdFrom(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' && REQUEST_ID.test(value) ? value : undefined
}

/** Logs a refused or failed request: refusals at info, failures at warn, anything unexpected at error. */
export function logRequestError(log: Logger, err: unknown, path: string): void {
  if (err instanceof BffError && err.status < 500) {
    log.info({ code: err.code, detail: err.logDetail, path }, 'request refused')
  } else if (err instanceof BffError) {
    log.warn({ code: err.code, detail: err.logDetail, path }, 'request failed')
  } else {
    // Only the name and message: a stack or cause could carry a token.
    log.error({ err: { name: (err as Error).name, message: (err as Error).message } }, 'unexpected error')
  }
}

/** A JSON error in the contract's shape; `Cache-Control: no-store` always. */
export function errorResponse(c: Ctx, err: unknown): Response {
  const { status, body, headers } = toErrorResponse(err)
  return c.json(body, status as 400, headers)
}

/**
 * A request header. Under @hono/node-server, Node's already-parsed headers are
 * read directly: `c.req.header()` would build a WHATWG Headers object first,
 * a cost that showed in profiles of the proxy path.
 */
export function header(c: Ctx, name: string): string | undefined {
  const incoming = c.env?.incoming
  return incoming ? nodeHeader(incoming.headers, name) : c.req.header(name)
}

/**
 * One cookie's value from the Cookie header. Parsing only the one we need is
 * measurably cheaper on the proxy path than parsing them all; the first
 * occurrence wins, as with hono's parser (`__Host-` cookies cannot be planted
 * by other hosts, RFC 6265bis §4.1.3.2).
 */
export function readCookie(c: Ctx, name: string): string | undefined {
  return cookieValue(header(c, 'cookie'), name)
}

/** One cookie's value from a Cookie header value (see readCookie). */
export function cookieValue(cookies: string | undefined, name: string): string | undefined {
  if (!cookies) return undefined
  let i = 0
  while (i < cookies.length) {
    while (cookies.charCodeAt(i) === 32) i++
    const end = cookies.indexOf(';', i)
    const stop = end < 0 ? cookies.length : end
    if (cookies.startsWith(name, i) && cookies.charCodeAt(i + name.length) === 61 /* = */) {
      let value = cookies.slice(i + name.length + 1, stop).trim()
      if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1)
      return value
    }
    i = stop + 1
  }
  return undefined
}

/** The cookie's handle, or null for a missing, tampered or expired cookie (security model S18). */
export function sessionHandle(c: Ctx, deps: Deps): Promise<string | null> {
  return handleFromCookies(header(c, 'cookie'), deps)
}

/** The session handle sealed in a Cookie header value, or null. */
export async function handleFromCookies(cookies: string | undefined, deps: Deps): Promise<string | null> {
  const sealed = cookieValue(cookies, deps.config.cookie.name)
  const data = await deps.cookies.unseal<{ h?: unknown }>(sealed, deps.config.session.maxAge)
  return typeof data?.h === 'string' && data.h.length === 22 ? data.h : null
}

/** Loads the caller's session; null when there is none. Store outages throw 503. */
export async function currentSession(c: Ctx, deps: Deps, options: { slide: boolean }): Promise<Session | null> {
  const handle = await sessionHandle(c, deps)
  return handle ? deps.sessions.load(handle, options) : null
}

/** One request header from Node's parsed headers, repeated fields joined. */
function nodeHeader(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name]
  return Array.isArray(v) ? v.join(', ') : v
}

/**
 * The static-header CSRF defence (draft-ietf-oauth-browser-based-apps §6.1.3.3.2:
 * the header forces a CORS preflight that tokenward never grants), plus Fetch
 * Metadata and Origin checks as defence in depth (OWASP CSRF cheat sheet;
 * security model S26, S28). Returns why the request fails, or undefined.
 */
export function csrfProblem(headers: IncomingHttpHeaders, config: Deps['config']): string | undefined {
  if (nodeHeader(headers, 'x-csrf') !== '1') return 'missing X-CSRF: 1 header'
  if (nodeHeader(headers, 'sec-fetch-site') === 'cross-site') return 'cross-site request (Sec-Fetch-Site)'
  const origin = nodeHeader(headers, 'origin')
  if (origin !== undefined && origin !== config.publicOrigin) return 'foreign Origin'
  return undefined
}

/** Counts, audits and refuses a request that failed the CSRF checks. */
export function refuseCsrf(deps: Deps, log: Logger, reason: string, fields: AuditFields): never {
  deps.metrics.csrfRejections.inc()
  audit(log, 'csrf_rejected', { ...fields, reason })
  throw new BffError('csrf_failed', 'This request must come from the application itself (X-CSRF: 1, same origin).', { logDetail: reason })
}

export function checkCsrf(c: Ctx, deps: Deps): void {
  const headers = c.env?.incoming?.headers ?? Object.fromEntries(c.req.raw.headers)
  const reason = csrfProblem(headers, deps.config)
  if (reason) refuseCsrf(deps, c.get('log'), reason, auditFields(c, { outcome: 'failure', method: c.req.method, path: c.req.path }))
}

export function wantsHtml(c: Ctx): boolean {
  const accept = c.req.header('accept') ?? ''
  return accept.includes('text/html') && !accept.startsWith('application/json')
}
