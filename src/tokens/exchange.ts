import type { Config, TokenExchangeConfig } from '../config.js'
import { BffError, IdpUnavailableError, LoginRequiredError } from '../errors.js'
import type { Logger } from '../log.js'
import { ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE, type ExchangeResult, type OidcClient } from '../oidc/client.js'
import { classifyIdpError, describe, idpBug } from '../oidc/idp-errors.js'
import type { KeptToken, Session, SessionManager } from '../session/sessions.js'
import { SingleFlight } from '../single-flight.js'
import { SpanKind, traced } from '../tracing.js'
import { interrupted, type HeldLease, type RefreshLease } from './lease.js'
import type { AccessToken, TokenService } from './refresh.js'
/** Compare-and-set attempts when a writer outside the refresh lock changed the session meanwhile. */
const WRITE_ATTEMPTS = 3

/**
 * The key of an exchanged token in SessionData.exchangedTokens: `x:` and JSON
 * of the target, scopes sorted. It contains no space, since audience, resource
 * and scope tokens may not (config-routes.ts) and JSON.stringify adds none, so
 * it is never equal to a refresh-audience key (audienceKey in refresh.ts, '' or
 * with a space): the previous release kept both kinds in audienceTokens, and
 * upgradeSessionData tells them apart that way.
 */
export function exchangeKey(target: TokenExchangeConfig): string {
  return `x:${JSON.stringify([target.audience ?? null, target.resource ?? null, [...(target.scopes ?? [])].sort()])}`
}

export interface TokenExchangerOptions {
  config: Config
  sessions: Pick<SessionManager, 'loadBySid' | 'replace'>
  oidc: Pick<OidcClient, 'tokenExchangeGrant'>
  logger: Logger
  now: () => number
  /**
   * Gives the session's own access token, fresh, as the subject token: a
   * subject token that needs refreshing is refreshed once across instances,
   * under the refresh lease and journal, never by a parallel path here.
   */
  tokens: Pick<TokenService, 'accessToken'>
  /** The refresh lease, taken for the write-back (see #store). */
  lease: RefreshLease
  /** How long the write-back waits for a refresh in progress before it gives up caching (ms). */
  writeWaitMs?: number
  /** Exchanges this process runs at once; beyond it, 503 at once rather than a pile-up. */
  maxInflight: number
}

interface Exchanged {
  readonly session: Session
  readonly token: string
  readonly type: string
}

/** RFC 8693 §2.2.2: the IdP answered and refused; the route cannot be served, the session is fine. */
function refused(logDetail: string, cause?: unknown): BffError {
  // Not 401 login_required: the refusal says nothing reliable about the
  // session. RFC 8693 §2.2.2 makes a bad subject token `invalid_request`, IdPs
  // use invalid_grant, invalid_target, unauthorized_client or invalid_scope for
  // policy, and the subject token was fresh by our clock (refreshed first when
  // not), so a retry with a refreshed token would rotate the refresh token on
  // every request for nothing. A session that is really dead at the IdP ends
  // at its next refresh, through the refresh path. Not 503 idp_unavailable
  // either: the IdP is up and retrying soon changes nothing. So 502: the
  // gateway could not get what it needs to call this upstream, and the SPA's
  // other routes keep working.
  return new BffError('upstream_unavailable', 'The identity provider refused a token for this API.', { logDetail, cause })
}

/**
 * Access tokens obtained by RFC 8693 token exchange for routes with a
 * `tokenExchange` target: the session's own access token (the subject token,
 * refreshed first when it expires within BFF_REFRESH_SKEW) is swapped at the
 * IdP's token endpoint for one meant for that upstream. The result is kept in
 * the encrypted session under exchangeKey(target) and reused until it expires
 * within the same skew; one exchange per session and target at a time in this
 * process. An exchange spends no refresh token, so the IdP call runs outside
 * the refresh lock; only the short write-back takes it (see #store).
 */
