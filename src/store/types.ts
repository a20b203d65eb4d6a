/**
 * The storage seam, split by concern. Implementations (src/store/redis/,
 * src/store/memory/) hold only opaque, already-encrypted bytes; they know a
 * session's version (for compare-and-set) and its absolute expiry (so the idle
 * slide can never push the TTL past it), nothing else. Each interface has its
 * own contract suite in test/contract/, run against both implementations.
 */

export interface StoredEntry {
  /** Incremented on every replace; compare-and-set guards concurrent writers. */
  readonly version: number
  /** Epoch milliseconds; the entry is gone at this instant whatever the activity. */
  readonly absExp: number
  /** Ciphertext. */
  readonly payload: Buffer
}

export interface ReadOptions {
  /** Slide the idle TTL to this many ms (capped at absExp); 0 reads without sliding. */
  readonly slideMs: number
  readonly now: number
}

export type ReplaceResult = 'ok' | 'conflict' | 'missing'

/** Encrypted session entries, by tokenward session id. */
export interface SessionRecords {
  /** Creates a new entry; false when the id already exists (never overwrites). */
  create(sid: string, entry: StoredEntry, ttlMs: number): Promise<boolean>
  /** Reads (and optionally slides) an entry; null when missing or past absExp. `ttlMs` is the idle time left. */
  read(sid: string, options: ReadOptions): Promise<{ entry: StoredEntry; ttlMs: number } | null>
  /**
   * Writes `entry` only if the stored version equals `expectedVersion`; keeps the
   * current TTL, or slides it to `slideMs` when that is longer, capped at
   * maxTtlMs either way. Success also clears the refresh journal.
   */
  replace(sid: string, expectedVersion: number, entry: StoredEntry, maxTtlMs: number, slideMs?: number): Promise<ReplaceResult>
  /** Deletes the session with its refresh lease and journal; false when there was none. */
  delete(sid: string): Promise<boolean>
  /** Approximately how many sessions exist (for metrics); undefined when the store cannot say cheaply. */
  count(): Promise<number | undefined>
}

/**
 * The per-session refresh lease (one refresh at a time across every instance)
 * and the refresh journal: the session version whose refresh was started and
 * may have redeemed the refresh token, so a holder that died mid-refresh is
 * noticed instead of the token being presented twice (RFC 9700 §4.14.2).
 */
export interface RefreshLeases {
  /** Takes the lease if nobody holds it, and reports the journal (null: none). */
  acquire(sid: string, token: string, leaseMs: number): Promise<{ acquired: boolean; journal: number | null }>
  /** Extends the lease; false when `token` no longer holds it. */
  renew(sid: string, token: string, leaseMs: number): Promise<boolean>
  /** Releases the lease if `token` still holds it; otherwise does nothing. */
  release(sid: string, token: string): Promise<void>
  /**
   * Records that a refresh of `version` is about to redeem the refresh token,
   * only if `token` still holds the lease (atomically); false, writing nothing,
   * when it does not.
   */
  writeJournal(sid: string, token: string, version: number, ttlMs: number): Promise<boolean>
  clearJournal(sid: string): Promise<void>
}

/** Secondary indexes from a user (`sub`) or an IdP session (`sid` claim) to tokenward sessions. */
export type IndexKind = 'sub' | 'idp'

export interface SessionIndexes {
  /**
   * Adds the session to an index; the index lives as long as its longest-lived
   * member (`absExp`, at least a second) and is pruned of ended sessions when read.
   */
  add(kind: IndexKind, value: string, sid: string, absExp: number): Promise<void>
  remove(kind: IndexKind, value: string, sid: string): Promise<void>
  /** The live sessions in an index (ended ones are pruned as a side effect). */
  read(kind: IndexKind, value: string): Promise<string[]>
}

/** Identifiers that may be accepted once only (a logout token's `jti`). */
export interface OneTimeIds {
  /** Records `id` for at least `ttlMs` (and at least a second); false when it was seen before. */
  rememberOnce(id: string, ttlMs: number): Promise<boolean>
}

/** Login transactions: short-lived, single-use. */
export interface TransactionRecords {
  put(id: string, payload: Buffer, ttlMs: number): Promise<void>
  /** Atomically reads and deletes (GETDEL), so a transaction can be used once only (RFC 9700 §4.2.4). */
  take(id: string): Promise<Buffer | null>
}

/** Broadcast to every instance when a session ends, so open tabs can be told. */
export interface SessionEvent {
  readonly sid: string
  readonly type: 'session_ended'
  readonly reason: string
}

/** Told when the event subscription starts or stops delivering every event. */
export interface SubscriptionHooks {
  /** Subscribed: from now on every published event is delivered. */
  onUp?(): void
  /** The subscription broke: events may have been missed until the next onUp. */
  onDown?(): void
  /** The stored session `sid` was changed or deleted by someone; null: all of them (flush). */
  onInvalidate?(sid: string | null): void
  /** The store cannot announce changes to what was read (it stays "down"); said once. */
  onTrackingUnavailable?(reason: string): void
}

/** Session events across instances, and announcements of changes to sessions this instance read. */
export interface SessionEventBus {
  /**
   * Whether an event published after a write reaches every instance's
   * subscription before any later request that depends on that write can
   * arrive there: the subscription and the writes go through one server, so
   * the event is in every subscriber's socket before the publisher hears back.
   * Redis Cluster forwards publishes over its bus asynchronously, so not there.
   */
  readonly coherentEvents: boolean
  publish(event: SessionEvent): Promise<void>
  /** Receives every instance's events until the returned function is called. */
  subscribe(listener: (event: SessionEvent) => void, hooks?: SubscriptionHooks): Promise<() => Promise<void>>
}

/** One backend holding every concern, as createStore builds it. */
export interface Store {
  readonly kind: 'redis' | 'memory'
  readonly records: SessionRecords
  readonly leases: RefreshLeases
  readonly indexes: SessionIndexes
  readonly onceIds: OneTimeIds
  readonly transactions: TransactionRecords
  readonly events: SessionEventBus
  /** Throws SessionStoreUnavailableError when the store does not answer. */
  ping(): Promise<void>
  close(): Promise<void>
}

const SEP = 0x3a // ':'

/** `<version>:<absExp>:<payload>`: the header stays readable to the store's scripts. */
export function encodeEntry(entry: StoredEntry): Buffer {
  return Buffer.concat([Buffer.from(`${entry.version}:${entry.absExp}:`, 'latin1'), entry.payload])
}

export function decodeEntry(raw: Buffer): StoredEntry | null {
  const a = raw.indexOf(SEP)
  const b = a < 0 ? -1 : raw.indexOf(SEP, a + 1)
  if (a <= 0 || b <= a + 1) return null
  const version = Number(raw.subarray(0, a).toString('latin1'))
  const absExp = Number(raw.subarray(a + 1, b).toString('latin1'))
  if (!Number.isSafeInteger(version) || !Number.isSafeInteger(absExp)) return null
  return { version, absExp, payload: raw.subarray(b + 1) }
}
