import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { login } from '../helpers/login.js'
import { sessionOf, spaFetch } from '../helpers/session.js'
import { startWorld, type World } from '../helpers/world.js'

// Short lifetimes: 2 s idle, 4 s absolute (whole seconds are the contract's unit).
let world: World
let redis: Redis

beforeAll(async () => {
  world = await startWorld({ env: { BFF_SESSION_IDLE_TIMEOUT: '2', BFF_SESSION_MAX_AGE: '4' } })
  redis = new Redis(world.bff.env.BFF_REDIS_URL!)
})
afterAll(async () => {
  redis?.disconnect()
  await world?.close()
})

const sessionStatus = async (jar: Parameters<typeof spaFetch>[1], query = '') =>
  (await spaFetch(world.bff, jar, `/auth/session${query}`)).status

describe('session lifetimes, enforced server-side', () => {
  it('an idle session ends after the idle timeout and its Redis key is gone (security model S19)', async () => {
    const r = await login(world.bff.url)
    const sid = (await sessionOf(world.bff, r.jar))!.sid
    const key = `${world.bff.env.BFF_REDIS_PREFIX}s:{${sid}}`
    expect(await redis.exists(key)).toBe(1)
    await sleep(2300)
    expect(await sessionStatus(r.jar)).toBe(401)
    expect(await redis.exists(key)).toBe(0)
  })

  it('polling with ?slide=false does not keep the session alive (security model S22)', async () => {
    const r = await login(world.bff.url)
    const first = (await (await spaFetch(world.bff, r.jar, '/auth/session?slide=false')).json()) as { idleExpiresAt: number }
    for (let i = 0; i < 3; i++) {
      await sleep(500)
      const body = (await (await spaFetch(world.bff, r.jar, '/auth/session?slide=false')).json()) as { idleExpiresAt: number }
      expect(body.idleExpiresAt).toBeLessThanOrEqual(first.idleExpiresAt)
    }
    await sleep(800)
    expect(await sessionStatus(r.jar, '?slide=false')).toBe(401)
  })

  it('activity slides the idle timeout but never past the absolute lifetime (security model S19)', async () => {
    const r = await login(world.bff.url)
    const started = Date.now()
    // Active every 700 ms: well inside the 2 s idle timeout.
    while (Date.now() - started < 3500) {
      expect(await sessionStatus(r.jar)).toBe(200)
      await sleep(700)
    }
    // Past 4 s since login the session is over, however active it was.
    await sleep(Math.max(0, 4200 - (Date.now() - started)))
    expect(await sessionStatus(r.jar)).toBe(401)
  })

  it('/auth/session reports the absolute and idle expiry in epoch seconds', async () => {
    const before = Math.floor(Date.now() / 1000)
    const r = await login(world.bff.url)
    const body = (await (await spaFetch(world.bff, r.jar, '/auth/session')).json()) as {
      expiresAt: number
      idleExpiresAt: number
      refreshTokenExpiresAt: number | null
    }
    // The dev IdP states no refresh-token lifetime: the max age alone (security model S77).
    expect(body.refreshTokenExpiresAt).toBeNull()
    expect(body.expiresAt).toBeGreaterThanOrEqual(before + 3)
    expect(body.expiresAt).toBeLessThanOrEqual(before + 5)
    expect(body.idleExpiresAt).toBeGreaterThanOrEqual(before + 1)
    expect(body.idleExpiresAt).toBeLessThanOrEqual(body.expiresAt)
  })
})
