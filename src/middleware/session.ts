import type { Context } from 'hono'
import type { RouteConfig } from '../config.js'
import { LoginRequiredError } from '../errors.js'
import { clientIp, requester } from '../http/audit.js'
import { cookieValue, header } from '../http/headers.js'
import { audit, type Logger } from '../log.js'
import type { Session } from '../session/sessions.js'
import type { AppEnv, Deps } from '../types.js'

/**
 * The caller's session, read from the session cookie: by a route's token mode
 * for proxied calls and WebSocket handshakes, or as a Hono route asks.
 */

/** The session handle sealed in a Cookie header value, or null for a missing, tampered or expired cookie (security model S18). */
export async function handleFromCookies(cookies: string | undefined, deps: Pick<Deps, 'config' | 'cookies'>): Promise<string | null> {
  const sealed = cookieValue(cookies, deps.config.cookie.name)
  const data = await deps.cookies.unseal<{ h?: unknown }>(sealed, deps.config.session.maxAge)
  return typeof data?.h === 'string' && data.h.length === 22 ? data.h : null
}

/** Who asked, for the audit trail of a refused bound cookie. */
type Asker = { ip: string | undefined; userAgent: string | undefined }

/**
 * Device Bound Session Credentials (security model S86): a session bound to a
 * device key is reached only with its short-lived bound cookie, unexpired; the
 * long-lived session cookie alone is what an infostealer copies. Sessions that
 * never registered a key pass as before. The refusal is audited: it is what a
 * stolen cookie looks like once its bound cookie ran out.
 */
async function bindingHolds(deps: Deps, session: Session, cookies: string | undefined, log: Logger, who: Asker): Promise<boolean> {
  if (!deps.dbsc.required(session)) return true
  const problem = await deps.dbsc.cookieProblem(cookies, session)
  if (problem === undefined) return true
  deps.metrics.dbscRejections.inc({ reason: 'cookie' })
  audit(log, 'dbsc_cookie_refused', {
    outcome: 'failure',
    sub: session.data.sub,
    sid: session.sid,
    reason: `bound cookie ${problem}`,
    ...who,
  })
  return false
}

const UNBOUND_MESSAGE = 'This session is bound to a device; its device-bound cookie is missing or expired. Sign in again.'

/**
 * The session a route's token mode asks for: `user` needs one (401
 * login_required without), `optional` takes one when there is one, `none` and
 * `client` read none. Proxied calls slide the idle timeout (security model:
 * sliding, server-side sessions). Store outages throw 503.
 */
export async function routeSession(
  deps: Deps,
  token: RouteConfig['token'],
  cookies: string | undefined,
  log: Logger = deps.logger,
  who: Asker = { ip: undefined, userAgent: undefined },
): Promise<Session | null> {
  if (token !== 'user' && token !== 'optional') return null
  const handle = await handleFromCookies(cookies, deps)
  const session = handle ? await deps.sessions.load(handle, { slide: true }) : null
  if (session && !(await bindingHolds(deps, session, cookies, log, who))) {
    if (token === 'user') throw new LoginRequiredError(UNBOUND_MESSAGE)
    return null
  }
  if (!session && token === 'user') throw new LoginRequiredError()
  return session
}

/** The handle of a Hono request's session cookie, or null. */
export function sessionHandle(c: Context<AppEnv>, deps: Deps): Promise<string | null> {
  return handleFromCookies(header(c, 'cookie'), deps)
}

/**
 * Loads a Hono request's session; null when there is none, or when it is bound
 * to a device and the bound cookie is missing or expired (bindingHolds). Store
 * outages throw 503.
 */
export async function currentSession(c: Context<AppEnv>, deps: Deps, options: { slide: boolean }): Promise<Session | null> {
  const session = await sessionIgnoringBinding(c, deps, options)
  if (!session) return null
  const holds = await bindingHolds(deps, session, header(c, 'cookie'), c.get('log'), requester(clientIp(c), header(c, 'user-agent')))
  return holds ? session : null
}

/**
 * The session of the long-lived cookie alone: only for the endpoints that
 * give out the bound cookie (src/routes/dbsc.ts) and for replacing a session at
 * login. Everything else uses currentSession or routeSession.
 */
export async function sessionIgnoringBinding(c: Context<AppEnv>, deps: Deps, options: { slide: boolean }): Promise<Session | null> {
  const handle = await sessionHandle(c, deps)
  return handle ? deps.sessions.load(handle, options) : null
}
