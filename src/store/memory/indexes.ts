import type { IndexKind, SessionIndexes } from '../types.js'
import type { MemoryKeyspace } from './keyspace.js'

export class MemorySessionIndexes implements SessionIndexes {
  readonly #k: MemoryKeyspace

  constructor(keyspace: MemoryKeyspace) {
    this.#k = keyspace
  }

  async add(kind: IndexKind, value: string, sid: string, absExp: number): Promise<void> {
    const k = this.#k
    const key = `${kind}\0${value}`
    const expiresAt = k.now() + Math.max(1000, absExp - k.now())
    const item = k.live(k.indexes, key)
    if (!item) return void k.indexes.set(key, { value: new Set([sid]), expiresAt })
    item.value.add(sid)
    // Extended to the longest-lived member, never shortened.
    item.expiresAt = Math.max(item.expiresAt, expiresAt)
  }

  async remove(kind: IndexKind, value: string, sid: string): Promise<void> {
    const k = this.#k
    k.live(k.indexes, `${kind}\0${value}`)?.value.delete(sid)
  }

  async read(kind: IndexKind, value: string): Promise<string[]> {
    const k = this.#k
    const key = `${kind}\0${value}`
    const set = k.live(k.indexes, key)?.value
    if (!set) return []
    for (const sid of set) if (!k.live(k.sessions, sid)) set.delete(sid)
    if (set.size === 0) k.indexes.delete(key)
    return [...set]
  }
}
