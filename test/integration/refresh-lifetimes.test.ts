// The session's absolute end follows the refresh token's lifetime, however the
// IdP states it (security model S20, S77): Microsoft's and GitHub's
// `refresh_token_expires_in`, Keycloak's `refresh_expires_in` (0 for an offline
// token: not said), or the `exp` of a JWT refresh token. The dev IdP answers in
// each style (test/helpers/idp-refresh-styles.ts) with real, rotating refresh
// tokens whose lifetime slides at each refresh, as Keycloak's do.
import { Redis } from 'ioredis'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { auditEvents } from '../helpers/bff.js'
import { refreshAccount, refreshStyles, type RefreshStyle } from '../helpers/idp-refresh-styles.js'
import { login } from '../helpers/login.js'
import { expireAccessToken, sessionOf, spaFetch } from '../helpers/session.js'
import { startWorld, type World } from '../helpers/world.js'

const MAX_AGE_S = 5
let world: World
let redis: Redis

beforeAll(async () => {
  const styles = refreshStyles()
  world = await startWorld({
    idp: { configure: styles.configure, setup: styles.setup },
    env: { BFF_SESSION_MAX_AGE: String(MAX_AGE_S), BFF_SESSION_IDLE_TIMEOUT: String(MAX_AGE_S) },
  })
  redis = new Redis(world.bff.env.BFF_REDIS_URL!)
})
afterAll(async () => {
  redis?.disconnect()
  await world?.close()
})

interface SessionBody {
  expiresAt: number
  idleExpiresAt: number
  refreshTokenExpiresAt: number | null
}

type Jar = Parameters<typeof spaFetch>[1]
const sessionBody = async (jar: Jar) => {
  const res = await spaFetch(world.bff, jar, '/auth/session?slide=false')
  expect(res.status).toBe(200)
  return (await res.json()) as SessionBody
}
const keyOf = (sid: string) => `${world.bff.env.BFF_REDIS_PREFIX}s:{${sid}}`
/** The session key's TTL, and when it was asked (the bound: a few ms of round trip). */
const pttl = async (sid: string) => {
  const at = Date.now()
  return { at, ms: await redis.pttl(keyOf(sid)) }
}
/** Whole seconds on the wire: a value computed at `ms` may be floored by up to one. */
const near = (seconds: number, ms: number) => seconds >= Math.floor(ms / 1000) - 1 && seconds <= Math.ceil(ms / 1000)

const STATED: RefreshStyle[] = ['refresh_token_expires_in', 'keycloak', 'jwt']

