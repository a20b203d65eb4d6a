import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import * as oidc from 'openid-client'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { auditEvents } from '../helpers/bff.js'
import { login } from '../helpers/login.js'
import { expireAccessToken, sessionOf, spaFetch } from '../helpers/session.js'
import { CLIENT_ID, startWorld, type World } from '../helpers/world.js'

let world: World
let redis: Redis

beforeAll(async () => {
  world = await startWorld({ env: { BFF_REFRESH_SKEW: '5' } })
  redis = new Redis(world.bff.env.BFF_REDIS_URL!)
})
afterAll(async () => {
  redis?.disconnect()
  await world?.close()
})
beforeEach(() => {
  world.idp.setTokenEndpointDelay(0)
  world.upstream.rejectToken(undefined)
})

function counts() {
  const c = world.idp.counts
  return { refresh: c.refreshGrants, invalid: c.invalidGrants, errors: c.refreshErrors }
}

describe('refresh: exactly one per session, whatever the concurrency (security model S31, S32, S35)', () => {
  it('100 concurrent calls on one instance after expiry: all succeed, one refresh grant, no invalid_grant', async () => {
    const { jar } = await login(world.bff.url)
    const oldToken = (await expireAccessToken(world.bff, jar)).data.accessToken
    const before = counts()
    const results = await Promise.all(Array.from({ length: 100 }, () => spaFetch(world.bff, jar, '/api/echo')))
    expect(results.map((r) => r.status)).toEqual(Array(100).fill(200))
    expect(counts().refresh - before.refresh).toBe(1)
    expect(counts().invalid - before.invalid).toBe(0)
    const fresh = (await sessionOf(world.bff, jar))!
    expect(fresh.data.accessToken).not.toBe(oldToken)
    expect(world.upstream.requests.at(-1)!.headers.authorization).toBe(`Bearer ${fresh.data.accessToken}`)
    expect(auditEvents(world.bff.logs).some((e) => e.event === 'refresh' && e.sid === fresh.sid)).toBe(true)
  })

  it('three instances sharing Redis, 50 concurrent calls each: one refresh grant; the rotated refresh token is kept', async () => {
    const others = [await world.startInstance(), await world.startInstance()]
    const instances = [world.bff, ...others]
    const { jar } = await login(world.bff.url)
    const before = (await sessionOf(world.bff, jar))!
    await expireAccessToken(world.bff, jar)
    const c0 = counts()
    const results = await Promise.all(instances.flatMap((bff) => Array.from({ length: 50 }, () => spaFetch(bff, jar, '/api/echo'))))
    expect(results.every((r) => r.status === 200)).toBe(true)
    expect(counts().refresh - c0.refresh).toBe(1)
    expect(counts().invalid - c0.invalid).toBe(0)
    const after = (await sessionOf(world.bff, jar))!
    expect(after.data.refreshToken).toBeTruthy()
    expect(after.data.refreshToken).not.toBe(before.data.refreshToken)
    expect(after.version).toBe(before.version + 2) // our expiry write, then the one refresh
  })

  it('a token endpoint slower than the lock lease still gives one refresh (the lease is renewed)', async () => {
    const other = await world.startInstance()
    const { jar } = await login(world.bff.url)
    await expireAccessToken(world.bff, jar)
    world.idp.setTokenEndpointDelay(6500) // the lease is 5 s
    const c0 = counts()
    const results = await Promise.all(
      [world.bff, other].flatMap((bff) => Array.from({ length: 10 }, () => spaFetch(bff, jar, '/api/echo'))),
    )
    expect(results.every((r) => r.status === 200)).toBe(true)
    expect(counts().refresh - c0.refresh).toBe(1)
    expect(counts().invalid - c0.invalid).toBe(0)
  }, 30_000)
})

