import type { IndexKind, SessionIndexes } from '../types.js'
import type { RedisConnection } from './connection.js'

/** Index sets `<prefix>x:<kind>:<hash>` of session ids; their TTL follows the longest-lived member. */
export class RedisSessionIndexes implements SessionIndexes {
  readonly #c: RedisConnection

  constructor(connection: RedisConnection) {
    this.#c = connection
  }

  async add(kind: IndexKind, value: string, sid: string, absExp: number): Promise<void> {
    await this.#c.run((redis) => redis.twIndexAdd(this.#c.keys.index(kind, value), sid, Math.max(1000, absExp - Date.now())))
  }

  async remove(kind: IndexKind, value: string, sid: string): Promise<void> {
    await this.#c.run((redis) => redis.srem(this.#c.keys.index(kind, value), sid))
  }

  async read(kind: IndexKind, value: string): Promise<string[]> {
    const { keys } = this.#c
    const key = keys.index(kind, value)
    const sids = await this.#c.run((redis) => redis.smembers(key))
    // Members live in other Cluster slots than the index, so no script: check
    // each session key, then prune the ones that expired.
    const exists = await this.#c.run((redis) => Promise.all(sids.map((sid) => redis.exists(keys.session(sid)))))
    const gone = sids.filter((_, i) => exists[i] === 0)
    if (gone.length > 0) await this.#c.run((redis) => redis.srem(key, ...gone))
    return sids.filter((_, i) => exists[i] === 1)
  }
}