describe('the session ends with the refresh token (security model S77)', () => {
  it.concurrent.each(STATED)(
    '%s: /auth/session reports the refresh token’s end, a rotated token moves it later, and past it the session is gone with 401 login_required',
    async (style) => {
      const before = Date.now()
      const r = await login(world.bff.url, { username: refreshAccount(style, 3) })
      const after = Date.now()
      const first = await sessionBody(r.jar)
      // The IdP said 3 s (a JWT's exp in whole seconds: 2 to 3 s): the
      // session's end is the refresh token's, not the 5 s max age.
      expect(first.refreshTokenExpiresAt).not.toBeNull()
      expect(first.refreshTokenExpiresAt!).toBeGreaterThanOrEqual(Math.floor(before / 1000) + 1)
      expect(near(first.refreshTokenExpiresAt!, after + 3000)).toBe(true)
      expect(first.expiresAt).toBe(first.refreshTokenExpiresAt)
      const { sid, absExp: firstEnd } = (await sessionOf(world.bff, r.jar))!

      // A refresh over a second later (the IdP counts whole seconds): the
      // rotated token lives 3 s again, so the end moves later, and the Redis TTL with it.
      await sleep(Math.max(0, after + 1100 - Date.now()))
      await expireAccessToken(world.bff, r.jar)
      expect((await spaFetch(world.bff, r.jar, '/api/x')).status).toBe(200)
      const moved = await sessionBody(r.jar)
      const { absExp: secondEnd } = (await sessionOf(world.bff, r.jar))!
      expect(secondEnd).toBeGreaterThan(firstEnd + 500)
      expect(moved.expiresAt).toBe(Math.floor(secondEnd / 1000))
      expect(moved.refreshTokenExpiresAt).toBe(moved.expiresAt)
      const ttl = await pttl(sid)
      expect(ttl.ms).toBeGreaterThan(firstEnd - ttl.at + 400)
      expect(ttl.ms).toBeLessThanOrEqual(secondEnd - ttl.at + 50)

      // Past the first token's end the session lives on with the rotated one.
      await sleep(Math.max(0, firstEnd + 200 - Date.now()))
      expect((await spaFetch(world.bff, r.jar, '/api/x')).status).toBe(200)

      // Past the rotated token's end: a planned end. tokenward answers 401
      // login_required itself; the IdP is never asked with a dead token.
      await sleep(Math.max(0, secondEnd + 300 - Date.now()))
      // This session's refresh attempts, as tokenward audits each one (the
      // IdP's counters are shared with the tests running concurrently).
      const refreshesOf = () =>
        auditEvents(world.bff.logs).filter(
          (e) => e.sid === sid && ['refresh', 'refresh_failed', 'refresh_token_rejected'].includes(String(e.event)),
        ).length
      const refreshesBefore = refreshesOf()
      const gone = await spaFetch(world.bff, r.jar, '/api/x')
      expect(gone.status).toBe(401)
      expect(((await gone.json()) as { error: string }).error).toBe('login_required')
      expect((await spaFetch(world.bff, r.jar, '/auth/session')).status).toBe(401)
      expect(await redis.exists(keyOf(sid))).toBe(0)
      expect(refreshesOf()).toBe(refreshesBefore)
      const ends = auditEvents(world.bff.logs).filter((e) => e.sid === sid && e.outcome === 'failure')
      expect(ends).toEqual([])
    },
  )

  it.concurrent.each(STATED)('%s: a refresh token that outlives BFF_SESSION_MAX_AGE never extends the session past it', async (style) => {
    const before = Date.now()
    const r = await login(world.bff.url, { username: refreshAccount(style, 3600) })
    const { sid, data } = (await sessionOf(world.bff, r.jar))!
    const latest = data.createdAt + MAX_AGE_S * 1000
    const first = await sessionBody(r.jar)
    expect(first.expiresAt).toBe(Math.floor(latest / 1000))
    expect(first.refreshTokenExpiresAt).toBe(first.expiresAt)
    expect(first.expiresAt).toBeLessThanOrEqual(Math.ceil((before + MAX_AGE_S * 1000) / 1000))

    // A refresh: the rotated token again says an hour; the end stays at the max age.
    await expireAccessToken(world.bff, r.jar)
    expect((await spaFetch(world.bff, r.jar, '/api/x')).status).toBe(200)
    expect((await sessionOf(world.bff, r.jar))!.absExp).toBe(latest)
    expect((await sessionBody(r.jar)).expiresAt).toBe(first.expiresAt)
    const ttl = await pttl(sid)
    expect(ttl.ms).toBeLessThanOrEqual(latest - ttl.at + 50)

    await sleep(Math.max(0, latest + 300 - Date.now()))
    const gone = await spaFetch(world.bff, r.jar, '/api/x')
    expect(gone.status).toBe(401)
    expect(((await gone.json()) as { error: string }).error).toBe('login_required')
    expect(await redis.exists(keyOf(sid))).toBe(0)
  })

  it('keycloak offline token (refresh_expires_in: 0): no fixed expiry, so the session ends at the max age', async () => {
    const r = await login(world.bff.url, { username: refreshAccount('keycloak_offline', 2) })
    const { data } = (await sessionOf(world.bff, r.jar))!
    const body = await sessionBody(r.jar)
    expect(body.refreshTokenExpiresAt).toBeNull()
    expect(body.expiresAt).toBe(Math.floor((data.createdAt + MAX_AGE_S * 1000) / 1000))
  })

  it('no invalid_grant anywhere: every end was planned, and JWT refresh tokens were mapped back at the IdP', () => {
    expect(world.idp.counts.invalidGrants).toBe(0)
    expect(world.idp.counts.refreshErrors).toBe(0)
    expect(world.idp.counts.refreshGrants).toBeGreaterThanOrEqual(2 * STATED.length)
  })
})
