import { trace } from '@opentelemetry/api'
import type { Config } from '../config.js'
import { SpanKind, traced } from '../tracing.js'
import { BffError, IdpUnavailableError, LoginRequiredError } from '../errors.js'
import { audit, type Logger } from '../log.js'
import type { OidcClient, TokenResult } from '../oidc/client.js'
import { classifyIdpError, describe, idpBug, isFatalGrantError } from '../oidc/idp-errors.js'
import type { EndReason, SessionTerminator } from '../lifecycle/terminate.js'
import type { Session, SessionData, SessionManager } from '../session/sessions.js'
import type { Metrics, RefreshOutcome } from '../metrics.js'
import { SingleFlight } from '../single-flight.js'
import { idTokenMismatch, mayHaveReachedIdp } from './grant-checks.js'
import { interrupted, type HeldLease, type RefreshLease } from './lease.js'
import { refreshTokenExpiry } from './refresh-lifetime.js'

export interface TokenServiceOptions {
  config: Config
  sessions: Pick<SessionManager, 'loadBySid' | 'replace' | 'latestEnd'>
  oidc: Pick<OidcClient, 'refreshTokenGrant'>
  logger: Logger
  terminator: Pick<SessionTerminator, 'end'>
  /** The per-session refresh lease and journal, shared with token exchange. */
  lease: RefreshLease
  metrics?: Metrics
  now: () => number
  /** How long a request waits for another instance's refresh before a 503. */
  lockWaitMs?: number
  /** Refreshes this process runs (or waits for) at once; beyond it, 503 at once rather than a pile-up. */
  maxInflight?: number
}

/** A route's token policy: RFC 8707 resource and (narrower) scopes; empty for the session's own token. */
export interface Audience {
  readonly resource?: string | undefined
  readonly scopes?: readonly string[] | undefined
}

/** '' for the session's own token, else a stable key per resource and scope set. */
export function audienceKey(audience: Audience | undefined): string {
  if (!audience?.resource && !audience?.scopes?.length) return ''
  return `${audience.resource ?? ''} ${[...(audience.scopes ?? [])].sort().join(' ')}`
}

