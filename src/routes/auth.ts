import { Hono, type Context } from 'hono'
import * as oidc from 'openid-client'
import { BffError, IdpUnavailableError } from '../errors.js'
import { auditFor } from '../http/audit.js'
import { errorResponse } from '../http/error-response.js'
import { noStore, readCookie, wantsHtml } from '../http/headers.js'
import { RateLimiter, rateLimit } from '../middleware/rate-limit.js'
import { sessionHandle } from '../middleware/session.js'
import { classifyIdpError, describe, idpBug } from '../oidc/idp-errors.js'
import { authenticationShortfall, effectiveAuthParams, type RequestedLoginParams } from '../oidc/login-policy.js'
import { safeReturnTo } from '../return-to.js'
import { serializeCookie } from '../session/cookie.js'
import { newHandle, type SessionData } from '../session/sessions.js'
import { TRANSACTION_TTL_SECONDS } from '../session/transactions.js'
import { refreshTokenExpiry } from '../tokens/refresh-lifetime.js'
import type { AppEnv, Deps } from '../types.js'
import { errorPage } from './pages.js'

type Ctx = Context<AppEnv>

/** OIDC Core §3.1.2.6: what a prompt=none request answers when the user must act. */
const SILENT_FAILURES = new Set(['login_required', 'interaction_required', 'consent_required', 'account_selection_required'])

/**
 * Authorization parameters the SPA may choose per login: `prompt` (`none` for
 * silent re-authentication, `login`, `consent`, `select_account`), and
 * `acr_values` / `max_age` for step-up (RFC 9470). BFF_AUTH_PARAMS is a floor
 * they cannot lower (effectiveAuthParams); anything else is fixed by configuration.
 */
function loginParams(c: Ctx): RequestedLoginParams {
  return { prompt: c.req.query('prompt'), acr_values: c.req.query('acr_values'), max_age: c.req.query('max_age') }
}

function withQuery(path: string, name: string, value: string): string {
  const url = new URL(path, 'http://x')
  url.searchParams.set(name, value)
  return `${url.pathname}${url.search}${url.hash}`
}

/** ID token claims that only serve the protocol; the SPA gets the rest. */
const PROTOCOL_CLAIMS = new Set(['nonce', 'at_hash', 'c_hash', 's_hash', 'sid', 'jti'])

