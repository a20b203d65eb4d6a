import { randomUUID } from 'node:crypto'
import { setTimeout as delay } from 'node:timers/promises'
import { trace } from '@opentelemetry/api'
import type { Config } from '../config.js'
import { SpanKind, traced } from '../tracing.js'
import { IdpUnavailableError, LoginRequiredError } from '../errors.js'
import { audit, type Logger } from '../log.js'
import { describe, isFatalGrantError, isTransientIdpError, type OidcClient, type TokenResult } from '../oidc/client.js'
import type { Session, SessionData, SessionManager } from '../session/sessions.js'
import type { EndReason, SessionTerminator } from '../session/terminate.js'
import type { Metrics, RefreshOutcome } from '../metrics.js'

export interface TokenServiceOptions {
  config: Config
  sessions: SessionManager
  oidc: OidcClient
  logger: Logger
  terminator: SessionTerminator
  metrics?: Metrics
  now: () => number
  /** Refresh lease in ms, renewed every third of it while the refresh runs. */
  leaseMs?: number
  /** How long a request waits for another instance's refresh before a 503. */
  lockWaitMs?: number
  /** Refreshes this process runs (or waits for) at once; beyond it, 503 at once rather than a pile-up. */
  maxInflight?: number
}

const POLL_MS = 50

export interface AccessToken {
  readonly token: string
  readonly type: string
  readonly session: Session
}

/**
 * Hands out a fresh access token for a session, refreshing it when it expires
 * within BFF_REFRESH_SKEW. One refresh per session at a time across every
 * instance: an in-process single flight, then a Redis lease (renewed while the
 * IdP answers), then a re-read and re-check under the lease. A journal entry
 * marks a refresh in flight so a crashed holder's token is never redeemed twice,
 * and the result is written with compare-and-set on the session version, so a
 * stale writer never overwrites a rotated refresh token (RFC 9700 §4.14.2).
 */
export class TokenService {
  readonly #o: TokenServiceOptions
  readonly #inflight = new Map<string, Promise<Session>>()
  readonly #leaseMs: number
  readonly #lockWaitMs: number

  constructor(options: TokenServiceOptions) {
    this.#o = options
    this.#leaseMs = options.leaseMs ?? 5000
    this.#lockWaitMs = options.lockWaitMs ?? 15_000
  }

