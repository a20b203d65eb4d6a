import { Hono, type Context, type Next } from 'hono'
import { BffError, LoginRequiredError } from '../errors.js'
import { auditFor } from '../http/audit.js'
import { header, noStore, requestHeaders } from '../http/headers.js'
import { csrfProblem } from '../middleware/csrf.js'
import { RateLimiter, rateLimit } from '../middleware/rate-limit.js'
import { sessionIgnoringBinding } from '../middleware/session.js'
import type { BoundDeviceKey } from '../session/data.js'
import { DbscProofError, verifyRefreshProof, verifyRegistrationProof } from '../session/dbsc-proof.js'
import type { Session, SessionData } from '../session/sessions.js'
import { interrupted } from '../tokens/lease.js'
import type { AppEnv, Deps } from '../types.js'

type Ctx = Context<AppEnv>

/** The proof header: a bare JWT, or (as structured-field strings go) quoted. */
function proofHeader(c: Ctx): string | undefined {
  const raw = header(c, 'secure-session-response')?.trim()
  if (!raw) return undefined
  return raw.startsWith('"') && raw.endsWith('"') && raw.length >= 2 ? raw.slice(1, -1) : raw
}

/**
 * Device Bound Session Credentials endpoints (W3C webappsec-dbsc; security
 * model S84-S87). Both take the long-lived session cookie alone: they are
 * where a browser that holds the device key gets the bound cookie.
 */