/** Login and callback: the authorization code flow (RFC 9700 §2.1.1, OIDC Core §3.1). */
export function authRoutes(deps: Deps): Hono<AppEnv> {
  const { config } = deps
  const app = new Hono<AppEnv>()
  // Per client address; generous enough for many users behind one NAT, tight
  // enough that a script cannot fill Redis with login transactions.
  const tooMany = 'Too many sign-in attempts from this address; try again shortly.'
  app.use('/login', rateLimit(new RateLimiter({ limit: 300, windowMs: 60_000 }), tooMany))
  app.use('/callback', rateLimit(new RateLimiter({ limit: 300, windowMs: 60_000 }), tooMany))

  /** A failed login: 400, no session, no cookie; the IdP's text is never reflected (RFC 6749 §4.1.2.1). */
  const loginFailed = (c: Ctx, err: BffError) => {
    c.get('log').warn({ reason: err.logDetail ?? err.message }, 'login failed')
    if (err instanceof IdpUnavailableError) c.header('retry-after', String(err.retryAfter))
    noStore(c)
    if (wantsHtml(c)) return c.html(errorPage('Sign-in failed', err.message, `${config.basePath}/`), err.status as 400)
    return errorResponse(c, err)
  }

  /** An IdP failure, classified (classifyIdpError): 503, `refused()`, or a bug logged at error level and answered 500. */
  const idpFailure = (c: Ctx, err: unknown, where: string, refused: () => BffError): BffError => {
    switch (classifyIdpError(err)) {
      case 'unavailable':
        return new IdpUnavailableError({ cause: err, logDetail: `${where}: ${describe(err)}` })
      case 'refused':
        return refused()
      default:
        c.get('log').error(
          { reason: describe(err), where },
          'unexpected error talking to the identity provider (a bug or a misconfiguration)',
        )
        return idpBug(err, where)
    }
  }

  app.get('/login', async (c) => {
    const returnTo = safeReturnTo(c.req.query('returnTo'), config.publicOrigin, config.basePath)
    // One transaction cookie per browser, reused by concurrent logins in several
    // tabs, so the cookies cannot pile up (the oauth2-proxy 431 problem).
    const existing = await deps.cookies.unseal<{ t?: unknown }>(readCookie(c, config.cookie.transactionName), TRANSACTION_TTL_SECONDS)
    const txHandle = typeof existing?.t === 'string' ? existing.t : newHandle()
    // One computation for the front channel and a pushed request (RFC 9126) alike.
    const effective = effectiveAuthParams(config.authParams, loginParams(c))
    if (effective instanceof BffError) return loginFailed(c, effective)
    const state = oidc.randomState()
    const nonce = oidc.randomNonce()
    const codeVerifier = oidc.randomPKCECodeVerifier()
    let url: URL
    try {
      url = await deps.oidc.authorizationUrl({
        state,
        nonce,
        codeChallenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
        authParams: effective.params,
      })
    } catch (err) {
      if (err instanceof BffError) return loginFailed(c, err)
      // A pushed request the IdP refused is a failed sign-in (400); a bug, 500.
      return loginFailed(
        c,
        idpFailure(
          c,
          err,
          'authorization request',
          () =>
            new BffError('invalid_request', 'The identity provider refused the sign-in request.', {
              logDetail: `authorization request refused: ${describe(err)}`,
            }),
        ),
      )
    }
    await deps.transactions.put(txHandle, state, {
      codeVerifier,
      nonce,
      returnTo,
      createdAt: deps.now(),
      silent: effective.silent,
      // Remembered for the callback: the ID token must show what was asked for.
      ...(effective.asked.acrValues ? { acrValues: effective.asked.acrValues } : {}),
      ...(effective.asked.maxAge !== undefined ? { maxAge: effective.asked.maxAge } : {}),
    })
    const sealed = await deps.cookies.seal({ t: txHandle }, TRANSACTION_TTL_SECONDS)
    // Lax, not Strict: the cookie must come back on the IdP's cross-site
    // redirect to the callback (security model S15).
    c.header(
      'set-cookie',
      serializeCookie(config, config.cookie.transactionName, sealed, { maxAge: TRANSACTION_TTL_SECONDS, sameSite: 'Lax' }),
    )
    noStore(c)
    c.header('referrer-policy', 'no-referrer')
    return c.redirect(url.href, 302)
  })

  app.get('/callback', async (c) => {
    const fail = (detail: string, message = 'The sign-in could not be completed. Please start again.') =>
      loginFailed(c, new BffError('invalid_request', message, { logDetail: detail }))

    const txCookie = await deps.cookies.unseal<{ t?: unknown }>(readCookie(c, config.cookie.transactionName), TRANSACTION_TTL_SECONDS)
    const txHandle = typeof txCookie?.t === 'string' ? txCookie.t : undefined
    // No transaction cookie: a callback this browser did not start (login CSRF,
    // code injection; RFC 9700 §4.5, §4.7).
    if (!txHandle) return fail('callback without a login transaction cookie')
    const state = c.req.query('state')
    if (!state || state.length > 512) return fail('callback without state')
    // Single use: taken atomically, so a replayed callback finds nothing.
    const tx = await deps.transactions.take(txHandle, state, deps.now())
    if (!tx) return fail('unknown, used or expired login transaction (state)')

    // RFC 9207 §2.4 before anything else is read from the response, error
    // responses included: an error (or a silent login's login_required) sent
    // by another IdP in a mix-up must not be taken for this IdP's answer.
    const callbackParams = new URL(c.req.url).searchParams
    let issProblem: string | undefined
    try {
      issProblem = await deps.oidc.authorizationResponseIssuerProblem(callbackParams)
    } catch (err) {
      return loginFailed(
        c,
        err instanceof BffError
          ? err
          : idpFailure(c, err, 'callback', () => new IdpUnavailableError({ cause: err, logDetail: describe(err) })),
      )
    }
    if (issProblem) return fail(issProblem)

    const idpError = c.req.query('error')
    if (idpError !== undefined) {
      const code = /^[a-z_]{1,64}$/.test(idpError) ? idpError : 'unknown'
      // A silent login (prompt=none) that needs the user is not a failure: back
      // to the app, which learns it from one query parameter (OIDC Core §3.1.2.6).
      if (tx.silent && SILENT_FAILURES.has(code)) {
        noStore(c)
        return c.redirect(withQuery(tx.returnTo, 'tokenward_error', code), 303)
      }
      return fail(`identity provider returned error=${code}`, `The identity provider refused the sign-in (${code}).`)
    }

    let tokens
    try {
      tokens = await deps.oidc.authorizationCodeGrant(new URL(c.req.url).search, {
        codeVerifier: tx.codeVerifier,
        state,
        nonce: tx.nonce,
      })
    } catch (err) {
      if (err instanceof BffError) return loginFailed(c, err)
      return loginFailed(
        c,
        idpFailure(
          c,
          err,
          'code exchange',
          () =>
            new BffError('invalid_request', 'The sign-in could not be completed. Please start again.', {
              logDetail: `code exchange or ID token validation failed: ${describe(err)}`,
            }),
        ),
      )
    }
    const claims = tokens.idClaims
    if (!claims) return fail('token response without an ID token')
    // openid-client requires `iat` but does not bound its age (security model S9).
    const nowSec = Math.floor(deps.now() / 1000)
    if (typeof claims.iat !== 'number' || nowSec - claims.iat > config.idTokenMaxAge || claims.iat - nowSec > 60) {
      return fail('ID token iat is missing, too old or in the future')
    }
    if (typeof claims.sub !== 'string' || claims.sub.length === 0) return fail('ID token without sub')
    // Core §3.1.3.7 step 3: refuse audiences the client does not trust. tokenward
    // trusts none but itself, whatever `azp` says.
    const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud]
    if (aud.length !== 1 || aud[0] !== config.clientId) return fail('ID token has an audience other than tokenward')
    // Core §3.1.3.7 step 5: an `azp` that is present must be our client id, with
    // a single audience too (openid-client checks it only for several audiences).
    if (claims.azp !== undefined && claims.azp !== config.clientId) return fail("ID token azp is not tokenward's client id")
    // The authentication asked for (acr_values, max_age; BFF_AUTH_PARAMS floors
    // and step-up alike) must be the one the ID token shows.
    const shortfall = authenticationShortfall({ acrValues: tx.acrValues, maxAge: tx.maxAge }, claims, nowSec)
    if (shortfall) return fail(shortfall, 'The sign-in did not meet the required authentication. Please sign in again.')

    const now = deps.now()
    const data: SessionData = {
      sub: claims.sub,
      iss: claims.iss,
      aud: Array.isArray(claims.aud) ? claims.aud : [claims.aud],
      azp: typeof claims.azp === 'string' ? claims.azp : undefined,
      authTime: typeof claims.auth_time === 'number' ? claims.auth_time : undefined,
      idpSid: typeof claims.sid === 'string' ? claims.sid : undefined,
      claims: Object.fromEntries(Object.entries(claims).filter(([k]) => !PROTOCOL_CLAIMS.has(k))),
      createdAt: now,
      accessToken: tokens.accessToken,
      tokenType: tokens.tokenType,
      accessTokenExpiresAt: tokens.expiresIn === undefined ? undefined : now + tokens.expiresIn * 1000,
      scope: tokens.scope,
      refreshToken: tokens.refreshToken,
      // The session ends with the refresh token when the IdP says when that is (security model S20, S77).
      refreshTokenExpiresAt: refreshTokenExpiry(tokens.refreshTokenLifetime, { now, latest: deps.sessions.latestEnd({ createdAt: now }) }),
      idToken: config.logoutIdTokenHint ? tokens.idToken : undefined,
    }

    // A new random session on every login, never the one the browser brought
    // (session fixation; OWASP session management, security model S17).
    const previous = await sessionHandle(c, deps)
    if (previous) {
      const old = await deps.sessions.load(previous, { slide: false })
      if (old) await deps.terminator.end(old, 'logout', { audit: { reason: 'replaced by a new login' } })
    }
    const { handle, session } = await deps.sessions.create(data)
    const sealed = await deps.cookies.seal({ h: handle }, config.session.maxAge)
    // The cookie lasts until the session's latest possible end: a refresh
    // token with a later expiry can move the end that far, never further
    // (security model S77). Past the session's end it names nothing.
    c.header(
      'set-cookie',
      serializeCookie(config, config.cookie.name, sealed, {
        maxAge: config.session.maxAge,
        sameSite: config.cookie.sameSite,
      }),
    )
    auditFor(c, 'login', { outcome: 'success', sub: data.sub, sid: session.sid })
    noStore(c)
    // 303 to the app: the code leaves the address bar and the Referer (RFC 9700 §4.2.4).
    c.header('referrer-policy', 'no-referrer')
    return c.redirect(tx.returnTo, 303)
  })

  return app
}