export class TokenExchanger {
  readonly #o: TokenExchangerOptions
  /** One exchange per session and target in this process; beyond maxInflight keys, 503 at once. */
  readonly #flights: SingleFlight<string, Exchanged>

  constructor(options: TokenExchangerOptions) {
    this.#o = options
    this.#flights = new SingleFlight({
      limit: options.maxInflight,
      full: () => new IdpUnavailableError({ logDetail: 'too many token exchanges in flight in this process' }),
    })
  }

  /** Exchanges running in this process right now. */
  get inflight(): number {
    return this.#flights.size
  }

  /** The same rule as every other token: usable until it expires within BFF_REFRESH_SKEW. */
  #usable(t: KeptToken | undefined): t is KeptToken {
    return t !== undefined && (t.expiresAt === undefined || t.expiresAt - this.#o.config.refreshSkew * 1000 > this.#o.now())
  }

  /**
   * A token for `target`: the cached one while it lasts, else a new exchange.
   * `force` (after the upstream answered invalid_token) exchanges again unless
   * someone already replaced the rejected token.
   */
  async accessToken(session: Session, target: TokenExchangeConfig, options: { force?: boolean } = {}): Promise<AccessToken> {
    const key = exchangeKey(target)
    const force = options.force ?? false
    const cached = session.data.exchangedTokens?.[key]
    if (!force && this.#usable(cached)) return { token: cached.accessToken, type: cached.tokenType, session }
    const r = await this.#flights.run(`${session.sid}\0${key}`, () =>
      traced('tokenward.token_exchange', { 'tokenward.exchange.forced': force }, () => this.#exchange(session, target, key, force)),
    )
    return { token: r.token, type: r.type, session: r.session }
  }

  async #exchange(seen: Session, target: TokenExchangeConfig, key: string, force: boolean): Promise<Exchanged> {
    const rejected = force ? seen.data.exchangedTokens?.[key]?.accessToken : undefined
    // Another request or instance may have stored one meanwhile: the session is the shared cache.
    const latest = await this.#o.sessions.loadBySid(seen.sid, { slide: false })
    if (!latest) throw new LoginRequiredError('The session has ended.')
    const cached = latest.data.exchangedTokens?.[key]
    if (this.#usable(cached) && cached.accessToken !== rejected)
      return { session: latest, token: cached.accessToken, type: cached.tokenType }

    const subject = await this.#o.tokens.accessToken(latest)
    const token = await this.#request(subject, target, key)
    const session = await this.#store(subject.session, key, token)
    return { session, token: token.accessToken, type: token.tokenType }
  }

  async #request(subject: AccessToken, target: TokenExchangeConfig, key: string): Promise<KeptToken> {
    const { logger } = this.#o
    const sid = subject.session.sid
    const where = { sid, audience: target.audience, resource: target.resource }
    let r: ExchangeResult
    try {
      r = await traced(
        'oidc token-exchange grant',
        { 'tokenward.audience': key },
        () =>
          this.#o.oidc.tokenExchangeGrant({
            subjectToken: subject.token,
            audience: target.audience,
            resource: target.resource,
            scopes: target.scopes,
          }),
        SpanKind.CLIENT,
      )
    } catch (err) {
      const reason = describe(err)
      const failure = classifyIdpError(err)
      if (failure === 'unavailable') {
        // The same answer as a refresh the IdP did not answer: 503, session kept.
        logger.warn({ ...where, reason }, 'token exchange failed: identity provider unavailable')
        throw new IdpUnavailableError({ cause: err, logDetail: `token exchange: ${reason}` })
      }
      if (failure === 'bug') {
        // Neither the IdP's answer nor its absence: a 500, logged as what it is.
        logger.error({ ...where, reason }, 'token exchange failed: unexpected error (a bug or a misconfiguration)')
        throw idpBug(err, 'token exchange')
      }
      logger.warn({ ...where, reason }, 'token exchange refused by the identity provider')
      throw refused(`token exchange refused: ${reason}`, err)
    }
    // RFC 8693 §2.2.1: token_type N_A means the issued token is no access token;
    // issued_token_type says what it is. Only an access token (or an access
    // token in JWT form) may go upstream as one.
    if (
      r.tokenType.toLowerCase() === 'n_a' ||
      (r.issuedTokenType !== undefined && r.issuedTokenType !== ACCESS_TOKEN_TYPE && r.issuedTokenType !== JWT_TOKEN_TYPE)
    ) {
      logger.warn(
        { ...where, tokenType: r.tokenType, issuedTokenType: r.issuedTokenType },
        'token exchange issued something other than an access token',
      )
      throw refused(`token exchange issued ${r.issuedTokenType ?? r.tokenType}, not an access token`)
    }
    // Any refresh_token in the answer (RFC 8693 §2.2.1 allows one) is ignored:
    // the exchanged token is renewed by exchanging again, and the session's own
    // refresh token is never replaced from here.
    const now = this.#o.now()
    // expires_in is only RECOMMENDED (RFC 8693 §2.2.1); without it the token
    // lives no longer than the subject token it was obtained with.
    const expiresAt = r.expiresIn !== undefined ? now + r.expiresIn * 1000 : subject.session.data.accessTokenExpiresAt
    logger.info({ ...where, tokenType: r.tokenType, expiresIn: r.expiresIn }, 'token exchange')
    return { accessToken: r.accessToken, tokenType: r.tokenType, expiresAt }
  }

  /**
   * Writes the token back with compare-and-set, under the refresh lock. The
   * exchange itself spends no refresh token and needs no lock, but a write
   * while a refresh runs would break it: the store's compare-and-set clears
   * the refresh journal (the crash record of a refresh in progress), and the
   * refresh's own compare-and-set would then fail and throw away freshly
   * rotated tokens. The lock is held for a read and a write only. If it stays
   * busy, or a crashed refresh left a journal, the token is used uncached:
   * caching is an optimisation, and the next request exchanges again.
   */
  async #store(base: Session, key: string, token: KeptToken): Promise<Session> {
    const { lease, logger } = this.#o
    return lease.wait(base.sid, {
      deadline: this.#o.now() + (this.#o.writeWaitMs ?? 2000),
      work: (held) => this.#write(base, key, token, held),
      timeout: () => {
        logger.warn({ sid: base.sid }, 'a refresh held the session too long; the exchanged token is used without caching')
        return base
      },
    })
  }

  async #write(base: Session, key: string, token: KeptToken, held: HeldLease): Promise<Session> {
    const { sessions, logger } = this.#o
    for (let attempt = 0; attempt < WRITE_ATTEMPTS; attempt++) {
      const latest = await sessions.loadBySid(base.sid, { slide: false })
      if (!latest) throw new LoginRequiredError('The session has ended.')
      if (interrupted(held, latest.version)) {
        // A refresh died mid-flight at this version; the refresh path must see
        // its journal (RFC 9700 §4.14.2), so nothing is written over it.
        return latest
      }
      const now = this.#o.now()
      const exchangedTokens: Record<string, KeptToken> = {}
      for (const [k, t] of Object.entries(latest.data.exchangedTokens ?? {})) {
        // Expired ones go (targets of an earlier configuration would stay forever).
        if (t.expiresAt !== undefined && t.expiresAt <= now) continue
        exchangedTokens[k] = t
      }
      exchangedTokens[key] = token
      const { result, session } = await sessions.replace(latest, { ...latest.data, exchangedTokens })
      if (result === 'ok') return session
      if (result === 'missing') throw new LoginRequiredError('The session has ended.')
      // 'conflict': a writer that does not take the lock changed it; read again and merge.
    }
    logger.warn({ sid: base.sid }, 'the session kept changing; the exchanged token is used without caching')
    return base
  }
}
