// The per-instance session cache (BFF_SESSION_CACHE_MS): a session read from
// Redis answers this instance's requests for up to a second without another
// read, and any change to it anywhere still takes effect on the very next
// request, because Redis announces changes to keys the instance has read
// (CLIENT TRACKING) before it acknowledges them. security model S66, S68.
//
// A private redis-server: this file flushes it and kills its connections.

import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { TestBff } from '../helpers/bff.js'
import { login, type CookieJar } from '../helpers/login.js'
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js'
import { sessionOf, spaFetch } from '../helpers/session.js'
import { startWorld, type World } from '../helpers/world.js'

let redisServer: RedisServer
let admin: Redis
let world: World
let b: TestBff

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not reached in time`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

/** Session reads (the read-and-slide script) Redis has executed so far. */
async function sessionReads(): Promise<number> {
  const info = await admin.info('commandstats')
  return Number(/cmdstat_evalsha:calls=(\d+)/.exec(info)?.[1] ?? 0) + Number(/cmdstat_eval:calls=(\d+)/.exec(info)?.[1] ?? 0)
}

const caching = (bff: TestBff) => () => bff.server.deps.sessions.caching

async function sessionKey(bff: TestBff, jar: CookieJar): Promise<string> {
  const s = await sessionOf(bff, jar)
  return `${bff.env.BFF_REDIS_PREFIX}s:{${s!.sid}}`
}

beforeAll(async () => {
  redisServer = await startRedisServer()
  admin = new Redis(redisServer.url, { maxRetriesPerRequest: 1 })
  world = await startWorld({ redisUrl: redisServer.url })
  b = await world.startInstance()
  await waitFor('cache on A', caching(world.bff))
  await waitFor('cache on B', caching(b))
})
afterAll(async () => {
  await b?.close()
  await world?.close()
  admin?.disconnect()
  await redisServer?.close()
})

describe('session cache (BFF_SESSION_CACHE_MS, default 1000 ms)', () => {
  it('a session used again within the window is not read from Redis again', async () => {
    const { jar } = await login(world.bff.url)
    expect((await spaFetch(world.bff, jar, '/api/echo')).status).toBe(200)
    const before = await sessionReads()
    const started = Date.now()
    for (let i = 0; i < 30; i++) expect((await spaFetch(world.bff, jar, '/api/echo')).status).toBe(200)
    const reads = (await sessionReads()) - before
    // One read per started second at most (the window is renewed by a read).
    expect(reads).toBeLessThanOrEqual(Math.ceil((Date.now() - started) / 1000) + 1)
    expect(reads).toBeLessThan(30)
  })

  it('the window ends: after BFF_SESSION_CACHE_MS the session is read again, and that read slides its idle timeout', async () => {
    const { jar } = await login(world.bff.url)
    expect((await spaFetch(world.bff, jar, '/api/echo')).status).toBe(200)
    const key = await sessionKey(world.bff, jar)
    const before = await sessionReads()
    await new Promise((r) => setTimeout(r, 1100))
    expect((await spaFetch(world.bff, jar, '/api/echo')).status).toBe(200)
    expect((await sessionReads()) - before).toBe(1)
    // Slid back to the full 1800 s idle timeout (unslid, 1.1 s would be gone).
    expect(await admin.pttl(key)).toBeGreaterThan(1_799_700)
  })

  it('a logout on A takes effect on B at once, though B answered from memory a moment before (security model S68)', async () => {
    for (let i = 0; i < 15; i++) {
      const { jar } = await login(world.bff.url)
      for (let j = 0; j < 3; j++) expect((await spaFetch(b, jar, '/api/echo')).status).toBe(200)
      const before = await sessionReads()
      expect((await spaFetch(b, jar, '/api/echo')).status).toBe(200)
      expect(await sessionReads()).toBe(before) // answered from memory
      const out = await spaFetch(world.bff, jar, '/auth/logout', { method: 'POST' })
      expect(out.status).toBeLessThan(400)
      expect((await spaFetch(b, jar, '/api/echo')).status).toBe(401)
    }
  })

  it("any change to the session key by anyone (an operator's DEL, a swapped entry) is seen by the next request", async () => {
    for (let i = 0; i < 15; i++) {
      const { jar } = await login(world.bff.url)
      expect((await spaFetch(world.bff, jar, '/api/echo')).status).toBe(200)
      expect((await spaFetch(world.bff, jar, '/api/echo')).status).toBe(200)
      const key = await sessionKey(world.bff, jar)
      if (i % 2 === 0) await admin.del(key)
      else await admin.set(key, Buffer.from('1:9999999999999:not-a-ciphertext'), 'KEEPTTL')
      expect((await spaFetch(world.bff, jar, '/api/echo')).status).toBe(401)
    }
  })

  it('a refresh on A is seen by B: B forwards the new access token, not its remembered one', async () => {
    const { jar } = await login(world.bff.url)
    expect((await spaFetch(b, jar, '/api/echo')).status).toBe(200)
    const old = await sessionOf(b, jar)
    // A rotates the tokens (white-box: the same compare-and-set write a refresh makes).
    const s = await sessionOf(world.bff, jar)
    const { result } = await world.bff.server.deps.sessions.replace(s!, { ...s!.data, accessToken: `${s!.data.accessToken}.rotated` })
    expect(result).toBe('ok')
    const res = await spaFetch(b, jar, '/api/echo')
    const seen = (await sessionOf(b, jar))!
    expect(seen.version).toBe(old!.version + 1)
    expect(seen.data.accessToken.endsWith('.rotated')).toBe(true)
    expect(res.status).not.toBe(500)
  })

  it('FLUSHALL ends every remembered session at once', async () => {
    const a1 = await login(world.bff.url)
    const a2 = await login(world.bff.url)
    for (const { jar } of [a1, a2]) {
      expect((await spaFetch(world.bff, jar, '/api/echo')).status).toBe(200)
      expect((await spaFetch(world.bff, jar, '/api/echo')).status).toBe(200)
    }
    await admin.flushall()
    for (const { jar } of [a1, a2]) expect((await spaFetch(world.bff, jar, '/api/echo')).status).toBe(401)
  })

  it('a lost subscriber or command connection turns the cache off at once, and it comes back once tracking is restored', async () => {
    for (const type of ['pubsub', 'normal'] as const) {
      const { jar } = await login(world.bff.url)
      expect((await spaFetch(world.bff, jar, '/api/echo')).status).toBe(200)
      expect((await spaFetch(world.bff, jar, '/api/echo')).status).toBe(200)
      const key = await sessionKey(world.bff, jar)
      // Kill tokenward's connections of that type (the admin connection is a normal one: skip it).
      const me = await admin.client('ID')
      await admin.call('CLIENT', 'KILL', 'TYPE', type, 'SKIPME', 'yes')
      // Without its connections tokenward cannot hear of this DEL: it must not answer from memory.
      await admin.del(key)
      const res = await spaFetch(world.bff, jar, '/api/echo')
      expect([401, 503]).toContain(res.status)
      expect(me).toBeGreaterThan(0)
      await waitFor(`cache back after killing ${type} connections`, caching(world.bff))
      await waitFor(`cache back on B after killing ${type} connections`, caching(b))
      const again = await login(world.bff.url)
      expect((await spaFetch(world.bff, again.jar, '/api/echo')).status).toBe(200)
      const before = await sessionReads()
      expect((await spaFetch(world.bff, again.jar, '/api/echo')).status).toBe(200)
      expect(await sessionReads()).toBe(before)
    }
  })

  it('a Redis ACL without CLIENT ID / CLIENT TRACKING: a warning, every request reads Redis, session events still arrive', async () => {
    await admin.call('ACL', 'SETUSER', 'limited', 'on', '>limited-test-password', '~*', '&*', '+@all', '-client|id', '-client|tracking')
    const url = new URL(redisServer.url)
    url.username = 'limited'
    url.password = 'limited-test-password'
    const c = await world.startInstance({ BFF_REDIS_URL: url.toString() })
    try {
      const { jar } = await login(c.url)
      await waitFor('the tracking warning', () => c.logs.some((l) => l.includes('CLIENT TRACKING')))
      const before = await sessionReads()
      for (let i = 0; i < 5; i++) expect((await spaFetch(c, jar, '/api/echo')).status).toBe(200)
      expect((await sessionReads()) - before).toBe(5)
      expect(c.server.deps.sessions.caching).toBe(false)
      // The event subscription itself works: a logout elsewhere reaches listeners here.
      const s = (await sessionOf(c, jar))!
      const heard = new Promise<string>((resolve) => void c.server.deps.events.listen(s.sid, (e) => resolve(e.reason)))
      expect((await spaFetch(world.bff, jar, '/auth/logout', { method: 'POST' })).status).toBeLessThan(400)
      expect(await heard).toBe('logout')
    } finally {
      await c.close()
    }
  })

  it('BFF_SESSION_CACHE_MS=0: every request reads Redis', async () => {
    const c = await world.startInstance({ BFF_SESSION_CACHE_MS: '0' })
    try {
      const { jar } = await login(world.bff.url)
      const before = await sessionReads()
      for (let i = 0; i < 10; i++) expect((await spaFetch(c, jar, '/api/echo')).status).toBe(200)
      expect((await sessionReads()) - before).toBe(10)
      expect(c.server.deps.sessions.caching).toBe(false)
    } finally {
      await c.close()
    }
  })
})
