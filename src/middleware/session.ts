import type { Context } from 'hono'
import type { RouteConfig } from '../config.js'
import { LoginRequiredError } from '../errors.js'
import { cookieValue, header } from '../http/headers.js'
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

/**
 * The session a route's token mode asks for: `user` needs one (401
 * login_required without), `optional` takes one when there is one, `none` and
 * `client` read none. Proxied calls slide the idle timeout (security model:
 * sliding, server-side sessions). Store outages throw 503.
 */
export async function routeSession(deps: Deps, token: RouteConfig['token'], cookies: string | undefined): Promise<Session | null> {
  if (token !== 'user' && token !== 'optional') return null
  const handle = await handleFromCookies(cookies, deps)
  const session = handle ? await deps.sessions.load(handle, { slide: true }) : null
  if (!session && token === 'user') throw new LoginRequiredError()
  return session
}

/** The handle of a Hono request's session cookie, or null. */
export function sessionHandle(c: Context<AppEnv>, deps: Deps): Promise<string | null> {
  return handleFromCookies(header(c, 'cookie'), deps)
}

/** Loads a Hono request's session; null when there is none. Store outages throw 503. */
export async function currentSession(c: Context<AppEnv>, deps: Deps, options: { slide: boolean }): Promise<Session | null> {
  const handle = await sessionHandle(c, deps)
  return handle ? deps.sessions.load(handle, options) : null
}
