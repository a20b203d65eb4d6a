import { Cluster } from 'ioredis'
import { decodeEntry, encodeEntry, type ReadOptions, type ReplaceResult, type SessionRecords, type StoredEntry } from '../types.js'
import type { RedisConnection } from './connection.js'

/** Session entries: `<prefix>s:{sid}`, read and replaced by Lua scripts (scripts.ts). */
export class RedisSessionRecords implements SessionRecords {
  readonly #c: RedisConnection

  constructor(connection: RedisConnection) {
    this.#c = connection
  }

  async create(sid: string, entry: StoredEntry, ttlMs: number): Promise<boolean> {
    const ttl = Math.max(1, Math.min(ttlMs, entry.absExp - Date.now()))
    const r = await this.#c.run((redis) => redis.set(this.#c.keys.session(sid), encodeEntry(entry), 'PX', ttl, 'NX'))
    return r === 'OK'
  }

  async read(sid: string, { slideMs, now }: ReadOptions): Promise<{ entry: StoredEntry; ttlMs: number } | null> {
    const r = await this.#c.run((redis) => redis.twReadBuffer(this.#c.keys.session(sid), now, slideMs))
    if (!r) return null
    const entry = decodeEntry(r[0])
    return entry ? { entry, ttlMs: Number(r[1]) } : null
  }

  async replace(sid: string, expectedVersion: number, entry: StoredEntry, maxTtlMs: number, slideMs = 0): Promise<ReplaceResult> {
    const { keys } = this.#c
    const r = await this.#c.run((redis) =>
      redis.twReplace(
        keys.session(sid),
        keys.journal(sid),
        expectedVersion,
        encodeEntry(entry),
        Math.max(1, Math.floor(maxTtlMs)),
        Math.max(0, Math.floor(slideMs)),
      ),
    )
    return r === 1 ? 'ok' : r === -1 ? 'conflict' : 'missing'
  }

  async delete(sid: string): Promise<boolean> {
    const { keys } = this.#c
    // Sent together without waiting in between; the session key's result is the answer.
    const [deleted] = await this.#c.run((redis) =>
      Promise.all([redis.del(keys.session(sid)), redis.del(keys.lock(sid)), redis.del(keys.journal(sid))]),
    )
    return deleted > 0
  }

  async count(): Promise<number | undefined> {
    const r = this.#c.redis
    // Cluster: each master holds a share of the keys.
    const nodes = r instanceof Cluster ? r.nodes('master') : [r]
    let n = 0
    for (const node of nodes) {
      let cursor = '0'
      do {
        const [next, keys] = await this.#c.run(() => node.scan(cursor, 'MATCH', `${this.#c.keys.prefix}s:*`, 'COUNT', 1000))
        cursor = next
        n += keys.length
      } while (cursor !== '0')
    }
    return n
  }
}
