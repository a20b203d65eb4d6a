import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import type { Config } from '../config.js'
import { Lru } from '../lru.js'
import { cookieValue } from '../http/headers.js'
import type { TransactionRecords } from '../store/types.js'
import type { CookieSealer } from './cookie.js'
import { DBSC_ALGORITHMS } from './dbsc-proof.js'
import type { Session } from './sessions.js'

/**
 * Device Bound Session Credentials (W3C webappsec-dbsc): the browser proves
 * possession of a non-exportable key to obtain a short-lived "bound" cookie;
 * once a session is bound, its long-lived session cookie alone no longer
 * reaches the session (security model S84-S87). This module holds the
 * challenges (in the store, so any instance can verify a proof another
 * instance asked for) and the bound cookie; src/routes/dbsc.ts the endpoints.
 */

export const DBSC_REGISTER_PATH = '/auth/dbsc/register'
export const DBSC_REFRESH_PATH = '/auth/dbsc/refresh'

/** Paths that must work without the bound cookie, so the browser never holds them for a refresh. */
export const DBSC_UNBOUND_PATHS = [
  '/auth/login',
  '/auth/callback',
  '/auth/dbsc',
  '/auth/backchannel-logout',
  '/auth/frontchannel-logout',
  '/healthz',
  '/readyz',
  '/metrics',
] as const

/** A registration challenge is signed right after the login's redirect. */
const REGISTER_CHALLENGE_MS = 300_000
/**
 * Registration is offered only this long after login: a browser that supports
 * it registers at its first /auth/session, and a cookie stolen later cannot
 * bind the session to the thief's key (and lock out the victim's browser).
 */
const OFFER_WINDOW_MS = 300_000
/** How often one instance offers registration to one unbound session. */
const OFFER_INTERVAL_MS = 60_000
/** A challenge answered with a 403 is signed at once. */
const REFRESH_CHALLENGE_MS = 60_000
/** Leeway when checking a bound cookie's own expiry (clock differences between instances). */
const BOUND_COOKIE_SKEW_MS = 5_000

export type ChallengePurpose = 'register' | 'refresh'

interface ChallengeEntry {
  readonly sid: string
  readonly purpose: ChallengePurpose
  /** SHA-256 of the registration's `authorization` value. */
  readonly auth?: string
}

const sha256 = (value: string) => createHash('sha256').update(value).digest()

/**
 * Single-use challenges, each bound to one session and one purpose. Kept in
 * the store's short-lived single-use records (GETDEL) under the SHA-256 of the
 * challenge: a proof's `jti` is looked up by its hash, so no comparison of the
 * secret itself can leak timing, and a store dump holds no live challenge.
 */
export class DbscChallenges {
  readonly #records: TransactionRecords

  constructor(records: TransactionRecords) {
    this.#records = records
  }

  static key(challenge: string): string {
    return `dbsc:${sha256(`tokenward/dbsc-challenge\0${challenge}`).toString('base64url')}`
  }

  async issue(sid: string, purpose: ChallengePurpose, ttlMs: number, authorization?: string): Promise<string> {
    const challenge = randomBytes(32).toString('base64url')
    const entry: ChallengeEntry = {
      sid,
      purpose,
      ...(authorization === undefined ? {} : { auth: sha256(authorization).toString('base64url') }),
    }
    await this.#records.put(DbscChallenges.key(challenge), Buffer.from(JSON.stringify(entry), 'utf8'), ttlMs)
    return challenge
  }

  /**
   * Consumes `challenge` (whatever the answer, it cannot be used again) and
   * says whether it was live, issued to `sid` for `purpose`, and (for
   * registration) for this `authorization`.
   */
  async consume(challenge: string, sid: string, purpose: ChallengePurpose, authorization?: string): Promise<boolean> {
    if (challenge.length === 0 || challenge.length > 256) return false
    const raw = await this.#records.take(DbscChallenges.key(challenge))
    if (!raw) return false
    let entry: ChallengeEntry
    try {
      entry = JSON.parse(raw.toString('utf8')) as ChallengeEntry
    } catch {
      return false
    }
    if (entry.sid !== sid || entry.purpose !== purpose) return false
    if (purpose !== 'register') return true
    if (entry.auth === undefined || authorization === undefined) return false
    const want = Buffer.from(entry.auth, 'base64url')
    const got = sha256(authorization)
    return want.length === got.length && timingSafeEqual(want, got)
  }
}

/** Why a bound session's request carried no acceptable bound cookie, or undefined when it did. */
export type BoundCookieProblem = 'missing' | 'invalid' | 'expired' | undefined

/** The short-lived bound cookie and the session instructions the browser is given. */
export class DeviceBinding {
  readonly #config: Config
  readonly #cookies: CookieSealer
  readonly #now: () => number
  readonly challenges: DbscChallenges

