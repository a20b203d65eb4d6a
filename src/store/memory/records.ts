import type { ReadOptions, ReplaceResult, SessionRecords, StoredEntry } from '../types.js'
import type { MemoryKeyspace } from './keyspace.js'

export class MemorySessionRecords implements SessionRecords {
  readonly #k: MemoryKeyspace

  constructor(keyspace: MemoryKeyspace) {
    this.#k = keyspace
  }

  async create(sid: string, entry: StoredEntry, ttlMs: number): Promise<boolean> {
    const k = this.#k
    if (k.live(k.sessions, sid)) return false
    k.sessions.set(sid, { value: entry, expiresAt: k.now() + Math.min(ttlMs, entry.absExp - k.now()) })
    return true
  }

  async read(sid: string, { slideMs, now }: ReadOptions): Promise<{ entry: StoredEntry; ttlMs: number } | null> {
    const k = this.#k
    const item = k.live(k.sessions, sid)
    if (!item) return null
    const remaining = item.value.absExp - now
    if (remaining <= 0) {
      k.sessions.delete(sid)
      return null
    }
    if (slideMs > 0) item.expiresAt = k.now() + Math.min(slideMs, remaining)
    return { entry: item.value, ttlMs: item.expiresAt - k.now() }
  }

  async replace(sid: string, expectedVersion: number, entry: StoredEntry, maxTtlMs: number, slideMs = 0): Promise<ReplaceResult> {
    const k = this.#k
    const item = k.live(k.sessions, sid)
    if (!item) return 'missing'
    if (item.value.version !== expectedVersion) return 'conflict'
    const ttl = Math.min(Math.max(item.expiresAt - k.now(), slideMs), maxTtlMs)
    if (ttl <= 0) {
      k.sessions.delete(sid)
      return 'missing'
    }
    k.sessions.set(sid, { value: entry, expiresAt: k.now() + ttl })
    k.journals.delete(sid)
    return 'ok'
  }

  async delete(sid: string): Promise<boolean> {
    const k = this.#k
    k.locks.delete(sid)
    k.journals.delete(sid)
    return k.live(k.sessions, sid) !== undefined && k.sessions.delete(sid)
  }

  async count(): Promise<number> {
    this.#k.sweep()
    return this.#k.sessions.size
  }
}
