import { EventEmitter } from 'node:events'
import type { SessionEvent, SessionEventBus, Store, SubscriptionHooks } from '../types.js'
import { MemoryOneTimeIds, MemoryTransactionRecords } from './ephemeral.js'
import { MemorySessionIndexes } from './indexes.js'
import { MemoryKeyspace } from './keyspace.js'
import { MemoryRefreshLeases } from './leases.js'
import { MemorySessionRecords } from './records.js'

/** Events within this process: delivered synchronously, so none can be missed. */
export class MemorySessionEvents implements SessionEventBus {
  // In-process and for development only: nothing to gain from a session cache.
  readonly coherentEvents = false
  readonly #events = new EventEmitter()

  async publish(event: SessionEvent): Promise<void> {
    this.#events.emit('event', event)
  }

  async subscribe(listener: (event: SessionEvent) => void, hooks: SubscriptionHooks = {}): Promise<() => Promise<void>> {
    this.#events.on('event', listener)
    hooks.onUp?.()
    return async () => {
      this.#events.off('event', listener)
      hooks.onDown?.()
    }
  }
}

/**
 * In-memory store for `npm run demo` without Redis and for unit tests. Same
 * semantics as the Redis store (it passes the same contract suites), but one
 * process only: `npm start` refuses it.
 */
export class MemoryStore implements Store {
  readonly kind = 'memory'
  readonly records: MemorySessionRecords
  readonly leases: MemoryRefreshLeases
  readonly indexes: MemorySessionIndexes
  readonly onceIds: MemoryOneTimeIds
  readonly transactions: MemoryTransactionRecords
  readonly events = new MemorySessionEvents()
  readonly #keyspace: MemoryKeyspace

  constructor(options: { now?: () => number } = {}) {
    this.#keyspace = new MemoryKeyspace(options.now ?? Date.now)
    this.records = new MemorySessionRecords(this.#keyspace)
    this.leases = new MemoryRefreshLeases(this.#keyspace)
    this.indexes = new MemorySessionIndexes(this.#keyspace)
    this.onceIds = new MemoryOneTimeIds(this.#keyspace)
    this.transactions = new MemoryTransactionRecords(this.#keyspace)
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    this.#keyspace.close()
  }
}
