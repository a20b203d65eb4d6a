import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest'
import { SessionStoreUnavailableError } from '../../src/errors.js'
import { RedisStore, redisOptions } from '../../src/store/redis/store.js'
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** The store's client fails fast while not connected (enableOfflineQueue: false), so wait for it. */
async function connected(url: string): Promise<Redis> {
  const redis = new Redis(url, redisOptions())
  redis.on('error', () => {})
  if (redis.status !== 'ready') await once(redis, 'ready')
  return redis
}

async function keysUnder(redis: Redis, prefix: string): Promise<string[]> {
  const keys: string[] = []
  let cursor = '0'
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
    cursor = next
    keys.push(...batch)
  } while (cursor !== '0')
  return keys
}

async function redisStore(url: string): Promise<{ store: RedisStore; admin: Redis; prefix: string; cleanup(): Promise<void> }> {
  const prefix = `tokenward-test:${randomUUID()}:`
  const store = new RedisStore(await connected(url), prefix)
  const admin = await connected(url)
  return {
    store,
    admin,
    prefix,
    async cleanup() {
      const keys = await keysUnder(admin, prefix)
      if (keys.length > 0) await admin.del(...keys)
      await store.close()
      admin.disconnect()
    },
  }
}

// The behaviour every store shares is in test/contract/; here, what is Redis's own.
describe('RedisStore on a real Redis', () => {
  let s: Awaited<ReturnType<typeof redisStore>>

  beforeEach(async () => {
    s = await redisStore(inject('redisUrl'))
  })

  afterEach(async () => {
    await s.cleanup()
  })

  it('security model S59: every key the store writes has a TTL > 0', async () => {
    const absExp = Date.now() + 60_000
    await s.store.records.create('a', { version: 1, absExp, payload: Buffer.from('a') }, 30_000)
    await s.store.records.create('b', { version: 1, absExp, payload: Buffer.from('b') }, 30_000)
    await s.store.records.read('a', { slideMs: 45_000, now: Date.now() })
    await s.store.records.read('b', { slideMs: 0, now: Date.now() })
    expect(await s.store.records.replace('b', 1, { version: 2, absExp, payload: Buffer.from('b2') }, 90_000)).toBe('ok')
    await s.store.transactions.put('t1', Buffer.from('tx'), 600_000)
    await s.store.transactions.put('t2', Buffer.from('tx'), 600_000)
    await s.store.transactions.take('t2')

    const keys = await keysUnder(s.admin, s.prefix)
    expect(keys).toHaveLength(3)
    for (const key of keys) {
      const pttl = await s.admin.pttl(key)
      expect(pttl, key).toBeGreaterThan(0)
      expect(pttl, key).toBeLessThanOrEqual(600_000)
    }
    // Session TTLs never pass the absolute expiry.
    for (const key of keys.filter((k) => !k.startsWith(`${s.prefix}t:`))) {
      expect(await s.admin.pttl(key), key).toBeLessThanOrEqual(absExp - Date.now() + 50)
    }
  })

  it('stores `<version>:<absExp>:` followed by the payload bytes, under the key prefix', async () => {
    const payload = Buffer.from([0, 0x3a, 255, 10, 13, 0x3a, 128])
    const absExp = Date.now() + 60_000
    await s.store.records.create('raw', { version: 7, absExp, payload }, 30_000)
    const keys = await keysUnder(s.admin, s.prefix)
    expect(keys).toHaveLength(1)
    const key = keys[0]!
    expect(key.startsWith(s.prefix)).toBe(true)
    const raw = await s.admin.getBuffer(key)
    expect(raw).not.toBeNull()
    const header = Buffer.from(`7:${absExp}:`, 'latin1')
    expect(raw!.subarray(0, header.length).equals(header)).toBe(true)
    expect(raw!.subarray(header.length).equals(payload)).toBe(true)
    expect(raw!.length).toBe(header.length + payload.length)

    expect(await s.store.records.replace('raw', 7, { version: 8, absExp, payload: Buffer.from('new') }, 60_000)).toBe('ok')
    expect((await s.admin.getBuffer(key))!.toString('latin1')).toBe(`8:${absExp}:new`)
  })

  it('security model S19: an idle-expired session key is gone from Redis', async () => {
    await s.store.records.create('idle', { version: 1, absExp: Date.now() + 60_000, payload: Buffer.from('x') }, 150)
    expect(await keysUnder(s.admin, s.prefix)).toHaveLength(1)
    await sleep(300)
    expect(await s.store.records.read('idle', { slideMs: 60_000, now: Date.now() })).toBeNull()
    expect(await keysUnder(s.admin, s.prefix)).toHaveLength(0)
  })

  it('security model S19: a read past absExp deletes the key', async () => {
    const absExp = Date.now() + 60_000
    await s.store.records.create('abs', { version: 1, absExp, payload: Buffer.from('x') }, 60_000)
    expect(await keysUnder(s.admin, s.prefix)).toHaveLength(1)
    expect(await s.store.records.read('abs', { slideMs: 60_000, now: absExp })).toBeNull()
    expect(await keysUnder(s.admin, s.prefix)).toHaveLength(0)
  })

  it('reports itself as a redis store', () => {
    expect(s.store.kind).toBe('redis')
  })
})

