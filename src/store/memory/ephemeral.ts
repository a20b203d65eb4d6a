import type { OneTimeIds, TransactionRecords } from '../types.js'
import type { MemoryKeyspace } from './keyspace.js'

export class MemoryOneTimeIds implements OneTimeIds {
  readonly #k: MemoryKeyspace

  constructor(keyspace: MemoryKeyspace) {
    this.#k = keyspace
  }

  async rememberOnce(id: string, ttlMs: number): Promise<boolean> {
    const k = this.#k
    if (k.live(k.once, id)) return false
    k.once.set(id, { value: true, expiresAt: k.now() + Math.max(1000, Math.floor(ttlMs)) })
    return true
  }
}

export class MemoryTransactionRecords implements TransactionRecords {
  readonly #k: MemoryKeyspace

  constructor(keyspace: MemoryKeyspace) {
    this.#k = keyspace
  }

  async put(id: string, payload: Buffer, ttlMs: number): Promise<void> {
    this.#k.transactions.set(id, { value: payload, expiresAt: this.#k.now() + ttlMs })
  }

  async take(id: string): Promise<Buffer | null> {
    const k = this.#k
    const item = k.live(k.transactions, id)
    k.transactions.delete(id)
    return item?.value ?? null
  }
}
