/**
 * The storage seam. Implementations hold only opaque, already-encrypted bytes;
 * they know a session's version (for compare-and-set) and its absolute expiry
 * (so the idle slide can never push the TTL past it), nothing else.
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

/** Secondary indexes from a user (`sub`) or an IdP session (`sid` claim) to tokenward sessions. */
export type IndexKind = 'sub' | 'idp'

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

export interface SessionStore {
  readonly kind: 'redis' | 'memory'
  /**
   * Whether an event published after a write reaches every instance's
   * subscription before any later request that depends on that write can
   * arrive there: the subscription and the writes go through one server, so
   * the event is in every subscriber's socket before the publisher hears back.
   * Redis Cluster forwards publishes over its bus asynchronously, so not there.
   */
  readonly coherentEvents: boolean
  /** Creates a new entry; false when the id already exists (never overwrites). */
  createSession(sid: string, entry: StoredEntry, ttlMs: number): Promise<boolean>
  /** Reads (and optionally slides) an entry; null when missing or past absExp. `ttlMs` is the idle time left. */
  readSession(sid: string, options: ReadOptions): Promise<{ entry: StoredEntry; ttlMs: number } | null>
  /**
   * Writes `entry` only if the stored version equals `expectedVersion`; keeps the
   * current TTL, capped at maxTtlMs. Success also clears the refresh journal.
   */
  replaceSession(sid: string, expectedVersion: number, entry: StoredEntry, maxTtlMs: number): Promise<ReplaceResult>
  /** Deletes the session with its lock and journal. */
  deleteSession(sid: string): Promise<boolean>
  /**
   * Takes the refresh lease for a session if nobody holds it. Also reports the
   * refresh journal: the session version at which a refresh was started and never
   * finished (its holder died), or null.
   */
  acquireRefreshLock(sid: string, token: string, leaseMs: number): Promise<{ acquired: boolean; journal: number | null }>
  /** Extends the lease while the refresh runs; false when it was lost. */
  renewRefreshLock(sid: string, token: string, leaseMs: number): Promise<boolean>
  /** Releases the lease if this token still holds it. */
  releaseRefreshLock(sid: string, token: string): Promise<void>
  /** Records that a refresh of `version` is about to redeem the refresh token. */
  writeRefreshJournal(sid: string, version: number, ttlMs: number): Promise<void>
  clearRefreshJournal(sid: string): Promise<void>
  /**
   * Adds the session to an index; the index lives as long as its longest-lived
   * member and is pruned of ended sessions when read.
   */
  addToIndex(kind: IndexKind, value: string, sid: string, absExp: number): Promise<void>
  removeFromIndex(kind: IndexKind, value: string, sid: string): Promise<void>
  /** The live sessions in an index (ended ones are pruned as a side effect). */
  readIndex(kind: IndexKind, value: string): Promise<string[]>
  /** Records a one-time identifier (a logout token's `jti`); false when it was seen before. */
  rememberOnce(id: string, ttlMs: number): Promise<boolean>
  publish(event: SessionEvent): Promise<void>
  /** Receives every instance's events until the returned function is called. */
  subscribe(listener: (event: SessionEvent) => void, hooks?: SubscriptionHooks): Promise<() => Promise<void>>
  /** Approximately how many sessions exist (for metrics); undefined when the store cannot say cheaply. */
  countSessions(): Promise<number | undefined>
  /** Login transactions: short-lived, single-use. */
  putTransaction(id: string, payload: Buffer, ttlMs: number): Promise<void>
  /** Atomically reads and deletes (GETDEL), so a transaction can be used once only (RFC 9700 §4.2.4). */
  takeTransaction(id: string): Promise<Buffer | null>
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
