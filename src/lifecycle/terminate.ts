import type { Logger } from '../log.js'
import { audit, type AuditEvent } from '../log.js'
import type { OidcClient } from '../oidc/client.js'
import { classifyIdpError, describe } from '../oidc/idp-errors.js'
import type { Session, SessionManager } from '../session/sessions.js'
import type { SessionEventBus } from '../store/types.js'

export type EndReason = Extract<
  AuditEvent,
  | 'logout'
  | 'backchannel_logout'
  | 'frontchannel_logout'
  | 'session_revoked'
  | 'refresh_token_rejected'
  | 'refresh_failed'
  | 'session_expired'
>

export interface EndResult {
  /** true: revoked now; 'queued': the first attempt failed and retries are scheduled; false: nothing to revoke. */
  readonly revoked: boolean | 'queued'
}

export interface SessionTerminatorOptions {
  sessions: Pick<SessionManager, 'destroy'>
  /** Where session_ended goes to every instance. */
  events: Pick<SessionEventBus, 'publish'>
  oidc: Pick<OidcClient, 'revokeRefreshToken'>
  logger: Logger
  /** Delays between revocation retries; the default tries three more times over about 20 s. */
  retryDelaysMs?: readonly number[]
}

/**
 * Ends sessions on the server side, the same way whoever asks (the user's
 * logout, back-channel logout, an administrator, a rejected refresh): delete the
 * session and its index entries, tell every instance (and so the user's open
 * tabs), and revoke the refresh token at the IdP (RFC 7009). The local session
 * ends first, whatever the IdP does (RFC 7009 §2.2.1: the client must assume the
 * token still exists when revocation fails, so an IdP outage is retried, and
 * logged when it gives up; a refusal or a bug is logged once).
 */
export class SessionTerminator {
  readonly #o: SessionTerminatorOptions
  readonly #retries = new Set<NodeJS.Timeout>()

  constructor(options: SessionTerminatorOptions) {
    this.#o = options
  }

  async end(session: Session, reason: EndReason, options: { revoke?: boolean; audit?: Record<string, unknown> } = {}): Promise<EndResult> {
    const { sessions, events, logger } = this.#o
    await sessions.destroy(session.sid, session.data)
    await events.publish({ sid: session.sid, type: 'session_ended', reason }).catch((err: Error) => {
      logger.warn({ sid: session.sid, reason: err.message }, 'could not publish session_ended')
    })
    let revoked: EndResult['revoked'] = false
    const refreshToken = session.data.refreshToken
    if (refreshToken && options.revoke !== false) revoked = await this.#revoke(session.sid, refreshToken)
    audit(logger, reason, { outcome: 'success', sub: session.data.sub, sid: session.sid, revoked, ...options.audit })
    return { revoked }
  }

  async #revoke(sid: string, refreshToken: string): Promise<EndResult['revoked']> {
    try {
      return await this.#o.oidc.revokeRefreshToken(refreshToken)
    } catch (err) {
      if (this.#gaveUp(sid, err)) return false
      this.#o.logger.warn({ sid, reason: describe(err) }, 'refresh token revocation failed; retrying')
      this.#retry(sid, refreshToken, 0)
      return 'queued'
    }
  }

  /**
   * Only an outage is worth retrying (RFC 7009 §2.2.1, 503). A refusal (4xx)
   * or a bug or misconfiguration would fail the same way again: logged once,
   * as what it is, and not retried.
   */
  #gaveUp(sid: string, err: unknown): boolean {
    const failure = classifyIdpError(err)
    if (failure === 'unavailable') return false
    if (failure === 'refused') {
      this.#o.logger.warn({ sid, reason: describe(err) }, 'refresh token revocation refused by the identity provider; not retried')
    } else {
      this.#o.logger.error(
        { sid, reason: describe(err) },
        'refresh token revocation failed: unexpected error (a bug or a misconfiguration); not retried',
      )
    }
    return true
  }

  #retry(sid: string, refreshToken: string, attempt: number): void {
    const delays = this.#o.retryDelaysMs ?? [1000, 5000, 15_000]
    const delay = delays[attempt]
    if (delay === undefined) {
      this.#o.logger.error(
        { sid, attempts: attempt + 1 },
        'refresh token revocation gave up: the token stays valid at the IdP until it expires',
      )
      return
    }
    const timer = setTimeout(() => {
      this.#retries.delete(timer)
      this.#o.oidc.revokeRefreshToken(refreshToken).then(
        () => this.#o.logger.info({ sid, attempts: attempt + 2 }, 'refresh token revoked after retry'),
        (err: unknown) => {
          if (this.#gaveUp(sid, err)) return
          this.#o.logger.warn({ sid, reason: describe(err), attempt: attempt + 2 }, 'refresh token revocation failed')
          this.#retry(sid, refreshToken, attempt + 1)
        },
      )
    }, delay)
    timer.unref()
    this.#retries.add(timer)
  }

  /** Revocations still waiting for a retry. */
  get pendingRetries(): number {
    return this.#retries.size
  }

  /** Drops pending retries (shutdown), saying how many were dropped. */
  close(): void {
    if (this.#retries.size > 0)
      this.#o.logger.warn({ dropped: this.#retries.size }, 'shutting down with refresh token revocations still to retry')
    for (const t of this.#retries) clearTimeout(t)
    this.#retries.clear()
  }
}
