import type { RefreshLeases } from '../types.js'
import type { RedisConnection } from './connection.js'

/**
 * The refresh lease `<prefix>l:{sid}` and journal `<prefix>j:{sid}`: in the
 * session's Cluster slot, so the acquire script reads the journal atomically
 * and a successful replace clears it (scripts.ts).
 */
export class RedisRefreshLeases implements RefreshLeases {
  readonly #c: RedisConnection

  constructor(connection: RedisConnection) {
    this.#c = connection
  }

  async acquire(sid: string, token: string, leaseMs: number): Promise<{ acquired: boolean; journal: number | null }> {
    const { keys } = this.#c
    const [ok, journal] = await this.#c.run((redis) => redis.twAcquire(keys.lock(sid), keys.journal(sid), token, leaseMs))
    return { acquired: ok === 1, journal: journal === null ? null : Number(journal) }
  }

  async renew(sid: string, token: string, leaseMs: number): Promise<boolean> {
    return (await this.#c.run((redis) => redis.twRenew(this.#c.keys.lock(sid), token, leaseMs))) === 1
  }

  async release(sid: string, token: string): Promise<void> {
    await this.#c.run((redis) => redis.twRelease(this.#c.keys.lock(sid), token))
  }

  async writeJournal(sid: string, token: string, version: number, ttlMs: number): Promise<boolean> {
    const { keys } = this.#c
    const r = await this.#c.run((redis) =>
      redis.twJournal(keys.lock(sid), keys.journal(sid), token, version, Math.max(1, Math.floor(ttlMs))),
    )
    return r === 1
  }

  async clearJournal(sid: string): Promise<void> {
    await this.#c.run((redis) => redis.del(this.#c.keys.journal(sid)))
  }
}
