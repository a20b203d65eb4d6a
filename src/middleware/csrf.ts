import type { IncomingHttpHeaders } from 'node:http'
import type { Context } from 'hono'
import { BffError } from '../errors.js'
import { clientIp, requester } from '../http/audit.js'
import { header, nodeHeader, requestHeaders } from '../http/headers.js'
import { audit, type AuditFields, type Logger } from '../log.js'
import type { AppEnv, Deps } from '../types.js'

/**
 * Cross-site request forgery checks (security model S26, S28), one core for
 * every endpoint a browser reaches with its cookie; the rules differ only by
 * what the browser can send:
 *
 * - `api` (proxied calls, /auth/session, POST /auth/logout): the static
 *   `X-CSRF: 1` header, which forces a CORS preflight tokenward never grants
 *   (draft-ietf-oauth-browser-based-apps §6.1.3.3.2), plus Fetch Metadata and
 *   Origin as defence in depth (OWASP CSRF cheat sheet).
 * - `stream` (/auth/events): EventSource cannot send a header, so Fetch
 *   Metadata and Origin alone.
 * - `websocket` (handshakes): no header either, and an Origin that must be
 *   present and exact (cross-site WebSocket hijacking; RFC 6455 §10.2: browsers
 *   always send it on a handshake, §4.1).
 */
export type CsrfRule = 'api' | 'stream' | 'websocket'

/** Why the request fails `rule`, or undefined when it passes. */
export function csrfProblem(headers: IncomingHttpHeaders, publicOrigin: string, rule: CsrfRule): string | undefined {
  if (rule === 'api' && nodeHeader(headers, 'x-csrf') !== '1') return 'missing X-CSRF: 1 header'
  if (nodeHeader(headers, 'sec-fetch-site') === 'cross-site') return 'cross-site request (Sec-Fetch-Site)'
  const origin = nodeHeader(headers, 'origin')
  if (origin === undefined) return rule === 'websocket' ? 'no Origin' : undefined
  return origin === publicOrigin ? undefined : 'foreign Origin'
}

const REFUSALS: Record<CsrfRule, { message: string; reason: (problem: string) => string }> = {
  api: { message: 'This request must come from the application itself (X-CSRF: 1, same origin).', reason: (p) => p },
  stream: { message: 'The event stream is for the application itself.', reason: (p) => `cross-site event stream: ${p}` },
  websocket: {
    message: 'WebSocket connections must come from the application itself.',
    reason: (p) => `websocket handshake from another origin: ${p}`,
  },
}

/** Counts, audits and refuses a request that failed the CSRF checks of `rule`. */
export function refuseCsrf(deps: Pick<Deps, 'metrics'>, log: Logger, rule: CsrfRule, problem: string, fields: AuditFields): never {
  const { message, reason } = REFUSALS[rule]
  deps.metrics.csrfRejections.inc()
  audit(log, 'csrf_rejected', { ...fields, reason: reason(problem) })
  throw new BffError('csrf_failed', message, { logDetail: reason(problem) })
}

/** The CSRF check of a Hono route: throws the refusal (see refuseCsrf). */
export function checkCsrf(c: Context<AppEnv>, deps: Deps, rule: CsrfRule = 'api'): void {
  const problem = csrfProblem(requestHeaders(c), deps.config.publicOrigin, rule)
  if (problem) {
    refuseCsrf(deps, c.get('log'), rule, problem, {
      ...requester(clientIp(c), header(c, 'user-agent')),
      outcome: 'failure',
      method: c.req.method,
      path: c.req.path,
    })
  }
}
