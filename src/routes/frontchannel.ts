import { Hono } from 'hono'
import { BffError } from '../errors.js'
import { clientIp, requester } from '../http/audit.js'
import { header, noStore } from '../http/headers.js'
import { RateLimiter, takeOrRefuse } from '../middleware/rate-limit.js'
import type { AppEnv, Deps } from '../types.js'
import { frontchannelPage } from './pages.js'

/**
 * An IdP session id as it may arrive: the `sid` claim is an opaque string
 * (Front-Channel Logout 1.0 §3); real IdPs use UUIDs or base64url values. Bounded
 * and visible ASCII only, so nothing odd reaches the store's index lookup.
 */
const SID = /^[\x21-\x7e]{1,255}$/

/** The one value of a query parameter, or undefined when it is missing or repeated. */
function single(values: string[] | undefined): string | undefined {
  return values?.length === 1 ? values[0] : undefined
}

/**
 * OpenID Connect Front-Channel Logout 1.0 (§2-§4): the IdP's logout page loads
 * `GET /auth/frontchannel-logout?iss=…&sid=…` in an iframe for every relying
 * party of the IdP session it ends; the tokenward sessions of that IdP session
 * end the same way a back-channel logout ends them.
 *
 * No cookie is read: the iframe is cross-site, so the SameSite=Strict session
 * cookie never arrives (§4 warns of exactly this). The sessions are found by
 * `iss` (must be the configured issuer, exactly) and `sid` (the ID token's
 * `sid` at login, indexed for back-channel logout). The request carries no
 * proof that the IdP sent it: the `sid` is the IdP's unguessable session id,
 * known only to the IdP and the user's browser (security model S75).
 *
 * Anonymous and exempt from the CSRF header (it is the IdP's navigation, not
 * the SPA's call). The answer is the same 200 page whether or not a session
 * matched, so the endpoint tells nobody which IdP sessions exist here.
 */
export function frontchannelRoutes(deps: Deps): Hono<AppEnv> {
  const app = new Hono<AppEnv>()
  const { issuer } = deps.config
  // The IdP's logout page frames this answer (§4), so it cannot be
  // `frame-ancestors 'none'`; only the issuer's origin may (CSP Level 3
  // frame-ancestors; X-Frame-Options cannot name an origin). Security model S76.
  const csp = `default-src 'none'; style-src 'unsafe-inline'; frame-ancestors ${new URL(issuer).origin}; base-uri 'none'; form-action 'none'`
  // Per client address, every request counted, like the login endpoints: the
  // caller is the user's own browser, so a flood from elsewhere cannot use up
  // a user's budget, and one address cannot scan sids at any useful rate.
  const limiter = new RateLimiter({ limit: 300, windowMs: 60_000 })

  app.get('/frontchannel-logout', async (c) => {
    noStore(c)
    const ip = clientIp(c) ?? 'unknown'
    takeOrRefuse(limiter, ip, 'Too many front-channel logout requests from this address; try again shortly.')
    const iss = single(c.req.queries('iss'))
    const sid = single(c.req.queries('sid'))
    // §2: iss and sid come together; tokenward registers
    // frontchannel_logout_session_required=true, so an IdP that sends neither
    // is misconfigured (nothing could be matched without them).
    if (iss === undefined || sid === undefined) throw new BffError('invalid_request', 'iss and sid are required, once each.')
    // The configured issuer, or with a multi-tenant issuer one of the listed
    // tenants' issuers (security model S79).
    if (iss !== issuer && !(await deps.oidc.acceptedIssuers()).includes(iss)) {
      throw new BffError('invalid_request', 'iss is not this relying party’s issuer.')
    }
    if (!SID.test(sid)) throw new BffError('invalid_request', 'sid is not a valid session identifier.')

    // Only sessions of that issuer: two tenants' session ids are not one space.
    const sessions = (await deps.sessions.list('idp', sid)).filter((s) => s.data.iss === iss)
    for (const session of sessions) {
      await deps.terminator.end(session, 'frontchannel_logout', {
        audit: { ...requester(ip, header(c, 'user-agent')), idpSid: sid },
      })
    }
    c.get('log').info({ sessions: sessions.length }, 'front-channel logout')
    c.header('content-security-policy', csp)
    c.header('x-content-type-options', 'nosniff')
    c.header('referrer-policy', 'no-referrer')
    return c.html(frontchannelPage(), 200)
  })

  return app
}
