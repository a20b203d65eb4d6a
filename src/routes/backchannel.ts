import { Hono } from 'hono'
import { BffError } from '../errors.js'
import { clientIp } from '../http/audit.js'
import { readBoundedText } from '../http/body.js'
import { LogoutTokenVerifier } from '../oidc/logout-token.js'
import { RateLimiter, takeOrRefuse } from '../middleware/rate-limit.js'
import type { AppEnv, Deps } from '../types.js'

/** A logout token is a few hundred bytes to a few KiB; nothing legitimate comes near this. */
const MAX_BODY_BYTES = 16 * 1024

/**
 * OpenID Connect Back-Channel Logout 1.0 (§2.5-2.8): the IdP POSTs a logout
 * token; a `sid` ends that IdP session's tokenward sessions, a bare `sub` all of
 * the user's. Anonymous and exempt from the CSRF header (the IdP is the caller).
 *
 * The IdP does not retry a refused logout, so a limit that counted every
 * request would let anyone who floods this endpoint keep a real user's session
 * alive. The token is verified first and only failures count: a valid logout
 * token is never refused by the limit, and an address that keeps sending
 * invalid ones is answered 429 (after its token was found invalid).
 */
export function backchannelRoutes(deps: Deps): Hono<AppEnv> {
  const app = new Hono<AppEnv>()
  const verifier = new LogoutTokenVerifier(deps.config, deps.oidc, deps.store.onceIds)
  const failures = new RateLimiter({ limit: 60, windowMs: 60_000 })

  app.post('/backchannel-logout', async (c) => {
    c.header('cache-control', 'no-store')
    const ip = clientIp(c) ?? 'unknown'
    let claims
    try {
      if (!(c.req.header('content-type') ?? '').toLowerCase().startsWith('application/x-www-form-urlencoded')) {
        throw new BffError('invalid_request', 'Expected a form-encoded logout_token.')
      }
      const body = await readBoundedText(c.env?.incoming, c.req.raw, MAX_BODY_BYTES)
      const token = new URLSearchParams(body).get('logout_token')
      if (!token) throw new BffError('invalid_request', 'logout_token is missing.')
      claims = await verifier.verify(token)
    } catch (err) {
      // The IdP is down (its keys cannot be fetched) or the store is: 5xx, not the caller's fault.
      if (err instanceof BffError && err.status >= 500) throw err
      const e = err instanceof BffError ? err : new BffError('invalid_request', 'The logout request is not valid.')
      c.get('log').warn({ reason: e.logDetail ?? e.message }, 'back-channel logout refused')
      // Too large: 413 as it is, not counted (the request context closes the
      // connection when the rest of the body is still arriving).
      if (e.code === 'payload_too_large') throw e
      takeOrRefuse(failures, ip, 'Too many invalid back-channel logout requests.')
      // BCL §2.8: 400 with an OAuth-style error on any failure.
      throw e.code === 'invalid_request' ? e : new BffError('invalid_request', e.message)
    }

    // A sid names one IdP session; a sub in the same token must match it. Only
    // sessions of the issuer that signed the token: with a multi-tenant issuer,
    // one tenant must not end another tenant's sessions (security model S79).
    const sessions = (
      claims.sid
        ? (await deps.sessions.list('idp', claims.sid)).filter((s) => !claims.sub || s.data.sub === claims.sub)
        : await deps.sessions.list('sub', claims.sub!)
    ).filter((s) => s.data.iss === claims.iss)
    for (const session of sessions) {
      await deps.terminator.end(session, 'backchannel_logout', { audit: { ip, idpSid: claims.sid } })
    }
    c.get('log').info({ sessions: sessions.length, bySid: Boolean(claims.sid) }, 'back-channel logout')
    return c.body(null, 200)
  })

  return app
}