export function dbscRoutes(deps: Deps): Hono<AppEnv> {
  const { config } = deps
  const app = new Hono<AppEnv>()
  app.use('/dbsc/*', rateLimit(new RateLimiter({ limit: 300, windowMs: 60_000 }), 'Too many device-binding requests from this address.'))

  /**
   * The browser sends these itself, same-origin, with Origin and Fetch
   * Metadata but no X-CSRF header: refuse cross-site ones (security model S26).
   */
  app.use('/dbsc/*', async function sameOrigin(c: Ctx, next: Next) {
    const problem = csrfProblem(requestHeaders(c), config.publicOrigin, 'stream')
    if (problem) {
      deps.metrics.csrfRejections.inc()
      auditFor(c, 'csrf_rejected', { outcome: 'failure', method: c.req.method, path: c.req.path, reason: `device binding: ${problem}` })
      throw new BffError('csrf_failed', 'Device binding is for the application itself.', { logDetail: problem })
    }
    noStore(c)
    await next()
  })

  const bound = async (c: Ctx, session: Session) => {
    c.header('set-cookie', await deps.dbsc.issueCookie(session), { append: true })
    c.header('secure-session-challenge', await deps.dbsc.refreshChallenge(session.sid, true))
    return c.json(deps.dbsc.instructions(session.sid))
  }

  const tooBusy = () => new BffError('server_error', 'The session changed too often to be updated; try again.')

  /**
   * Writes `change(data)` under the refresh lease, as token exchange writes
   * back: a session write clears the refresh journal, so one made while a
   * refresh is redeeming the token would hide a possibly spent refresh token
   * from the next holder, and make the refresh's own write fail (RFC 9700
   * §4.14.2; security model S35). A session whose last refresh was
   * interrupted is not written (null): its next refresh ends it.
   */
  const update = (session: Session, change: (data: SessionData) => SessionData | null): Promise<Session | null> =>
    deps.lease.wait(session.sid, {
      deadline: deps.now() + 2 * deps.lease.leaseMs,
      work: async (held) => {
        for (let attempt = 0; attempt < 5; attempt++) {
          const current = await deps.sessions.loadBySid(session.sid, { slide: false })
          if (!current || interrupted(held, current.version)) return null
          const next = change(current.data)
          if (!next) return null
          const { result, session: written } = await deps.sessions.replace(current, next)
          if (result === 'ok') return written
          if (result === 'missing') return null
        }
        throw tooBusy()
      },
      timeout: () => {
        throw tooBusy()
      },
    })

  const refused = (c: Ctx, session: Session, reason: string, kind: 'proof' | 'challenge') => {
    deps.metrics.dbscRejections.inc({ reason: kind })
    auditFor(c, 'dbsc_proof_rejected', { outcome: 'failure', sub: session.data.sub, sid: session.sid, reason })
  }

  app.post('/dbsc/register', async (c) => {
    const session = await sessionIgnoringBinding(c, deps, { slide: false })
    if (!session) throw new LoginRequiredError('No active session.')
    if (session.data.dbsc) throw new BffError('invalid_request', 'This session is already bound to a device key.')
    const jwt = proofHeader(c)
    if (!jwt) throw new BffError('invalid_request', 'Registration needs a Secure-Session-Response proof.')
    let proof
    try {
      proof = await verifyRegistrationProof(jwt)
    } catch (err) {
      if (!(err instanceof DbscProofError)) throw err
      refused(c, session, `registration: ${err.message}`, 'proof')
      throw new BffError('invalid_request', 'The device key proof was refused.', { logDetail: err.message })
    }
    // The challenge and authorization offered with this session at login, once.
    if (!(await deps.dbsc.challenges.consume(proof.jti, session.sid, 'register', proof.authorization))) {
      refused(c, session, 'registration: unknown, used, expired or foreign challenge or authorization', 'challenge')
      throw new BffError('invalid_request', 'The device key proof was refused.', { logDetail: 'registration challenge not live' })
    }
    const key: BoundDeviceKey = { alg: proof.alg, jwk: proof.jwk, thumbprint: proof.thumbprint, boundAt: deps.now(), rejections: 0 }
    let raced = false
    const written = await update(session, (data) => (data.dbsc ? ((raced = true), null) : { ...data, dbsc: key }))
    if (raced) throw new BffError('invalid_request', 'This session is already bound to a device key.')
    if (!written) throw new LoginRequiredError('No active session.')
    deps.metrics.dbscRegistrations.inc()
    auditFor(c, 'dbsc_registered', {
      outcome: 'success',
      sub: session.data.sub,
      sid: session.sid,
      alg: proof.alg,
      keyThumbprint: proof.thumbprint,
    })
    return bound(c, written)
  })

  app.post('/dbsc/refresh', async (c) => {
    const session = await sessionIgnoringBinding(c, deps, { slide: false })
    if (!session) throw new LoginRequiredError('No active session.')
    const key = session.data.dbsc
    if (!key) throw new BffError('invalid_request', 'This session is not bound to a device key.')
    const id = header(c, 'sec-secure-session-id')
    if (id !== undefined && id !== session.sid) throw new BffError('invalid_request', 'Unknown device-bound session.')
    const challengeAnswer = async () => {
      c.header('secure-session-challenge', await deps.dbsc.refreshChallenge(session.sid, false))
      return c.json(
        { error: 'login_required', message: "Sign the challenge in Secure-Session-Challenge with the session's device key." },
        403,
      )
    }
    const jwt = proofHeader(c)
    if (!jwt) return challengeAnswer()
    let jti: string
    try {
      jti = (await verifyRefreshProof(jwt, key)).jti
    } catch (err) {
      if (!(err instanceof DbscProofError)) throw err
      refused(c, session, `refresh: ${err.message}`, 'proof')
      // Counted in the session (every instance sees the count); the last allowed one ends it (security model S87).
      let count = 0
      const written = await update(session, (data) => {
        count = (data.dbsc?.rejections ?? 0) + 1
        return data.dbsc ? { ...data, dbsc: { ...data.dbsc, rejections: count } } : null
      })
      if (written && count >= config.dbsc.maxRejections) {
        await deps.terminator.end(written, 'session_revoked', { audit: { reason: `${count} device key proofs refused` } })
      }
      throw new LoginRequiredError('The device key proof was refused.', { logDetail: err.message })
    }
    if (!(await deps.dbsc.challenges.consume(jti, session.sid, 'refresh'))) {
      // A challenge sent ahead may have expired (a device asleep), or a proof be replayed: ask again.
      refused(c, session, 'refresh: unknown, used, expired or foreign challenge', 'challenge')
      return challengeAnswer()
    }
    deps.metrics.dbscRefreshes.inc()
    return bound(c, session)
  })

  return app
}
