import type { Store } from '../types.js'
import { RedisConnection, type Client } from './connection.js'
import { RedisOneTimeIds, RedisTransactionRecords } from './ephemeral.js'
import { RedisSessionEvents } from './events.js'
import { RedisSessionIndexes } from './indexes.js'
import { RedisRefreshLeases } from './leases.js'
import { RedisSessionRecords } from './records.js'

export { createRedisClient, redisOptions } from './connection.js'

/** Every concern of the store on one Redis client (standalone, Sentinel or Cluster) under one key prefix. */
export class RedisStore implements Store {
  readonly kind = 'redis'
  readonly records: RedisSessionRecords
  readonly leases: RedisRefreshLeases
  readonly indexes: RedisSessionIndexes
  readonly onceIds: RedisOneTimeIds
  readonly transactions: RedisTransactionRecords
  readonly events: RedisSessionEvents
  readonly #c: RedisConnection

  constructor(redis: Client, prefix: string, options: { onError?: () => void } = {}) {
    this.#c = new RedisConnection(redis, prefix, options)
    this.records = new RedisSessionRecords(this.#c)
    this.leases = new RedisRefreshLeases(this.#c)
    this.indexes = new RedisSessionIndexes(this.#c)
    this.onceIds = new RedisOneTimeIds(this.#c)
    this.transactions = new RedisTransactionRecords(this.#c)
    this.events = new RedisSessionEvents(this.#c)
  }

  get client(): Client {
    return this.#c.redis
  }

  async ping(): Promise<void> {
    await this.#c.run((redis) => redis.ping())
  }

  async close(): Promise<void> {
    this.events.close()
    try {
      await this.#c.redis.quit()
    } catch {
      this.#c.redis.disconnect()
    }
  }
}
