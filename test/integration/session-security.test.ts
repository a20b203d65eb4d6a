import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CookieJar, login } from '../helpers/login.js'
import { containsAny, sessionOf, spaFetch } from '../helpers/session.js'
import { startWorld, type World } from '../helpers/world.js'

let world: World
let redis: Redis
let prefix: string

beforeAll(async () => {
  world = await startWorld()
  prefix = world.bff.env.BFF_REDIS_PREFIX!
  redis = new Redis(world.bff.env.BFF_REDIS_URL!)
})
afterAll(async () => {
  redis?.disconnect()
  await world?.close()
})

async function keys(): Promise<string[]> {
  return redis.keys(`${prefix}*`)
}

const status = async (jar: CookieJar) => (await spaFetch(world.bff, jar, '/auth/session')).status

describe('sessions in Redis', () => {
  it('hold neither access, refresh nor ID token in any encoding, and every key has a TTL (security model S56, S59)', async () => {
    const r = await login(world.bff.url)
    const s = await sessionOf(world.bff, r.jar)
    expect(s?.data.idToken).toBeUndefined() // kept only for BFF_LOGOUT_ID_TOKEN_HINT
    const ks = await keys()
    expect(ks.length).toBeGreaterThan(0)
    for (const k of ks) {
      // Strings hold entries; sets are the user and IdP-session indexes (of sids).
      const value = (await redis.type(k)) === 'set' ? Buffer.from((await redis.smembers(k)).join(',')) : await redis.getBuffer(k)
      expect(value, k).not.toBeNull()
      expect(k).not.toContain('alice')
      expect(containsAny(value!, [s!.data.accessToken, s!.data.refreshToken!])).toBeUndefined()
      expect(value!.toString('latin1')).not.toContain('eyJ')
      expect(value!.toString('latin1')).not.toContain('alice@example.com')
      expect(await redis.pttl(k), k).toBeGreaterThan(0)
    }
  })

  it('the Redis key names cannot be turned into a working cookie (security model S58)', async () => {
    const r = await login(world.bff.url)
    const s = await sessionOf(world.bff, r.jar)
    const sessionKey = (await keys()).find((k) => k.includes(s!.sid))!
    expect(sessionKey).toBeDefined()
    expect(sessionKey).not.toContain(r.jar.get('__Host-tokenward')!)
    for (const forged of [sessionKey, s!.sid, sessionKey.slice(prefix.length)]) {
      const jar = new CookieJar()
      jar.set('__Host-tokenward', forged, '127.0.0.1')
      expect(await status(jar)).toBe(401)
    }
  })

  it('two sessions with swapped entries both fail, never a cross-login (security model S57)', async () => {
    const a = await login(world.bff.url, { username: 'alice' })
    const b = await login(world.bff.url, { username: 'bob' })
    const sa = (await sessionOf(world.bff, a.jar))!
    const sb = (await sessionOf(world.bff, b.jar))!
    const ka = `${prefix}s:{${sa.sid}}`
    const kb = `${prefix}s:{${sb.sid}}`
    const [va, vb] = await Promise.all([redis.getBuffer(ka), redis.getBuffer(kb)])
    await redis.set(ka, vb!, 'PX', 60_000)
    await redis.set(kb, va!, 'PX', 60_000)
    expect(await status(a.jar)).toBe(401)
    expect(await status(b.jar)).toBe(401)
  })

  it('an unknown or forged cookie is "no session" and creates no Redis key; a tampered seal is 401, not 500 (security model S18)', async () => {
    const before = (await keys()).length
    const r = await login(world.bff.url)
    const cookie = r.jar.get('__Host-tokenward')!
    const after = (await keys()).length
    for (const bad of ['x', 'Fe26.2*1*garbage', `${cookie.slice(0, -4)}AAAA`, cookie.replace(/\*(\w)/, '*Z'), 'a'.repeat(5000)]) {
      const jar = new CookieJar()
      jar.set('__Host-tokenward', bad, '127.0.0.1')
      const res = await spaFetch(world.bff, jar, '/auth/session')
      expect(res.status).toBe(401)
      expect(await res.json()).toMatchObject({ error: 'login_required' })
    }
    expect((await keys()).length).toBe(after)
    expect(after).toBeGreaterThan(before)
  })

  it('session fixation: a planted cookie is replaced by a new random one at login (security model S17)', async () => {
    const jar = new CookieJar()
    jar.set('__Host-tokenward', 'attacker-chosen-value', '127.0.0.1')
    await login(world.bff.url, { jar })
    const issued = jar.get('__Host-tokenward')!
    expect(issued).not.toBe('attacker-chosen-value')
    expect(await status(jar)).toBe(200)
    const planted = new CookieJar()
    planted.set('__Host-tokenward', 'attacker-chosen-value', '127.0.0.1')
    expect(await status(planted)).toBe(401)
  })

  it('logging in again replaces the previous session; its cookie stops working', async () => {
    const jar = new CookieJar()
    await login(world.bff.url, { jar })
    const old = jar.get('__Host-tokenward')!
    const oldSid = (await sessionOf(world.bff, jar))!.sid
    await login(world.bff.url, { jar })
    expect(jar.get('__Host-tokenward')).not.toBe(old)
    expect((await sessionOf(world.bff, jar))!.sid).not.toBe(oldSid)
    const replay = new CookieJar()
    replay.set('__Host-tokenward', old, '127.0.0.1')
    expect(await status(replay)).toBe(401)
  })

  it('session ids are unique, random and carry no data (security model S16)', async () => {
    const sids = new Set<string>()
    for (let i = 0; i < 20; i++) {
      const r = await login(world.bff.url, { username: 'carol' })
      sids.add((await sessionOf(world.bff, r.jar))!.sid)
    }
    expect(sids.size).toBe(20)
    for (const sid of sids) expect(sid).not.toContain('carol')
  })

  it('the default logout URL carries client_id and post_logout_redirect_uri, never a token', async () => {
    const r = await login(world.bff.url)
    const out = await spaFetch(world.bff, r.jar, '/auth/logout', { method: 'POST' })
    const url = new URL(((await out.json()) as { redirectTo: string }).redirectTo)
    expect(url.searchParams.get('client_id')).toBeTruthy()
    expect(url.searchParams.get('post_logout_redirect_uri')).toBe(`${world.bff.url}/`)
    expect(url.searchParams.has('id_token_hint')).toBe(false)
    expect(url.href).not.toContain('eyJ')
  })
})

