import { createHash, randomBytes } from 'node:crypto'
import { DecryptError, type Keyring } from '../crypto/keyring.js'
import { Lru } from '../lru.js'
import { SingleFlight } from '../single-flight.js'
import type { IndexKind, ReplaceResult, SessionIndexes, SessionRecords, StoredEntry } from '../store/types.js'
import { upgradeSessionData, type SessionData } from './data.js'

export type { KeptToken, SessionData } from './data.js'

export interface Session {
  /** tokenward's non-secret session reference; also the store key. */
  readonly sid: string
  readonly version: number
  /** Epoch ms: absolute expiry, never extended. */
  readonly absExp: number
  /** Epoch ms: when the idle timeout ends unless the session is used. */
  readonly idleExp: number
  readonly data: SessionData
}

/** 128 bits from the CSPRNG (OWASP session management: session ID entropy; security model S16). */
export function newHandle(): string {
  return randomBytes(16).toString('base64url')
}

/**
 * The store key and public reference of a session: a one-way hash of the cookie's
 * handle. A Redis dump or a leaked `sid` therefore cannot be turned back into a
 * working cookie (security model S58).
 */
export function sidFor(handle: string): string {
  return createHash('sha256').update('tokenward/sid\0').update(handle).digest().subarray(0, 24).toString('base64url')
}

function binding(sid: string, version: number, absExp: number): Buffer {
  return Buffer.from(`tokenward/session\0${sid}\0${version}\0${absExp}`, 'utf8')
}

interface Opened {
  /** The stored entry, compared in full with what the store returns next. */
  readonly entry: StoredEntry
  readonly session: Session
  /** Epoch ms: until then requests may be answered without a store read; 0 never. */
  readonly validUntil: number
}

export interface SessionManagerOptions {
  /** The session entries and the indexes by user and IdP session. */
  store: { readonly records: SessionRecords; readonly indexes: SessionIndexes }
  keyring: Keyring
  idleTimeoutMs: number
  maxAgeMs: number
  now?: () => number
  /**
   * How long a session read from the store may answer this instance's requests
   * without another read; 0 reads on every request. Takes effect only while
   * enableCache() says every session-ended event is being received.
   */
  cacheMs?: number
  /** Called when an entry exists but cannot be opened (retired key, tampering). */
  onUndecryptable?: (sid: string, err: Error) => void
}

/**
 * Creates, loads, replaces and deletes sessions. Each entry is encrypted under the
 * keyring and bound (AAD) to its sid, version and absolute expiry, so swapping
 * entries between sessions or editing the readable header makes them fail to open
 * (security model S56, S57).
 */
export class SessionManager {
  readonly #records: SessionRecords
  readonly #indexes: SessionIndexes
  readonly #keyring: Keyring
  readonly #idleMs: number
  readonly #maxAgeMs: number
  readonly #now: () => number
  readonly #onUndecryptable: (sid: string, err: Error) => void
  /** handle → sid: one SHA-256 less per request. */
  readonly #sids = new Lru<string, string>(10_000)
  /**
   * The last entry read per session, with its plaintext.
   *
   * An unchanged entry (same version and the very same ciphertext bytes,
   * compared in full) is not decrypted and parsed again.
   *
   * Within `validUntil` the session answers requests without a store read at
   * all. That is safe because Redis tracks the keys this instance reads
   * (CLIENT TRACKING) and announces any change to them, by anyone (a logout or
   * refresh on another instance, an operator's DEL, FLUSHALL), on the
   * subscription before it acknowledges the change; invalidate() drops the
   * entry when the announcement is read, and it is read before any request
   * that causally follows the change (SessionEventBus.coherentEvents). While the
   * subscription or tracking is down, or not yet up, nothing is served from
   * here, and a read that overlapped an invalidation is not cached. What no
   * announcement covers, a Redis that stops answering without closing its
   * connections, shows within cacheMs; the idle timeout is slid at each store
   * read, so it is kept to within cacheMs.
   */
  readonly #opened = new Lru<string, Opened>(5_000)
  readonly #cacheMs: number
  #cacheOn = false
  /** Bumped by every invalidation: a read that overlapped one is not cached. */
  #invalidations = 0

  constructor(options: SessionManagerOptions) {
    this.#records = options.store.records
    this.#indexes = options.store.indexes
    this.#keyring = options.keyring
    this.#idleMs = options.idleTimeoutMs
    this.#maxAgeMs = options.maxAgeMs
    this.#now = options.now ?? Date.now
    this.#cacheMs = options.cacheMs ?? 0
    this.#onUndecryptable = options.onUndecryptable ?? (() => {})
  }

