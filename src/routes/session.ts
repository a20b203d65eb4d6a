import { Hono, type Context } from 'hono'
import { BffError } from '../errors.js'
import { clientIp, requester } from '../http/audit.js'
import { header, noStore } from '../http/headers.js'
import { checkCsrf } from '../middleware/csrf.js'
import { currentSession } from '../middleware/session.js'
import { clearCookie } from '../session/cookie.js'
import type { Session } from '../session/sessions.js'
import type { AppEnv, Deps } from '../types.js'

type Ctx = Context<AppEnv>

/** The session as the SPA sees it (`/auth/session`) and logout, by fetch or by navigation. */
export function sessionRoutes(deps: Deps): Hono<AppEnv> {
  const { config } = deps
  const app = new Hono<AppEnv>()

  app.get('/session', async (c) => {
    checkCsrf(c, deps)
    noStore(c)
    // `?slide=false` lets the SPA poll without keeping an idle session alive.
    const session = await currentSession(c, deps, { slide: c.req.query('slide') !== 'false' })
    if (!session) {
      return c.json({ authenticated: false, error: 'login_required', message: 'No active session.' }, 401)
    }
    // Device Bound Session Credentials: a browser that supports them registers a key (security model S84).
    const offer = await deps.dbsc.offerFor(session)
    if (offer) c.header('secure-session-registration', offer)
    return c.json({
      authenticated: true,
      sub: session.data.sub,
      claims: session.data.claims,
      sid: session.sid,
      // When a new login is needed at the latest: BFF_SESSION_MAX_AGE or the
      // refresh token's end, whichever comes first (security model S20, S77).
      expiresAt: Math.floor(session.absExp / 1000),
      idleExpiresAt: Math.floor(session.idleExp / 1000),
      // The refresh token's end as the IdP stated it (capped at the max age), or
      // null when it did not: a non-null value means expiresAt may move later at
      // a refresh (docs/endpoints.md).
      refreshTokenExpiresAt:
        session.data.refreshTokenExpiresAt === undefined ? null : Math.floor(session.data.refreshTokenExpiresAt / 1000),
      deviceBound: session.data.dbsc !== undefined,
    })
  })

  /** Ends the session everywhere and answers where the browser goes next. */
  const endSession = async (c: Ctx, session: Session): Promise<string> => {
    await deps.terminator.end(session, 'logout', { audit: requester(clientIp(c), header(c, 'user-agent')) })
    return (
      deps.oidc.endSessionUrl({ postLogoutRedirectUri: config.postLogoutRedirect, idTokenHint: session.data.idToken }) ??
      config.postLogoutRedirect
    )
  }

  const clearSessionCookie = (c: Ctx) => {
    c.header('set-cookie', clearCookie(config, config.cookie.name, config.cookie.sameSite), { append: true })
    if (config.dbsc.enabled) c.header('set-cookie', clearCookie(config, config.dbsc.cookieName, config.cookie.sameSite), { append: true })
    // Proxied answers are `private` (never in a shared cache), but the browser's
    // own cache may keep them: the next person to sign in on this browser must
    // not be served the last one's (W3C Clear Site Data §3.1, "cache").
    c.header('clear-site-data', '"cache"')
    noStore(c)
  }

  app.post('/logout', async (c) => {
    checkCsrf(c, deps)
    const session = await currentSession(c, deps, { slide: false })
    const redirectTo = session ? await endSession(c, session) : config.postLogoutRedirect
    clearSessionCookie(c)
    return c.json({ redirectTo })
  })

  // Plain navigation logout: the `sid` only the app can read from /auth/session
  // keeps a cross-site link from logging the user out (security model S30).
  app.get('/logout', async (c) => {
    const session = await currentSession(c, deps, { slide: false })
    if (!session) {
      // A cross-site navigation arrives without the SameSite=Strict cookie and
      // lands here: deleting the cookie would log the user out from any page,
      // with nothing revoked and no audit. Only a same-origin request (Fetch
      // Metadata, `Sec-Fetch-Site`) may clear a stale cookie. Without the header
      // (an old browser) the cookie is kept: that is safe, since it names no
      // live session (every request treats it as none) and the next login
      // replaces it.
      if (header(c, 'sec-fetch-site') === 'same-origin') clearSessionCookie(c)
      else noStore(c)
      return c.redirect(config.postLogoutRedirect, 302)
    }
    if (c.req.query('sid') !== session.sid) {
      throw new BffError('invalid_request', 'Logout needs the sid of the current session.', { logDetail: 'logout sid mismatch' })
    }
    const redirectTo = await endSession(c, session)
    clearSessionCookie(c)
    return c.redirect(redirectTo, 302)
  })

  return app
}