function tokenFor(data: SessionData, key: string): { token: string; type: string; expiresAt: number | undefined } | undefined {
  if (key === '') return { token: data.accessToken, type: data.tokenType, expiresAt: data.accessTokenExpiresAt }
  const t = data.audienceTokens?.[key]
  return t && { token: t.accessToken, type: t.tokenType, expiresAt: t.expiresAt }
}

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
  /** One refresh per session and audience in this process; callers beyond maxInflight get a 503 at once. */
  readonly #flights: SingleFlight<string, Session>
  readonly #lockWaitMs: number

  constructor(options: TokenServiceOptions) {
    this.#o = options
    this.#lockWaitMs = options.lockWaitMs ?? 15_000
    this.#flights = new SingleFlight({
      limit: options.maxInflight ?? 1000,
      full: () => {
        this.#count('lock_timeout')
        return new IdpUnavailableError({ logDetail: 'too many refreshes in flight in this process' })
      },
    })
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
    return this.#flights.size
  }

  /** Whether the token for `key` is missing or expires within BFF_REFRESH_SKEW. */
  needsRefresh(session: Session, key = ''): boolean {
    const t = tokenFor(session.data, key)
    if (!t) return true
    return t.expiresAt !== undefined && t.expiresAt - this.#o.config.refreshSkew * 1000 <= this.#o.now()
  }

  /**
   * A fresh access token: the session's own, or one for a route's audience
   * (RFC 8707 `resource`, narrower `scope`; RFC 6749 §6), obtained with the
   * refresh token under the same lock and kept in the session per audience.
   */
  async accessToken(session: Session, options: { force?: boolean; audience?: Audience } = {}): Promise<AccessToken> {
    const key = audienceKey(options.audience)
    let current = session
    if (options.force || this.needsRefresh(session, key)) current = await this.refresh(session, options.force ?? false, options.audience)
    const t = tokenFor(current.data, key)!
    return { token: t.token, type: t.type, session: current }
  }

  /** Single-flight per session and audience: concurrent callers share one refresh. */
  refresh(session: Session, force: boolean, audience?: Audience): Promise<Session> {
    const flight = `${session.sid}\0${audienceKey(audience)}`
    return this.#flights.run(flight, () =>
      traced('tokenward.refresh', { 'tokenward.refresh.forced': force }, () => this.#refresh(session, force, audience)),
    )
  }

  async #refresh(seen: Session, force: boolean, audience: Audience | undefined): Promise<Session> {
    const { sessions, lease } = this.#o
    const key = audienceKey(audience)
    // Done when someone else already did the work: a forced refresh (after an
    // upstream 401) is satisfied by any other token than the rejected one.
    const rejected = tokenFor(seen.data, key)?.token
    const done = (s: Session) =>
      force ? tokenFor(s.data, key)?.token !== rejected && !this.needsRefresh(s, key) : !this.needsRefresh(s, key)
    const current = async () => {
      const session = await sessions.loadBySid(seen.sid, { slide: false })
      if (!session) throw new LoginRequiredError('The session has ended.')
      return session
    }
    const started = this.#o.now()
    const waited = () => {
      const seconds = (this.#o.now() - started) / 1000
      this.#o.metrics?.refreshLockWait.observe(seconds)
      trace.getActiveSpan()?.setAttribute('tokenward.refresh.lock_wait_ms', seconds * 1000)
    }
    return lease.wait(seen.sid, {
      deadline: started + this.#lockWaitMs,
      settled: async () => {
        const session = await current()
        if (!done(session)) return undefined
        waited()
        return session
      },
      work: async (held) => {
        waited()
        // Re-read under the lock: the previous holder may have finished between
        // our read and our acquire (the stale-read bug of dotnet/aspnetcore#56170).
        const fresh = await current()
        if (done(fresh)) return fresh
        if (interrupted(held, fresh.version)) {
          // A holder died after it may have redeemed this refresh token. Using it
          // again could trip the IdP's reuse detection (RFC 9700 §4.14.2), so the
          // session fails closed and visibly instead.
          this.#count('interrupted')
          await this.#end(fresh, 'refresh_failed', true, 'a previous refresh was interrupted')
          throw new LoginRequiredError('The session has ended; please sign in again.')
        }
        return this.#redeem(fresh, held, audience)
      },
      timeout: () => {
        this.#count('lock_timeout')
        throw new IdpUnavailableError({ logDetail: 'timed out waiting for another instance to refresh' })
      },
    })
  }

  /** Redeems the refresh token under the lease, renewing it so a slow IdP cannot outlive it. */
  async #redeem(session: Session, held: HeldLease, audience: Audience | undefined): Promise<Session> {
    const refreshToken = session.data.refreshToken
    if (!refreshToken && audienceKey(audience) !== '') {
      // Only a refresh token can get a token for another audience; the session
      // itself is fine, the route's policy cannot be met.
      throw new BffError('server_error', 'An unexpected error occurred.', {
        logDetail: 'route needs an audience token but the session has no refresh token',
      })
    }
    if (!refreshToken) {
      await this.#end(session, 'session_expired', false, 'access token expired and no refresh token')
      throw new LoginRequiredError('The session has expired.')
    }
    if (!(await this.#o.lease.writeJournal(held, session))) {
      // The lease expired before the journal was written (a pause longer than
      // the lease): another holder may be redeeming this very refresh token, and
      // a second presentation could trip the IdP's reuse detection (RFC 9700
      // §4.14.2; security model S78). Not presented: 503, and the retry finds
      // the other holder's tokens.
      this.#count('lock_timeout')
      throw new IdpUnavailableError({ logDetail: 'refresh lease lost before redeeming; the refresh token was not presented' })
    }
    return this.#o.lease.renewing(held, () => this.#grant(session, held, refreshToken, audience))
  }

  async #grant(session: Session, held: HeldLease, refreshToken: string, audience: Audience | undefined): Promise<Session> {
    const { sessions, logger } = this.#o
    const key = audienceKey(audience)
    // Without an audience the original scope is not re-sent: RFC 6749 §6 keeps it
    // unchanged, and it is never widened. A route's scopes may only narrow it
    // (the IdP refuses anything else with invalid_scope).
    const params: Record<string, string> = {}
    if (audience?.resource) params.resource = audience.resource
    if (audience?.scopes?.length) params.scope = audience.scopes.join(' ')
    let tokens: TokenResult
    try {
      tokens = await traced(
        'oidc refresh_token grant',
        { 'tokenward.audience': key },
        () => this.#o.oidc.refreshTokenGrant(refreshToken, params),
        SpanKind.CLIENT,
      )
    } catch (err) {
      if (isFatalGrantError(err)) {
        this.#count('rejected')
        if ((err as { error?: string }).error === 'invalid_grant') this.#o.metrics?.invalidGrants.inc()
        await this.#end(session, 'refresh_token_rejected', false, describe(err))
        throw new LoginRequiredError('The session has ended; please sign in again.')
      }
      const failure = classifyIdpError(err)
      if (failure === 'unavailable') {
        this.#count('idp_unavailable')
        audit(logger, 'refresh_failed', { outcome: 'failure', sub: session.data.sub, sid: session.sid, reason: describe(err) })
        // The IdP did not answer: keep the session (docs/endpoints.md, token handling). If the request
        // never reached it (refused, unresolvable) or it answered an error, the
        // token is unspent: clear the journal and retry later. If the exchange
        // broke after sending (reset, timeout), the IdP may have rotated the
        // token: the journal stays, and the next refresh ends the session
        // visibly instead of presenting a token that may be spent (which would
        // trip the IdP's reuse detection, RFC 9700 §4.14.2).
        if (!mayHaveReachedIdp(err)) await this.#o.lease.clearJournal(held)
        throw new IdpUnavailableError({ cause: err, logDetail: describe(err) })
      }
      if (failure === 'bug') {
        // A bug or misconfiguration (say, a TypeError for a bad argument), not
        // the IdP's doing: 500, logged as an error, and the session is kept. Whether
        // the request left before the failure is unknown, so the refresh journal
        // stays unless the request certainly never reached the IdP; then the
        // next refresh ends the session visibly rather than present a refresh
        // token that may be spent (RFC 9700 §4.14.2).
        this.#count('failed')
        logger.error(
          { sid: session.sid, reason: describe(err) },
          'refresh failed: unexpected error talking to the identity provider (a bug or a misconfiguration)',
        )
        if (!mayHaveReachedIdp(err)) await this.#o.lease.clearJournal(held)
        throw idpBug(err, 'refresh')
      }
      // The IdP answered but the response was unusable (for example an invalid ID
      // token): the refresh token may be spent, so the session fails closed.
      this.#count('failed')
      await this.#end(session, 'refresh_failed', true, `unusable refresh response: ${describe(err)}`)
      throw new LoginRequiredError('The session has ended; please sign in again.')
    }

    const mismatch = idTokenMismatch(session.data, tokens, this.#o.config.clientId)
    if (mismatch) {
      this.#count('failed')
      await this.#end(session, 'refresh_token_rejected', true, mismatch)
      throw new LoginRequiredError('The session has ended; please sign in again.')
    }

    const now = this.#o.now()
    const expiresAt = tokens.expiresIn === undefined ? undefined : now + tokens.expiresIn * 1000
    const own =
      key === ''
        ? { accessToken: tokens.accessToken, tokenType: tokens.tokenType, accessTokenExpiresAt: expiresAt }
        : {
            audienceTokens: {
              ...session.data.audienceTokens,
              [key]: { accessToken: tokens.accessToken, tokenType: tokens.tokenType, expiresAt },
            },
          }
    const latest = sessions.latestEnd(session.data)
    const rotatedExpiry = tokens.refreshToken ? refreshTokenExpiry(tokens.refreshTokenLifetime, { now, latest }) : undefined
    const data: SessionData = {
      ...session.data,
      ...own,
      // RFC 6749 §6: the AS MAY issue a new refresh token; when it does not, keep ours.
      refreshToken: tokens.refreshToken ?? session.data.refreshToken,
      // A rotated refresh token brings its own expiry, earlier or later than the
      // last one; the session's end follows it within BFF_SESSION_MAX_AGE
      // (SessionManager.replace; security model S20, S77). Without a new
      // refresh token, or when the IdP does not say, the known expiry stays: a
      // planned end that is too early beats a surprise 401.
      refreshTokenExpiresAt: rotatedExpiry ?? session.data.refreshTokenExpiresAt,
      // An audience token's scope is the route's, not the session's.
      scope: key === '' ? (tokens.scope ?? session.data.scope) : session.data.scope,
      idToken: this.#o.config.logoutIdTokenHint && tokens.idToken ? tokens.idToken : session.data.idToken,
    }
    // The refresh runs for a proxied call, which slides the idle timeout (security model S19).
    const { result, session: updated } = await sessions.replace(session, data, { slide: true })
    if (result !== 'ok') {
      // Only the lock holder refreshes, so a conflict means the session was ended
      // meanwhile (logout, revoke): the new tokens must not resurrect it.
      logger.warn({ sid: session.sid, result }, 'session changed during refresh; discarding the new tokens')
      throw new LoginRequiredError('The session has ended.')
    }
    this.#count('success')
    audit(logger, 'refresh', {
      outcome: 'success',
      sub: data.sub,
      sid: session.sid,
      rotated: Boolean(tokens.refreshToken),
      ...(key ? { audience: key } : {}),
    })
    return updated
  }
}