  /** Every change to a session read from now on will be announced: reads may be cached. */
  enableCache(): void {
    if (this.#cacheMs <= 0) return
    this.#invalidations++
    this.#cacheOn = true
  }

  /**
   * Announcements may be missed from now on: serve nothing from memory until
   * enableCache(), and nothing read before now even then.
   */
  disableCache(): void {
    this.invalidate(null)
    this.#cacheOn = false
  }

  /** A session changed or ended elsewhere (null: all of them): its next request reads the store. */
  invalidate(sid: string | null): void {
    this.#invalidations++
    if (sid === null) this.#opened.clear()
    else this.#opened.delete(sid)
  }

  /** Whether requests may currently be answered without a store read. */
  get caching(): boolean {
    return this.#cacheOn
  }

  /** How long a read that started at `started`, with `seen` invalidations before it, may be served. */
  #validUntil(started: number, seen: number, session: Session): number {
    if (!this.#cacheOn || seen !== this.#invalidations) return 0
    return Math.min(started + this.#cacheMs, session.idleExp, session.absExp)
  }

  /** The absolute expiry: max age, never past the refresh token (security model S20, S77). */
  absoluteExpiry(data: Pick<SessionData, 'createdAt' | 'refreshTokenExpiresAt'>): number {
    const max = this.latestEnd(data)
    return data.refreshTokenExpiresAt === undefined ? max : Math.min(max, data.refreshTokenExpiresAt)
  }

  /**
   * The latest the session can ever end: BFF_SESSION_MAX_AGE after login. A
   * refresh token with a later expiry may move the absolute expiry up to it,
   * never past it (security model S77).
   */
  latestEnd(data: Pick<SessionData, 'createdAt'>): number {
    return data.createdAt + this.#maxAgeMs
  }

  #seal(sid: string, version: number, absExp: number, data: SessionData): StoredEntry {
    const payload = this.#keyring.seal(Buffer.from(JSON.stringify(data), 'utf8'), binding(sid, version, absExp))
    return { version, absExp, payload }
  }

  /** Creates a session under a fresh random handle; returns the handle for the cookie. */
  async create(data: SessionData): Promise<{ handle: string; session: Session }> {
    const absExp = this.absoluteExpiry(data)
    const now = this.#now()
    for (;;) {
      const handle = newHandle()
      const sid = sidFor(handle)
      const entry = this.#seal(sid, 1, absExp, data)
      const ttl = Math.min(this.#idleMs, absExp - now)
      // NX: a collision of 128-bit handles is not expected, but never overwrite.
      if (await this.#records.create(sid, entry, ttl)) {
        // Indexes for back-channel logout (by IdP session) and administration (by
        // user). They live until the session's latest possible end, since a
        // refresh may move its end that far (replace): a back-channel logout
        // must still find it then (security model S77).
        const indexed = this.latestEnd(data)
        await this.#indexes.add('sub', data.sub, sid, indexed)
        if (data.idpSid) await this.#indexes.add('idp', data.idpSid, sid, indexed)
        const session: Session = Object.freeze({ sid, version: 1, absExp, idleExp: now + ttl, data: Object.freeze(data) })
        // Kept to skip the first decryption, but not served from memory: Redis
        // tracks keys a client reads, and this one was only written.
        this.#opened.set(sid, { entry, session, validUntil: 0 })
        return { handle, session }
      }
    }
  }

  /**
   * Loads the session for a cookie handle; `slide` extends the idle timeout.
   * May answer from memory (see #opened); loadBySid always reads the store.
   */
  load(handle: string, options: { slide: boolean }): Promise<Session | null> {
    let sid = this.#sids.get(handle)
    if (sid === undefined) this.#sids.set(handle, (sid = sidFor(handle)))
    if (!this.#cacheOn) return this.loadBySid(sid, options)
    const hit = this.#opened.get(sid)
    if (hit && this.#now() < hit.validUntil) return Promise.resolve(hit.session)
    // A read of this session is on its way (a burst of calls, a refresh storm):
    // its answer serves this request too, on the same terms as the cache: only
    // if no announcement arrived from the moment it started until it is used (a
    // change before this request would have been announced before it; see #opened).
    const flying = this.#reading.get(sid)
    if (flying) {
      return flying.then(
        (r) => (this.#cacheOn && r.seen === this.#invalidations ? r.session : this.loadBySid(sid, options)),
        () => this.loadBySid(sid, options),
      )
    }
    return this.#reading.run(sid, () => this.#readWithCount(sid, options)).then((r) => r.session)
  }

  /** Store reads in flight from load(), by sid, with the invalidation count when they started. */
  readonly #reading = new SingleFlight<string, { session: Session | null; seen: number }>()

  async #readWithCount(sid: string, options: { slide: boolean }): Promise<{ session: Session | null; seen: number }> {
    const seen = this.#invalidations
    return { session: await this.loadBySid(sid, options), seen }
  }

  async loadBySid(sid: string, { slide }: { slide: boolean }): Promise<Session | null> {
    const now = this.#now()
    const seen = this.#invalidations
    const r = await this.#records.read(sid, { slideMs: slide ? this.#idleMs : 0, now })
    if (!r) {
      this.#opened.delete(sid)
      return null
    }
    const { entry, ttlMs } = r
    const cached = this.#opened.get(sid)
    let data: SessionData
    if (
      cached &&
      cached.entry.version === entry.version &&
      cached.entry.absExp === entry.absExp &&
      cached.entry.payload.equals(entry.payload)
    ) {
      data = cached.session.data
    } else {
      try {
        data = Object.freeze(
          upgradeSessionData(
            JSON.parse(this.#keyring.open(entry.payload, binding(sid, entry.version, entry.absExp)).toString('utf8')) as SessionData,
          ),
        )
      } catch (err) {
        if (err instanceof DecryptError || err instanceof SyntaxError) {
          this.#opened.delete(sid)
          this.#onUndecryptable(sid, err)
          return null
        }
        throw err
      }
    }
    const session: Session = Object.freeze({ sid, version: entry.version, absExp: entry.absExp, idleExp: now + ttlMs, data })
    // The payload may be a view into a larger reply buffer: keep a copy of our own.
    const own = cached?.session.data === data ? cached.entry : { ...entry, payload: Buffer.from(entry.payload) }
    this.#opened.set(sid, { entry: own, session, validUntil: this.#validUntil(now, seen, session) })
    return session
  }

  /**
   * Compare-and-set: succeeds only if nobody replaced the session since it was read.
   *
   * The absolute expiry only comes earlier, except when `data` carries a new
   * refresh-token expiry: then it is that expiry, earlier or later, capped at
   * BFF_SESSION_MAX_AGE (security model S20, S77), and the Redis TTL follows.
   * `slide` (a write made for a request that slides the idle timeout, like a
   * refresh for a proxied call) slides the idle TTL as a read would, so an end
   * moved later is not cut short by a TTL the last slide capped at the old one.
   */
  async replace(
    session: Session,
    data: SessionData,
    options: { slide?: boolean } = {},
  ): Promise<{ result: ReplaceResult; session: Session }> {
    const target = this.absoluteExpiry(data)
    const moved = data.refreshTokenExpiresAt !== undefined && data.refreshTokenExpiresAt !== session.data.refreshTokenExpiresAt
    const absExp = moved ? target : Math.min(session.absExp, target)
    const version = session.version + 1
    const entry = this.#seal(session.sid, version, absExp, data)
    const started = this.#now()
    const seen = this.#invalidations
    const slideMs = options.slide ? this.#idleMs : 0
    const result = await this.#records.replace(session.sid, session.version, entry, absExp - started, slideMs)
    const updated: Session = Object.freeze({
      ...session,
      version,
      absExp,
      idleExp: Math.min(Math.max(session.idleExp, started + slideMs), absExp),
      data: Object.freeze(data),
    })
    // This instance's next request uses the new tokens without reading them
    // back (the compare-and-set read the key, so Redis tracks it for us).
    if (result === 'ok') this.#opened.set(session.sid, { entry, session: updated, validUntil: this.#validUntil(started, seen, updated) })
    else this.#opened.delete(session.sid)
    return { result, session: updated }
  }

  /** Deletes a session; with its data, also its index entries (otherwise they are pruned when read). */
  async destroy(sid: string, data?: Pick<SessionData, 'sub' | 'idpSid'>): Promise<boolean> {
    this.#opened.delete(sid)
    const deleted = await this.#records.delete(sid)
    if (data) {
      await this.#indexes.remove('sub', data.sub, sid)
      if (data.idpSid) await this.#indexes.remove('idp', data.idpSid, sid)
    }
    return deleted
  }

  /** The live sessions of a user (`sub`) or of an IdP session (`sid` claim), decrypted. */
  async list(kind: IndexKind, value: string): Promise<Session[]> {
    const sids = await this.#indexes.read(kind, value)
    const sessions = await Promise.all(sids.map((sid) => this.loadBySid(sid, { slide: false })))
    return sessions.filter((s): s is Session => s !== null && (kind === 'sub' ? s.data.sub === value : s.data.idpSid === value))
  }

  get idleTimeoutMs(): number {
    return this.#idleMs
  }
}
