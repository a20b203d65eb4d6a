import { randomUUID } from 'node:crypto'
import { setTimeout as delay } from 'node:timers/promises'
import type { Logger } from '../log.js'
import type { RefreshLeases } from '../store/types.js'

/** How often a waiter asks again for a lease someone else holds. */
const POLL_MS = 50

/** A refresh lease this process holds on one session. */
export interface HeldLease {
  readonly sid: string
  /** Random per acquisition: only this holder can renew or release it. */
  readonly token: string
  /**
   * The refresh journal as found at acquisition: the session version whose
   * refresh was started and never finished (its holder died after it may have
   * redeemed the refresh token), or null.
   */
  readonly journal: number | null
}

/**
 * Whether a previous holder died while refreshing `version`: that version's
 * refresh token may be spent, and presenting it again could trip the IdP's
 * reuse detection (RFC 9700 §4.14.2), so it must not be used or written over.
 */
export function interrupted(held: HeldLease, version: number): boolean {
  return held.journal === version
}

export interface WaitOptions<T> {
  /** Epoch ms: after it, `timeout` answers instead of another attempt. */
  readonly deadline: number
  /** Asked before each attempt; a value ends the wait (someone else did the work meanwhile). */
  readonly settled?: () => Promise<T | undefined>
  /** Runs under the lease; the lease is released afterwards, whatever happens. */
  readonly work: (held: HeldLease) => Promise<T>
  /** The answer (or the error thrown) when the deadline passed. */
  readonly timeout: () => T | Promise<T>
}

export interface RefreshLeaseOptions {
  readonly leases: RefreshLeases
  /** Lease length in ms; renewed every third of it while an IdP call runs (renewing()). */
  readonly leaseMs: number
  readonly logger: Logger
  readonly now?: () => number
}

/**
 * The per-session refresh lease across every instance, and its journal. One
 * holder at a time redeems a session's refresh token (security model S33); a
 * token exchange takes the same lease for its write-back, since a session
 * write clears the journal. A holder that dies loses the lease when it
 * expires; the journal it left tells the next holder (interrupted()).
 */
export class RefreshLease {
  readonly #leases: RefreshLeases
  readonly #leaseMs: number
  readonly #logger: Logger
  readonly #now: () => number

  constructor(options: RefreshLeaseOptions) {
    this.#leases = options.leases
    this.#leaseMs = options.leaseMs
    this.#logger = options.logger
    this.#now = options.now ?? Date.now
  }

  get leaseMs(): number {
    return this.#leaseMs
  }

  /** One attempt: the lease, or null when someone else holds it. */
  async acquire(sid: string): Promise<HeldLease | null> {
    const token = randomUUID()
    const { acquired, journal } = await this.#leases.acquire(sid, token, this.#leaseMs)
    return acquired ? { sid, token, journal } : null
  }

  /** Gives the lease back; a failure is ignored, as the lease expires by itself. */
  async release(held: HeldLease): Promise<void> {
    await this.#leases.release(held.sid, held.token).catch(() => {})
  }

  /**
   * Waits for the lease, polling, until `settled` answers, the lease is
   * acquired and `work` has run under it, or the deadline passes.
   */
  async wait<T>(sid: string, options: WaitOptions<T>): Promise<T> {
    for (;;) {
      const done = await options.settled?.()
      if (done !== undefined) return done
      const held = await this.acquire(sid)
      if (held) {
        try {
          return await options.work(held)
        } finally {
          await this.release(held)
        }
      }
      if (this.#now() >= options.deadline) return options.timeout()
      await delay(POLL_MS)
    }
  }

  /** Runs `work` (an IdP call) while renewing the lease every third of its length, so a slow IdP cannot outlive it. */
  async renewing<T>(held: HeldLease, work: () => Promise<T>): Promise<T> {
    const renew = setInterval(
      () => {
        this.#leases.renew(held.sid, held.token, this.#leaseMs).then(
          (kept) => {
            if (!kept) this.#logger.warn({ sid: held.sid }, 'refresh lease lost while the refresh was running')
          },
          () => {},
        )
      },
      Math.max(50, Math.floor(this.#leaseMs / 3)),
    )
    try {
      return await work()
    } finally {
      clearInterval(renew)
    }
  }

  /**
   * Records, under the lease, that the refresh token of `session.version` is
   * about to be redeemed. A successful session write clears it; so does
   * clearJournal(). It lives as long as the session can. False, and nothing
   * written, when `held` no longer holds the lease: the holder paused past it,
   * someone else may be redeeming the same token, so it must not (security
   * model S78).
   */
  async writeJournal(held: HeldLease, session: { readonly version: number; readonly absExp: number }): Promise<boolean> {
    return this.#leases.writeJournal(held.sid, held.token, session.version, Math.max(1000, session.absExp - this.#now()))
  }

  /** The refresh certainly did not reach the IdP: its refresh token is unspent. Never throws. */
  async clearJournal(held: HeldLease): Promise<void> {
    await this.#leases.clearJournal(held.sid).catch(() => {})
  }
}