  constructor(options: { config: Config; cookies: CookieSealer; challenges: TransactionRecords; now: () => number }) {
    this.#config = options.config
    this.#cookies = options.cookies
    this.#now = options.now
    this.challenges = new DbscChallenges(options.challenges)
  }

  get enabled(): boolean {
    return this.#config.dbsc.enabled
  }

  /** Whether requests for `session` need the bound cookie: it registered a key, and DBSC is on. */
  required(session: Session): boolean {
    return this.#config.dbsc.enabled && session.data.dbsc !== undefined
  }

  /** Sessions this instance offered registration to lately: a polling SPA does not make a challenge per poll. */
  readonly #offered = new Lru<string, true>(10_000, OFFER_INTERVAL_MS)

  /**
   * The `Secure-Session-Registration` header for a session that is not bound
   * yet, at most once a minute per session and instance; undefined otherwise.
   *
   * It goes on a same-origin answer that carried the session cookie
   * (/auth/session), not on the login callback's redirect: the browser sends
   * its registration request in the context of the response that offered it,
   * and after the IdP's cross-site redirect chain the SameSite session cookie
   * is withheld from it (Chromium, checked in test/e2e/dbsc.test.ts), so the
   * registration could not name its session.
   */
  async offerFor(session: Session): Promise<string | undefined> {
    if (!this.#config.dbsc.enabled || session.data.dbsc !== undefined || this.#offered.get(session.sid)) return undefined
    if (this.#now() - session.data.createdAt > OFFER_WINDOW_MS) return undefined
    this.#offered.set(session.sid, true)
    return this.registrationOffer(session.sid)
  }

  /** A `Secure-Session-Registration` header value: a fresh challenge and authorization, both tied to this session. */
  async registrationOffer(sid: string): Promise<string> {
    const authorization = randomBytes(24).toString('base64url')
    const challenge = await this.challenges.issue(sid, 'register', REGISTER_CHALLENGE_MS, authorization)
    return `(${DBSC_ALGORITHMS.join(' ')});path="${DBSC_REGISTER_PATH}";challenge="${challenge}";authorization="${authorization}"`
  }

  /** A `Secure-Session-Challenge` header value: a fresh refresh challenge for this session. */
  async refreshChallenge(sid: string, ahead: boolean): Promise<string> {
    // One sent ahead is used at the next refresh, about a cookie lifetime later.
    const ttl = ahead ? (this.#config.dbsc.cookieTtl + 300) * 1000 : REFRESH_CHALLENGE_MS
    return `"${await this.challenges.issue(sid, 'refresh', ttl)}";id="${sid}"`
  }

  /**
   * A new bound cookie for a bound session: a seal of the session reference,
   * the key's thumbprint and its own expiry, which tokenward checks itself, so
   * a copy stops working at that instant however it is kept (security model S86).
   */
  async issueCookie(session: Session): Promise<string> {
    const ttl = this.#config.dbsc.cookieTtl
    const exp = this.#now() + ttl * 1000
    const value = await this.#cookies.seal({ s: session.sid, k: session.data.dbsc?.thumbprint ?? '', e: exp }, ttl)
    return `${this.#config.dbsc.cookieName}=${value}; Max-Age=${ttl}; ${this.cookieAttributes()}`
  }

  /** The bound cookie's attributes as `credentials[].attributes` states them (the browser compares them with the Set-Cookie). */
  cookieAttributes(): string {
    const parts = ['Path=/', 'HttpOnly']
    if (this.#config.cookie.secure) parts.push('Secure')
    parts.push(`SameSite=${this.#config.cookie.sameSite}`)
    return parts.join('; ')
  }

  /** Checks the bound cookie in a Cookie header value against `session`. */
  async cookieProblem(cookies: string | undefined, session: Session): Promise<BoundCookieProblem> {
    const sealed = cookieValue(cookies, this.#config.dbsc.cookieName)
    if (sealed === undefined) return 'missing'
    const data = await this.#cookies.unseal<{ s?: unknown; k?: unknown; e?: unknown }>(sealed, this.#config.dbsc.cookieTtl)
    if (!data || data.s !== session.sid || data.k !== session.data.dbsc?.thumbprint || typeof data.e !== 'number') return 'invalid'
    return data.e + BOUND_COOKIE_SKEW_MS > this.#now() ? undefined : 'expired'
  }

  /** The session instructions (JSON) of a registration or refresh answer. */
  instructions(sid: string): Record<string, unknown> {
    const { publicUrl } = this.#config
    return {
      session_identifier: sid,
      refresh_url: DBSC_REFRESH_PATH,
      scope: {
        origin: publicUrl.origin,
        include_site: false,
        scope_specification: DBSC_UNBOUND_PATHS.map((path) => ({ type: 'exclude', domain: publicUrl.hostname, path })),
      },
      credentials: [{ type: 'cookie', name: this.#config.dbsc.cookieName, attributes: this.cookieAttributes() }],
    }
  }
}