  #count(outcome: RefreshOutcome): void {
    this.#o.metrics?.refreshes.inc({ outcome })
  }

  /** Ends a session the refresh found dead, through the terminator (index cleanup, event, revocation, audit). */
  async #end(session: Session, event: EndReason, revoke: boolean, reason: string): Promise<void> {
    await this.#o.terminator.end(session, event, { revoke, audit: { outcome: 'failure', reason } })
  }

  /** Refreshes running in this process right now (bounded by the number of active sessions). */
  get inflight(): number {
    return this.#inflight.size
  }

  needsRefresh(session: Session): boolean {
    const exp = session.data.accessTokenExpiresAt
    return exp !== undefined && exp - this.#o.config.refreshSkew * 1000 <= this.#o.now()
  }

  async accessToken(session: Session, options: { force?: boolean } = {}): Promise<AccessToken> {
    let current = session
    if (options.force || this.needsRefresh(session)) current = await this.refresh(session, options.force ?? false)
    return { token: current.data.accessToken, type: current.data.tokenType, session: current }
  }

  /** Single-flight per session: concurrent callers share one refresh. */
  refresh(session: Session, force: boolean): Promise<Session> {
    let p = this.#inflight.get(session.sid)
    if (!p) {
      if (this.#inflight.size >= (this.#o.maxInflight ?? 1000)) {
        this.#count('lock_timeout')
        return Promise.reject(new IdpUnavailableError({ logDetail: 'too many refreshes in flight in this process' }))
      }
      p = traced('tokenward.refresh', { 'tokenward.refresh.forced': force }, () => this.#refresh(session, force)).finally(() =>
        this.#inflight.delete(session.sid),
      )
      this.#inflight.set(session.sid, p)
    }
    return p
  }

  async #refresh(seen: Session, force: boolean): Promise<Session> {
    const { sessions } = this.#o
    const store = sessions.store
    // Done when someone else already did the work: a forced refresh (after an
    // upstream 401) is satisfied by any newer version.
    const done = (s: Session) => (force ? s.version !== seen.version : !this.needsRefresh(s))
    const started = this.#o.now()
    const deadline = started + this.#lockWaitMs
    const waited = () => {
      const seconds = (this.#o.now() - started) / 1000
      this.#o.metrics?.refreshLockWait.observe(seconds)
      trace.getActiveSpan()?.setAttribute('tokenward.refresh.lock_wait_ms', seconds * 1000)
    }
    for (;;) {
      const session = await sessions.loadBySid(seen.sid, { slide: false })
      if (!session) throw new LoginRequiredError('The session has ended.')
      if (done(session)) {
        waited()
        return session
      }
      const token = randomUUID()
      const { acquired, journal } = await store.acquireRefreshLock(session.sid, token, this.#leaseMs)
      if (acquired) {
        waited()
        try {
          // Re-read under the lock: the previous holder may have finished between
          // our read and our acquire (the stale-read bug of dotnet/aspnetcore#56170).
          const fresh = await sessions.loadBySid(seen.sid, { slide: false })
          if (!fresh) throw new LoginRequiredError('The session has ended.')
          if (done(fresh)) return fresh
          if (journal === fresh.version) {
            // A holder died after it may have redeemed this refresh token. Using it
            // again could trip the IdP's reuse detection (RFC 9700 §4.14.2), so the
            // session fails closed and visibly instead.
            this.#count('interrupted')
            await this.#end(fresh, 'refresh_failed', true, 'a previous refresh was interrupted')
            throw new LoginRequiredError('The session has ended; please sign in again.')
          }
          return await this.#redeem(fresh, token)
        } finally {
          await store.releaseRefreshLock(seen.sid, token).catch(() => {})
        }
      }
      if (this.#o.now() >= deadline) {
        this.#count('lock_timeout')
        throw new IdpUnavailableError({ logDetail: 'timed out waiting for another instance to refresh' })
      }
      await delay(POLL_MS)
    }
  }

  /** Redeems the refresh token under the lease, renewing it so a slow IdP cannot outlive it. */
  async #redeem(session: Session, lockToken: string): Promise<Session> {
    const { sessions, logger } = this.#o
    const store = sessions.store
    const refreshToken = session.data.refreshToken
    if (!refreshToken) {
      await this.#end(session, 'session_expired', false, 'access token expired and no refresh token')
      throw new LoginRequiredError('The session has expired.')
    }
    await store.writeRefreshJournal(session.sid, session.version, Math.max(1000, session.absExp - this.#o.now()))
    const renew = setInterval(() => {
      store.renewRefreshLock(session.sid, lockToken, this.#leaseMs).then(
        (held) => {
          if (!held) logger.warn({ sid: session.sid }, 'refresh lease lost while the refresh was running')
        },
        () => {},
      )
    }, Math.max(50, Math.floor(this.#leaseMs / 3)))
    try {
      return await this.#grant(session, refreshToken)
    } finally {
      clearInterval(renew)
    }
  }

  async #grant(session: Session, refreshToken: string): Promise<Session> {
    const { sessions, logger } = this.#o
    let tokens: TokenResult
    try {
      // The original scope is not re-sent: RFC 6749 §6 keeps it unchanged, and it can never be widened.
      tokens = await traced('oidc refresh_token grant', {}, () => this.#o.oidc.refreshTokenGrant(refreshToken), SpanKind.CLIENT)
    } catch (err) {
      if (isFatalGrantError(err)) {
        this.#count('rejected')
        if ((err as { error?: string }).error === 'invalid_grant') this.#o.metrics?.invalidGrants.inc()
        await this.#end(session, 'refresh_token_rejected', false, describe(err))
        throw new LoginRequiredError('The session has ended; please sign in again.')
      }
      if (isTransientIdpError(err)) {
        this.#count('idp_unavailable')
        audit(logger, 'refresh_failed', { outcome: 'failure', sub: session.data.sub, sid: session.sid, reason: describe(err) })
        // The IdP did not answer: treat the token as not redeemed and keep the
        // session (CONTRACT.md). Had it rotated anyway, the next refresh gets
        // invalid_grant and ends the session cleanly.
        await sessions.store.clearRefreshJournal(session.sid).catch(() => {})
        throw new IdpUnavailableError({ cause: err, logDetail: describe(err) })
      }
      // The IdP answered but the response was unusable (for example an invalid ID
      // token): the refresh token may be spent, so the session fails closed.
      this.#count('failed')
      await this.#end(session, 'refresh_failed', true, `unusable refresh response: ${describe(err)}`)
      throw new LoginRequiredError('The session has ended; please sign in again.')
    }

    const mismatch = idTokenMismatch(session.data, tokens)
    if (mismatch) {
      this.#count('failed')
      await this.#end(session, 'refresh_token_rejected', true, mismatch)
      throw new LoginRequiredError('The session has ended; please sign in again.')
    }

    const now = this.#o.now()
    const data: SessionData = {
      ...session.data,
      accessToken: tokens.accessToken,
      tokenType: tokens.tokenType,
      accessTokenExpiresAt: tokens.expiresIn === undefined ? undefined : now + tokens.expiresIn * 1000,
      // RFC 6749 §6: the AS MAY issue a new refresh token; when it does not, keep ours.
      refreshToken: tokens.refreshToken ?? session.data.refreshToken,
      refreshTokenExpiresAt:
        tokens.refreshToken && tokens.refreshTokenExpiresIn !== undefined
          ? now + tokens.refreshTokenExpiresIn * 1000
          : session.data.refreshTokenExpiresAt,
      scope: tokens.scope ?? session.data.scope,
      idToken: this.#o.config.logoutIdTokenHint && tokens.idToken ? tokens.idToken : session.data.idToken,
    }
    const { result, session: updated } = await sessions.replace(session, data)
    if (result !== 'ok') {
      // Only the lock holder refreshes, so a conflict means the session was ended
      // meanwhile (logout, revoke): the new tokens must not resurrect it.
      logger.warn({ sid: session.sid, result }, 'session changed during refresh; discarding the new tokens')
      throw new LoginRequiredError('The session has ended.')
    }
    this.#count('success')
    audit(logger, 'refresh', { outcome: 'success', sub: data.sub, sid: session.sid, rotated: Boolean(tokens.refreshToken) })
    return updated
  }
}

/** OpenID Connect Core §12.2: a refreshed ID token keeps iss, sub, aud (and azp, auth_time). */
function idTokenMismatch(data: SessionData, tokens: TokenResult): string | undefined {
  const c = tokens.idClaims
  if (!c) return undefined
  if (c.iss !== data.iss) return 'refreshed ID token changed iss'
  if (c.sub !== data.sub) return 'refreshed ID token changed sub'
  const aud = Array.isArray(c.aud) ? c.aud : [c.aud]
  if (aud.length !== data.aud.length || aud.some((a) => !data.aud.includes(a))) return 'refreshed ID token changed aud'
  if (data.azp !== undefined && c.azp !== undefined && c.azp !== data.azp) return 'refreshed ID token changed azp'
  if (data.authTime !== undefined && c.auth_time !== undefined && c.auth_time !== data.authTime) return 'refreshed ID token changed auth_time'
  return undefined
}
