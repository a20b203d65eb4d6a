import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { login } from '../helpers/login.js'
import { spaFetch } from '../helpers/session.js'
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js'
import { startWorld, type World } from '../helpers/world.js'

// A private, persistent redis-server this file may pause, kill and restart.
let redisServer: RedisServer
let world: World

beforeAll(async () => {
  redisServer = await startRedisServer({ persist: true })
  world = await startWorld({ redisUrl: redisServer.url })
})
afterAll(async () => {
  await world?.close()
  await redisServer?.close()
})

async function waitFor(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time')
    await new Promise((r) => setTimeout(r, 100))
  }
}

describe('Redis unreachable (security model S66)', () => {
  it('frozen Redis: a bounded 503 session_store_unavailable, the cookie kept, the same session works once it answers', async () => {
    const { jar } = await login(world.bff.url)
    const cookie = jar.get('__Host-tokenward')
    expect((await spaFetch(world.bff, jar, '/api/echo')).status).toBe(200)
    redisServer.pause()
    try {
      // A frozen Redis closes no connection, so nothing tells tokenward: a
      // session it read less than BFF_SESSION_CACHE_MS (default 1 s) ago may
      // still answer from memory. After that, the store is asked, and fails.
      await new Promise((r) => setTimeout(r, 1100))
      const started = Date.now()
      const res = await spaFetch(world.bff, jar, '/api/echo')
      const took = Date.now() - started
      expect(res.status).toBe(503)
      expect(res.headers.get('retry-after')).toBeTruthy()
      expect(await res.json()).toMatchObject({ error: 'session_store_unavailable' })
      expect(took).toBeLessThan(5000)
      expect(res.headers.getSetCookie()).toEqual([])
      const ready = await fetch(`${world.bff.url}/readyz`)
      expect(ready.status).toBe(503)
      expect((await fetch(`${world.bff.url}/healthz`)).status).toBe(200)
    } finally {
      redisServer.resume()
    }
    await waitFor(async () => (await spaFetch(world.bff, jar, '/auth/session')).status === 200)
    expect(jar.get('__Host-tokenward')).toBe(cookie)
    expect((await spaFetch(world.bff, jar, '/api/echo')).status).toBe(200)
  })

  it('Redis killed and restarted: 503 at once, even for a session read a moment ago, then the same cookie works (no logout)', async () => {
    const { jar } = await login(world.bff.url)
    // Read twice: the second answer may come from memory (BFF_SESSION_CACHE_MS).
    expect((await spaFetch(world.bff, jar, '/api/echo')).status).toBe(200)
    expect((await spaFetch(world.bff, jar, '/api/echo')).status).toBe(200)
    await redisServer.stop()
    try {
      const started = Date.now()
      const res = await spaFetch(world.bff, jar, '/auth/session')
      expect(res.status).toBe(503)
      expect(Date.now() - started).toBeLessThan(5000)
      expect(await res.json()).toMatchObject({ error: 'session_store_unavailable' })
    } finally {
      await redisServer.start()
    }
    await waitFor(async () => (await spaFetch(world.bff, jar, '/auth/session')).status === 200)
    expect((await spaFetch(world.bff, jar, '/api/echo')).status).toBe(200)
    expect((await fetch(`${world.bff.url}/readyz`)).status).toBe(200)
  })
})
