import { EventEmitter } from 'node:events'
import type { IndexKind, ReadOptions, ReplaceResult, SessionEvent, SessionStore, StoredEntry, SubscriptionHooks } from './store.js'

interface Item<T> {
  value: T
  expiresAt: number
}

/**
 * In-memory store for `npm run demo` without Redis and for unit tests. Same
 * semantics as the Redis store (it passes the same contract suite), but one
 * process only: `npm start` refuses it.
 */
export class MemorySessionStore implements SessionStore {
  readonly kind = 'memory'
  // In-process and for development only: nothing to gain from a session cache.
  readonly coherentEvents = false
  readonly #sessions = new Map<string, Item<StoredEntry>>()
  readonly #transactions = new Map<string, Item<Buffer>>()
  readonly #locks = new Map<string, Item<string>>()
  readonly #journals = new Map<string, Item<number>>()
  readonly #indexes = new Map<string, Set<string>>()
  readonly #once = new Map<string, Item<true>>()
  readonly #events = new EventEmitter()
  readonly #now: () => number
  #timer: NodeJS.Timeout

  constructor(options: { now?: () => number } = {}) {
    this.#now = options.now ?? Date.now
    // Sweep expired items so a long demo does not grow without bound.
    this.#timer = setInterval(() => this.#sweep(), 30_000).unref()
  }

  #live<T>(map: Map<string, Item<T>>, id: string): Item<T> | undefined {
    const item = map.get(id)
    if (item && item.expiresAt <= this.#now()) {
      map.delete(id)
      return undefined
    }
    return item
  }

  #sweep(): void {
    const now = this.#now()
    for (const map of [this.#sessions, this.#transactions, this.#locks, this.#journals, this.#once] as Array<Map<string, Item<unknown>>>) {
      for (const [k, v] of map) if (v.expiresAt <= now) map.delete(k)
    }
  }

  async createSession(sid: string, entry: StoredEntry, ttlMs: number): Promise<boolean> {
    if (this.#live(this.#sessions, sid)) return false
    this.#sessions.set(sid, { value: entry, expiresAt: this.#now() + Math.min(ttlMs, entry.absExp - this.#now()) })
    return true
  }

  async readSession(sid: string, { slideMs, now }: ReadOptions): Promise<{ entry: StoredEntry; ttlMs: number } | null> {
    const item = this.#live(this.#sessions, sid)
    if (!item) return null
    const remaining = item.value.absExp - now
    if (remaining <= 0) {
      this.#sessions.delete(sid)
      return null
    }
    if (slideMs > 0) item.expiresAt = this.#now() + Math.min(slideMs, remaining)
    return { entry: item.value, ttlMs: item.expiresAt - this.#now() }
  }

  async replaceSession(sid: string, expectedVersion: number, entry: StoredEntry, maxTtlMs: number): Promise<ReplaceResult> {
    const item = this.#live(this.#sessions, sid)
    if (!item) return 'missing'
    if (item.value.version !== expectedVersion) return 'conflict'
    const ttl = Math.min(item.expiresAt - this.#now(), maxTtlMs)
    if (ttl <= 0) {
      this.#sessions.delete(sid)
      return 'missing'
    }
    this.#sessions.set(sid, { value: entry, expiresAt: this.#now() + ttl })
    this.#journals.delete(sid)
    return 'ok'
  }

  async deleteSession(sid: string): Promise<boolean> {
    this.#locks.delete(sid)
    this.#journals.delete(sid)
    return this.#sessions.delete(sid)
  }

  async acquireRefreshLock(sid: string, token: string, leaseMs: number): Promise<{ acquired: boolean; journal: number | null }> {
    const held = this.#live(this.#locks, sid)
    if (!held) this.#locks.set(sid, { value: token, expiresAt: this.#now() + leaseMs })
    return { acquired: !held, journal: this.#live(this.#journals, sid)?.value ?? null }
  }

  async renewRefreshLock(sid: string, token: string, leaseMs: number): Promise<boolean> {
    const held = this.#live(this.#locks, sid)
    if (held?.value !== token) return false
    held.expiresAt = this.#now() + leaseMs
    return true
  }

  async releaseRefreshLock(sid: string, token: string): Promise<void> {
    if (this.#live(this.#locks, sid)?.value === token) this.#locks.delete(sid)
  }

  async writeRefreshJournal(sid: string, version: number, ttlMs: number): Promise<void> {
    this.#journals.set(sid, { value: version, expiresAt: this.#now() + ttlMs })
  }

  async clearRefreshJournal(sid: string): Promise<void> {
    this.#journals.delete(sid)
  }

  async addToIndex(kind: IndexKind, value: string, sid: string): Promise<void> {
    const key = `${kind}\0${value}`
    const set = this.#indexes.get(key) ?? new Set<string>()
    set.add(sid)
    this.#indexes.set(key, set)
  }

  async removeFromIndex(kind: IndexKind, value: string, sid: string): Promise<void> {
    this.#indexes.get(`${kind}\0${value}`)?.delete(sid)
  }

  async readIndex(kind: IndexKind, value: string): Promise<string[]> {
    const key = `${kind}\0${value}`
    const set = this.#indexes.get(key)
    if (!set) return []
    for (const sid of set) if (!this.#live(this.#sessions, sid)) set.delete(sid)
    if (set.size === 0) this.#indexes.delete(key)
    return [...set]
  }

  async rememberOnce(id: string, ttlMs: number): Promise<boolean> {
    if (this.#live(this.#once, id)) return false
    this.#once.set(id, { value: true, expiresAt: this.#now() + ttlMs })
    return true
  }

  async publish(event: SessionEvent): Promise<void> {
    this.#events.emit('event', event)
  }

  async subscribe(listener: (event: SessionEvent) => void, hooks: SubscriptionHooks = {}): Promise<() => Promise<void>> {
    this.#events.on('event', listener)
    // In-process: every event is delivered synchronously, nothing can be missed.
    hooks.onUp?.()
    return async () => {
      this.#events.off('event', listener)
      hooks.onDown?.()
    }
  }

  async countSessions(): Promise<number> {
    this.#sweep()
    return this.#sessions.size
  }

  async putTransaction(id: string, payload: Buffer, ttlMs: number): Promise<void> {
    this.#transactions.set(id, { value: payload, expiresAt: this.#now() + ttlMs })
  }

  async takeTransaction(id: string): Promise<Buffer | null> {
    const item = this.#live(this.#transactions, id)
    this.#transactions.delete(id)
    return item?.value ?? null
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    clearInterval(this.#timer)
  }
}
