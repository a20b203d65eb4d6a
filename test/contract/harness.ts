import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { Redis } from 'ioredis'
import { afterEach, beforeEach, describe, inject } from 'vitest'
import { MemoryStore } from '../../src/store/memory/store.js'
import { RedisStore, redisOptions } from '../../src/store/redis/store.js'
import type { StoredEntry, Store } from '../../src/store/types.js'

/**
 * One behavioural suite per store interface (the oauth2-proxy pattern:
 * `pkg/sessions/tests` runs the same cases against each store), each run
 * against the Redis store on the real redis-server of the global setup, under
 * its own key prefix, and against the memory store. Whatever a suite states,
 * both must do.
 */
export interface Subject {
  readonly store: Store
  /**
   * Another instance on the same data, as a second tokenward process sees it:
   * for Redis a second client on the same server and prefix; for memory (one
   * process only) the same store.
   */
  peer(): Promise<Store>
  /** A store on the same backend but in another namespace (another deployment). */
  stranger(): Promise<Store>
}

interface Made extends Subject {
  cleanup(): Promise<void>
}

/** The store's client fails fast while not connected (enableOfflineQueue: false), so wait for it. */
async function connected(url: string): Promise<Redis> {
  const redis = new Redis(url, redisOptions())
  redis.on('error', () => {})
  if (redis.status !== 'ready') await once(redis, 'ready')
  return redis
}

async function redisSubject(): Promise<Made> {
  const url = inject('redisUrl')
  const opened: Array<{ store: Store; prefix: string }> = []
  const open = async (prefix: string) => {
    const store = new RedisStore(await connected(url), prefix)
    opened.push({ store, prefix })
    return store
  }
  const fresh = () => `tokenward-test:contract:${randomUUID()}:`
  const prefix = fresh()
  const store = await open(prefix)
  return {
    store,
    peer: () => open(prefix),
    stranger: () => open(fresh()),
    async cleanup() {
      const admin = await connected(url)
      for (const p of new Set(opened.map((o) => o.prefix))) {
        let cursor = '0'
        do {
          const [next, keys] = await admin.scan(cursor, 'MATCH', `${p}*`, 'COUNT', 1000)
          cursor = next
          if (keys.length > 0) await admin.del(...keys)
        } while (cursor !== '0')
      }
      admin.disconnect()
      await Promise.all(opened.map((o) => o.store.close()))
    },
  }
}

async function memorySubject(): Promise<Made> {
  const stores = [new MemoryStore()]
  return {
    store: stores[0]!,
    peer: async () => stores[0]!,
    stranger: async () => {
      const s = new MemoryStore()
      stores.push(s)
      return s
    },
    async cleanup() {
      await Promise.all(stores.map((s) => s.close()))
    },
  }
}

const implementations: Array<[string, () => Promise<Made>]> = [
  ['redis', redisSubject],
  ['memory', memorySubject],
]

/** Declares the suite `body` once per implementation; `subject()` is a fresh store for each case. */
export function eachStore(title: string, body: (subject: () => Subject) => void): void {
  describe.each(implementations)(`${title} contract: %s`, (_name, make) => {
    let made: Made | undefined
    beforeEach(async () => {
      made = await make()
    })
    afterEach(async () => {
      await made?.cleanup()
      made = undefined
    })
    body(() => made!)
  })
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export const newSid = () => `sid-${randomUUID()}`

export function entry(version: number, payload: Buffer | string = 'x', absExp = Date.now() + 60_000): StoredEntry {
  return { version, absExp, payload: Buffer.isBuffer(payload) ? payload : Buffer.from(payload) }
}

/** Every byte value, twice, including `:` (0x3a), the header separator. */
export const ALL_BYTES = Buffer.from([...Array.from({ length: 256 }, (_, i) => i), ...Array.from({ length: 256 }, (_, i) => 255 - i)])

/** Polls `check` until it holds or `ms` pass. */
export async function eventually(check: () => boolean, ms = 2000): Promise<boolean> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) return false
    await sleep(10)
  }
  return true
}