describe('RedisStore when Redis goes away (security model S66)', () => {
  let server: RedisServer
  let store: RedisStore

  beforeAll(async () => {
    server = await startRedisServer()
    store = new RedisStore(await connected(server.url), 'tokenward-test:outage:')
  })

  afterAll(async () => {
    await store?.close()
    await server?.stop()
  })

  it('rejects with SessionStoreUnavailableError within 3 s while down, and works again once Redis is back', async () => {
    const absExp = Date.now() + 60_000
    expect(await store.records.create('before', { version: 1, absExp, payload: Buffer.from('x') }, 60_000)).toBe(true)
    await store.ping()

    await server.stop()

    const calls: Array<[string, () => Promise<unknown>]> = [
      ['ping', () => store.ping()],
      ['records.read', () => store.records.read('before', { slideMs: 1_000, now: Date.now() })],
      ['records.create', () => store.records.create('during', { version: 1, absExp, payload: Buffer.from('y') }, 60_000)],
      ['records.replace', () => store.records.replace('before', 1, { version: 2, absExp, payload: Buffer.from('z') }, 60_000)],
      ['records.delete', () => store.records.delete('before')],
      ['transactions.put', () => store.transactions.put('t', Buffer.from('t'), 60_000)],
      ['transactions.take', () => store.transactions.take('t')],
    ]
    for (const [name, call] of calls) {
      const started = Date.now()
      const outcome = await call().then(
        (value) => ({ ok: true as const, value }),
        (error: unknown) => ({ ok: false as const, error }),
      )
      const elapsed = Date.now() - started
      expect(outcome.ok, `${name} should reject while Redis is down`).toBe(false)
      if (!outcome.ok) {
        expect(outcome.error, name).toBeInstanceOf(SessionStoreUnavailableError)
        const err = outcome.error as SessionStoreUnavailableError
        expect(err.code).toBe('session_store_unavailable')
        expect(err.status).toBe(503)
      }
      expect(elapsed, `${name} took ${elapsed} ms`).toBeLessThan(3_000)
    }

    // Several calls at once, still bounded.
    const started = Date.now()
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, () => store.records.read('before', { slideMs: 0, now: Date.now() })),
    )
    expect(Date.now() - started).toBeLessThan(3_000)
    for (const r of results) {
      expect(r.status).toBe('rejected')
      if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(SessionStoreUnavailableError)
    }

    await server.start()

    // The same store object recovers by itself (ioredis reconnects).
    const deadline = Date.now() + 10_000
    let recovered = false
    while (Date.now() < deadline) {
      try {
        await store.ping()
        recovered = true
        break
      } catch (err) {
        expect(err).toBeInstanceOf(SessionStoreUnavailableError)
        await sleep(100)
      }
    }
    expect(recovered, 'store did not recover within 10 s').toBe(true)
    // The restarted server is empty (nothing persisted); new writes and reads work.
    expect(await store.records.create('after', { version: 1, absExp, payload: Buffer.from('back') }, 60_000)).toBe(true)
    expect((await store.records.read('after', { slideMs: 1_000, now: Date.now() }))!.entry.payload.toString()).toBe('back')
    await store.transactions.put('t2', Buffer.from('t'), 60_000)
    expect((await store.transactions.take('t2'))!.toString()).toBe('t')
  })
})
