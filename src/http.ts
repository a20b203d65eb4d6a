import type { Context } from 'hono'
import { getCookie } from 'hono/cookie'
import { getConnInfo } from '@hono/node-server/conninfo'
import { BffError, toErrorResponse } from './errors.js'
import { audit, type AuditFields } from './log.js'
import type { Session } from './session/sessions.js'
import type { AppEnv, Deps } from './types.js'

type Ctx = Context<AppEnv>

/** The socket's peer address; forwarded headers are not trusted (no proxy allowlist yet). */
export function clientIp(c: Ctx): string | undefined {
  try {
    return getConnInfo(c).remote.address
  } catch {
    return undefined
  }
}

export function auditFields(c: Ctx, fields: AuditFields): AuditFields {
  return { ip: clientIp(c), userAgent: c.req.header('user-agent')?.slice(0, 256), ...fields }
}

export function auditFor(c: Ctx, event: Parameters<typeof audit>[1], fields: AuditFields): void {
  audit(c.get('log'), event, auditFields(c, fields))
}

/** A JSON error in the contract's shape; `Cache-Control: no-store` always. */
export function errorResponse(c: Ctx, err: unknown): Response {
  const { status, body, headers } = toErrorResponse(err)
  return c.json(body, status as 400, headers)
}

/** The cookie's handle, or null for a missing, tampered or expired cookie (SECURITY-CHECKLIST #13). */
export async function sessionHandle(c: Ctx, deps: Deps): Promise<string | null> {
  const sealed = getCookie(c, deps.config.cookie.name)
  const data = await deps.cookies.unseal<{ h?: unknown }>(sealed, deps.config.session.maxAge)
  return typeof data?.h === 'string' && data.h.length === 22 ? data.h : null
}

/** Loads the caller's session; null when there is none. Store outages throw 503. */
export async function currentSession(c: Ctx, deps: Deps, options: { slide: boolean }): Promise<Session | null> {
  const handle = await sessionHandle(c, deps)
  return handle ? deps.sessions.load(handle, options) : null
}

/**
 * The static-header CSRF defence (draft-ietf-oauth-browser-based-apps §6.1.3.3.2:
 * the header forces a CORS preflight that tokenward never grants), plus Fetch
 * Metadata and Origin checks as defence in depth (OWASP CSRF cheat sheet;
 * SECURITY-CHECKLIST #20, #22).
 */
export function checkCsrf(c: Ctx, deps: Deps): void {
  let reason: string | undefined
  if (c.req.header('x-csrf') !== '1') reason = 'missing X-CSRF: 1 header'
  else if (c.req.header('sec-fetch-site') === 'cross-site') reason = 'cross-site request (Sec-Fetch-Site)'
  else {
    const origin = c.req.header('origin')
    if (origin !== undefined && origin !== deps.config.publicOrigin) reason = 'foreign Origin'
  }
  if (reason) {
    deps.metrics.csrfRejections.inc()
    auditFor(c, 'csrf_rejected', { outcome: 'failure', reason, method: c.req.method, path: c.req.path })
    throw new BffError('csrf_failed', 'This request must come from the application itself (X-CSRF: 1, same origin).', {
      logDetail: reason,
    })
  }
}

export function wantsHtml(c: Ctx): boolean {
  const accept = c.req.header('accept') ?? ''
  return accept.includes('text/html') && !accept.startsWith('application/json')
}
