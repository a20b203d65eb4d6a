import type { OneTimeIds, TransactionRecords } from '../types.js'
import type { RedisConnection } from './connection.js'

/** One-time ids `<prefix>once:<hash>`: SET NX, so only the first caller wins. */
export class RedisOneTimeIds implements OneTimeIds {
  readonly #c: RedisConnection

  constructor(connection: RedisConnection) {
    this.#c = connection
  }

  async rememberOnce(id: string, ttlMs: number): Promise<boolean> {
    return (await this.#c.run((redis) => redis.set(this.#c.keys.once(id), '1', 'PX', Math.max(1000, Math.floor(ttlMs)), 'NX'))) === 'OK'
  }
}

/** Login transactions `<prefix>t:<id>`, taken with GETDEL. */
export class RedisTransactionRecords implements TransactionRecords {
  readonly #c: RedisConnection

  constructor(connection: RedisConnection) {
    this.#c = connection
  }

  async put(id: string, payload: Buffer, ttlMs: number): Promise<void> {
    await this.#c.run((redis) => redis.set(this.#c.keys.transaction(id), payload, 'PX', ttlMs))
  }

  async take(id: string): Promise<Buffer | null> {
    return this.#c.run((redis) => redis.getdelBuffer(this.#c.keys.transaction(id)))
  }
}