describe('a lock holder that died (security model S33)', () => {
  it('died before redeeming: another instance takes over after the lease and refreshes', async () => {
    const { jar } = await login(world.bff.url)
    await expireAccessToken(world.bff, jar)
    const { sid } = (await sessionOf(world.bff, jar))!
    const prefix = world.bff.env.BFF_REDIS_PREFIX
    await redis.set(`${prefix}l:{${sid}}`, randomUUID(), 'PX', 1500)
    const c0 = counts()
    const started = Date.now()
    const res = await spaFetch(world.bff, jar, '/api/echo')
    expect(res.status).toBe(200)
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000)
    expect(counts().refresh - c0.refresh).toBe(1)
  })

  it('died after it may have redeemed: the session ends cleanly, the refresh token is never presented twice', async () => {
    const { jar } = await login(world.bff.url)
    await expireAccessToken(world.bff, jar)
    const s = (await sessionOf(world.bff, jar))!
    const prefix = world.bff.env.BFF_REDIS_PREFIX
    await redis.set(`${prefix}l:{${s.sid}}`, randomUUID(), 'PX', 1000)
    await redis.set(`${prefix}j:{${s.sid}}`, String(s.version), 'PX', 60_000)
    const c0 = counts()
    const tokenRequests = world.idp.counts.tokenRequests
    const res = await spaFetch(world.bff, jar, '/api/echo')
    expect(res.status).toBe(401)
    expect(await res.json()).toMatchObject({ error: 'login_required' })
    expect(counts().refresh - c0.refresh).toBe(0)
    expect(world.idp.counts.tokenRequests).toBe(tokenRequests) // no call at all
    expect(await sessionOf(world.bff, jar)).toBeNull()
    expect(auditEvents(world.bff.logs).some((e) => e.event === 'refresh_failed' && e.sid === s.sid)).toBe(true)
  })
})

describe('fatal and transient refresh errors (security model S35, S36)', () => {
  it('a grant revoked at the IdP: next call 401 login_required, session deleted, audit refresh_token_rejected', async () => {
    const { jar } = await login(world.bff.url)
    const s = (await sessionOf(world.bff, jar))!
    const configuration = await oidc.discovery(new URL(world.idp.issuer), CLIENT_ID, world.clientSecret, undefined, {
      execute: [oidc.allowInsecureRequests],
    })
    await oidc.tokenRevocation(configuration, s.data.refreshToken!, { token_type_hint: 'refresh_token' })
    await expireAccessToken(world.bff, jar)
    const res = await spaFetch(world.bff, jar, '/api/echo')
    expect(res.status).toBe(401)
    expect(await res.json()).toMatchObject({ error: 'login_required' })
    expect(await sessionOf(world.bff, jar)).toBeNull()
    expect((await spaFetch(world.bff, jar, '/auth/session')).status).toBe(401)
    expect(auditEvents(world.bff.logs).some((e) => e.event === 'refresh_token_rejected' && e.sid === s.sid)).toBe(true)
  })

  it('the IdP down: 503 idp_unavailable with Retry-After and the session kept; back up: the call succeeds', async () => {
    const { jar } = await login(world.bff.url)
    await expireAccessToken(world.bff, jar)
    await world.idp.stop()
    try {
      const res = await spaFetch(world.bff, jar, '/api/echo')
      expect(res.status).toBe(503)
      expect(res.headers.get('retry-after')).toBeTruthy()
      expect(await res.json()).toMatchObject({ error: 'idp_unavailable' })
      expect((await spaFetch(world.bff, jar, '/auth/session')).status).toBe(200)
    } finally {
      await world.idp.start()
    }
    const c0 = counts()
    expect((await spaFetch(world.bff, jar, '/api/echo')).status).toBe(200)
    expect(counts().refresh - c0.refresh).toBe(1)
  })

  it('an upstream 401 invalid_token on a GET: one refresh and one retry; a request with a body is never retried', async () => {
    const { jar } = await login(world.bff.url)
    const token = (await sessionOf(world.bff, jar))!.data.accessToken
    world.upstream.rejectToken(token)
    const c0 = counts()
    const n = world.upstream.requests.length
    const res = await spaFetch(world.bff, jar, '/api/echo')
    expect(res.status).toBe(200)
    expect(world.upstream.requests.length - n).toBe(2)
    expect(counts().refresh - c0.refresh).toBe(1)

    const fresh = (await sessionOf(world.bff, jar))!.data.accessToken
    world.upstream.rejectToken(fresh)
    const m = world.upstream.requests.length
    const post = await spaFetch(world.bff, jar, '/api/echo', {
      method: 'POST',
      body: '{"a":1}',
      headers: { 'content-type': 'application/json' },
    })
    expect(post.status).toBe(401)
    expect(post.headers.get('www-authenticate')).toContain('invalid_token')
    expect(world.upstream.requests.length - m).toBe(1)
    expect(counts().refresh - c0.refresh).toBe(1)
  })

  it('a second 401 after the retry is passed through, not looped', async () => {
    const { jar } = await login(world.bff.url)
    world.upstream.rejectToken('*')
    const n = world.upstream.requests.length
    const c0 = counts()
    const res = await spaFetch(world.bff, jar, '/api/echo')
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toContain('invalid_token')
    expect(world.upstream.requests.length - n).toBe(2)
    expect(counts().refresh - c0.refresh).toBe(1)
  })
})
