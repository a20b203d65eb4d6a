import { Hono } from 'hono'
import { BffError } from '../errors.js'
import { clientIp, errorResponse } from '../http.js'
import { LogoutTokenVerifier } from '../oidc/logout-token.js'
import { RateLimiter } from '../rate-limit.js'
import type { AppEnv, Deps } from '../types.js'

const MAX_BODY_BYTES = 16 * 1024

/**
 * OpenID Connect Back-Channel Logout 1.0 (§2.5-2.8): the IdP POSTs a logout
 * token; a `sid` ends that IdP session's tokenward sessions, a bare `sub` all of
 * the user's. Anonymous and exempt from the CSRF header (the IdP is the caller),
 * but rate-limited (SECURITY-CHECKLIST #47, #48).
 */
export function backchannelRoutes(deps: Deps): Hono<AppEnv> {
  const app = new Hono<AppEnv>()
  const verifier = new LogoutTokenVerifier(deps.config, deps.oidc, deps.sessions.store)
  const limiter = new RateLimiter({ limit: 60, windowMs: 60_000 })

  app.post('/backchannel-logout', async (c) => {
    c.header('cache-control', 'no-store')
    const ip = clientIp(c) ?? 'unknown'
    if (!limiter.take(ip)) {
      c.header('retry-after', String(limiter.retryAfter(ip)))
      return errorResponse(c, new BffError('rate_limited', 'Too many back-channel logout requests.'))
    }
    try {
      if (!(c.req.header('content-type') ?? '').toLowerCase().startsWith('application/x-www-form-urlencoded')) {
        throw new BffError('invalid_request', 'Expected a form-encoded logout_token.')
      }
      if (Number(c.req.header('content-length') ?? 0) > MAX_BODY_BYTES) throw new BffError('invalid_request', 'The request is too large.')
      const body = await c.req.text()
      if (body.length > MAX_BODY_BYTES) throw new BffError('invalid_request', 'The request is too large.')
      const token = new URLSearchParams(body).get('logout_token')
      if (!token) throw new BffError('invalid_request', 'logout_token is missing.')

      const claims = await verifier.verify(token)
      // A sid names one IdP session; a sub in the same token must match it.
      const sessions = claims.sid
        ? (await deps.sessions.list('idp', claims.sid)).filter((s) => !claims.sub || s.data.sub === claims.sub)
        : await deps.sessions.list('sub', claims.sub!)
      for (const session of sessions) {
        await deps.terminator.end(session, 'backchannel_logout', { audit: { ip, idpSid: claims.sid } })
      }
      c.get('log').info({ sessions: sessions.length, bySid: Boolean(claims.sid) }, 'back-channel logout')
      return c.body(null, 200)
    } catch (err) {
      // BCL §2.8: 400 with an OAuth-style error on any failure.
      if (err instanceof BffError && err.status >= 500) return errorResponse(c, err)
      const e = err instanceof BffError ? err : new BffError('invalid_request', 'The logout request is not valid.')
      c.get('log').warn({ reason: e.logDetail ?? e.message }, 'back-channel logout refused')
      return errorResponse(c, e.code === 'invalid_request' ? e : new BffError('invalid_request', e.message))
    }
  })

  return app
}
