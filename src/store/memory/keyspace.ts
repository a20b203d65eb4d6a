import type { StoredEntry } from '../types.js'

export interface Item<T> {
  value: T
  expiresAt: number
}

/**
 * The memory store's data, shared by its concerns as the Redis store's share
 * one keyspace: deleting a session also drops its lease and journal, a
 * replace clears the journal, and reading an index checks which sessions live.
 */
export class MemoryKeyspace {
  readonly sessions = new Map<string, Item<StoredEntry>>()
  readonly transactions = new Map<string, Item<Buffer>>()
  readonly locks = new Map<string, Item<string>>()
  readonly journals = new Map<string, Item<number>>()
  readonly indexes = new Map<string, Item<Set<string>>>()
  readonly once = new Map<string, Item<true>>()
  readonly now: () => number
  readonly #timer: NodeJS.Timeout

  constructor(now: () => number) {
    this.now = now
    // Sweep expired items so a long demo does not grow without bound.
    this.#timer = setInterval(() => this.sweep(), 30_000).unref()
  }

  /** The item under `id` unless it expired (then it is dropped), like a Redis key with a TTL. */
  live<T>(map: Map<string, Item<T>>, id: string): Item<T> | undefined {
    const item = map.get(id)
    if (item && item.expiresAt <= this.now()) {
      map.delete(id)
      return undefined
    }
    return item
  }

  sweep(): void {
    const now = this.now()
    for (const map of [this.sessions, this.transactions, this.locks, this.journals, this.indexes, this.once] as Array<
      Map<string, Item<unknown>>
    >) {
      for (const [k, v] of map) if (v.expiresAt <= now) map.delete(k)
    }
  }

  close(): void {
    clearInterval(this.#timer)
  }
}
