import type { Config } from '../config.js'
import { BffError, IdpUnavailableError, LoginRequiredError } from '../errors.js'
import { audit, type Logger } from '../log.js'
import { describe, isFatalGrantError, isTransientIdpError, type OidcClient, type TokenResult } from '../oidc/client.js'
import type { Session, SessionData, SessionManager } from '../session/sessions.js'

export interface TokenServiceOptions {
  config: Config
  sessions: SessionManager
  oidc: OidcClient
  logger: Logger
  now: () => number
}

export interface AccessToken {
  readonly token: string
  readonly type: string
  readonly session: Session
}

/**
 * Hands out a fresh access token for a session, refreshing it when it expires
 * within BFF_REFRESH_SKEW. Refreshes for one session are single-flight in this
 * process; the result is persisted with compare-and-set on the session version,
 * so a stale writer never overwrites a rotated refresh token (RFC 9700 §4.14.2).
 */
export class TokenService {
  readonly #o: TokenServiceOptions
  readonly #inflight = new Map<string, Promise<Session>>()

  constructor(options: TokenServiceOptions) {
    this.#o = options
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
      p = this.#refresh(session, force).finally(() => this.#inflight.delete(session.sid))
      this.#inflight.set(session.sid, p)
    }
    return p
  }

  async #refresh(seen: Session, force: boolean): Promise<Session> {
    const { sessions, logger } = this.#o
    // Re-read: another request may have refreshed since this one loaded the session.
    const session = await sessions.loadBySid(seen.sid, { slide: false })
    if (!session) throw new LoginRequiredError('The session has ended.')
    if (session.version !== seen.version && !this.needsRefresh(session)) return session
    if (!force && !this.needsRefresh(session)) return session
    const refreshToken = session.data.refreshToken
    if (!refreshToken) {
      await sessions.destroy(session.sid)
      audit(logger, 'session_expired', { outcome: 'failure', sub: session.data.sub, sid: session.sid, reason: 'access token expired and no refresh token' })
      throw new LoginRequiredError('The session has expired.')
    }

    let tokens: TokenResult
    try {
      // The original scope is not re-sent: RFC 6749 §6 keeps it unchanged, and it can never be widened.
      tokens = await this.#o.oidc.refreshTokenGrant(refreshToken)
    } catch (err) {
      if (isFatalGrantError(err)) {
        await sessions.destroy(session.sid)
        audit(logger, 'refresh_token_rejected', { outcome: 'failure', sub: session.data.sub, sid: session.sid, reason: describe(err) })
        throw new LoginRequiredError('The session has ended; please sign in again.')
      }
      audit(logger, 'refresh_failed', { outcome: 'failure', sub: session.data.sub, sid: session.sid, reason: describe(err) })
      if (isTransientIdpError(err)) throw new IdpUnavailableError({ cause: err, logDetail: describe(err) })
      throw new BffError('server_error', 'An unexpected error occurred.', { cause: err, logDetail: describe(err) })
    }

    const mismatch = idTokenMismatch(session.data, tokens)
    if (mismatch) {
      await sessions.destroy(session.sid)
      audit(logger, 'refresh_token_rejected', { outcome: 'failure', sub: session.data.sub, sid: session.sid, reason: mismatch })
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