describe('encryption key rotation (security model S60)', () => {
  it('old sessions still open after a new key is added first; new writes use the new key; a retired key gives a clean 401', async () => {
    const r = await login(world.bff.url)
    const oldKeys = world.bff.env.BFF_ENCRYPTION_KEYS!
    const newKey = `k2:${randomBytes(32).toString('base64')}`
    const rotated = await world.startInstance({ BFF_ENCRYPTION_KEYS: `${newKey},${oldKeys}` })
    expect((await spaFetch(rotated, r.jar, '/auth/session')).status).toBe(200)

    // New writes name the new key id, and an instance without that key cannot open them.
    const { session } = await rotated.server.deps.sessions.create({ ...(await sessionOf(world.bff, r.jar))!.data, createdAt: Date.now() })
    const raw = (await redis.getBuffer(`${prefix}s:{${session.sid}}`))!
    const header = raw.subarray(raw.indexOf(':', raw.indexOf(':') + 1) + 1)
    expect(header.subarray(0, 4)).toEqual(Buffer.from([1, 2, ...Buffer.from('k2')]))
    expect(await rotated.server.deps.sessions.loadBySid(session.sid, { slide: false })).not.toBeNull()
    expect(await world.bff.server.deps.sessions.loadBySid(session.sid, { slide: false })).toBeNull()

    const retired = await world.startInstance({ BFF_ENCRYPTION_KEYS: newKey })
    const res = await spaFetch(retired, r.jar, '/auth/session')
    expect(res.status).toBe(401)
    expect(await res.json()).toMatchObject({ error: 'login_required' })
  })
})
