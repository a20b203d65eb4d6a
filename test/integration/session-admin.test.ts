import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { doctor, listSessions, revokeSessions } from '../../src/commands.js'
import { loadConfig } from '../../src/config.js'
import type { TestBff } from '../helpers/bff.js'
import { CookieJar, login } from '../helpers/login.js'
import { freePort } from '../helpers/ports.js'
import { sessionOf, spaFetch } from '../helpers/session.js'
import { openEvents } from '../helpers/sse.js'
import { startWorld, type World } from '../helpers/world.js'

let world: World
let other: TestBff

beforeAll(async () => {
  world = await startWorld({ env: { BFF_SESSION_IDLE_TIMEOUT: '3' } })
  other = await world.startInstance()
})
afterAll(() => world?.close())

describe('GET /auth/events tells open tabs their session ended', () => {
  it('a logout on another instance arrives as session_ended within a second, and the stream closes', async () => {
    const { jar } = await login(world.bff.url)
    const stream = await openEvents(world.bff, jar)
    expect(stream.res.status).toBe(200)
    expect(stream.res.headers.get('content-type')).toContain('text/event-stream')
    await stream.waitFor('session', 2000)
    const t0 = Date.now()
    expect((await spaFetch(other, jar, '/auth/logout', { method: 'POST' })).status).toBe(200)
    const ended = await stream.waitFor('session_ended', 1000)
    expect(ended.at - t0).toBeLessThan(1000)
    expect(JSON.parse(ended.data)).toEqual({ reason: 'logout' })
    await stream.done
    expect(stream.isClosed()).toBe(true)
  })

  it('a back-channel logout and an administrator revoke arrive too', async () => {
    const a = await login(world.bff.url, { username: 'hank' })
    const streamA = await openEvents(other, a.jar)
    await streamA.waitFor('session', 2000)
    const sid = (await sessionOf(world.bff, a.jar))!.sid
    expect(await revokeSessions(world.bff.config, { sid }, () => {})).toBe(0)
    expect(JSON.parse((await streamA.waitFor('session_ended', 1000)).data)).toEqual({ reason: 'session_revoked' })
    streamA.close()
  })

  it('expiry arrives as session_expired; reading the stream does not slide the session', async () => {
    const { jar } = await login(world.bff.url)
    const stream = await openEvents(world.bff, jar)
    await stream.waitFor('session', 2000)
    const ended = await stream.waitFor('session_ended', 5000)
    expect(JSON.parse(ended.data)).toEqual({ reason: 'session_expired' })
    expect((await spaFetch(world.bff, jar, '/auth/session')).status).toBe(401)
  })

  it('one session holds at most 16 streams on an instance: the 17th gets 429, a closed one frees its place', async () => {
    const { jar } = await login(world.bff.url)
    const streams = await Promise.all(Array.from({ length: 16 }, () => openEvents(world.bff, jar)))
    expect(streams.map((s) => s.res.status)).toEqual(Array(16).fill(200))
    const over = await openEvents(world.bff, jar)
    expect(over.res.status).toBe(429)
    expect(over.res.headers.get('retry-after')).toBeTruthy()
    expect(await over.res.json()).toMatchObject({ error: 'rate_limited' })
    // Another session is not affected.
    const other = await openEvents(world.bff, (await login(world.bff.url)).jar)
    expect(other.res.status).toBe(200)
    other.close()
    streams[0]!.close()
    await streams[0]!.done
    let again = await openEvents(world.bff, jar)
    for (let i = 0; i < 50 && again.res.status === 429; i++) {
      // The server notices the closed stream a moment after the client drops it.
      await new Promise((r) => setTimeout(r, 20))
      again = await openEvents(world.bff, jar)
    }
    expect(again.res.status).toBe(200)
    for (const s of [...streams, again]) s.close()
  })

  it('needs a session, and refuses cross-site requests', async () => {
    const anon = await openEvents(world.bff, new CookieJar())
    expect(anon.res.status).toBe(401)
    const { jar } = await login(world.bff.url)
    const cross = await openEvents(world.bff, jar, { 'sec-fetch-site': 'cross-site' })
    expect(cross.res.status).toBe(403)
    const foreign = await openEvents(world.bff, jar, { origin: 'https://evil.example' })
    expect(foreign.res.status).toBe(403)
  })
})

describe('tokenward sessions list / revoke', () => {
  it('lists a user’s sessions without tokens, and revoking by sub ends them on every instance and at the IdP', async () => {
    const a1 = await login(world.bff.url, { username: 'ivy' })
    const a2 = await login(world.bff.url, { username: 'ivy' })
    const b = await login(world.bff.url, { username: 'jack' })
    const s1 = (await sessionOf(world.bff, a1.jar))!
    const lines: string[] = []
    expect(await listSessions(world.bff.config, 'ivy', true, (l) => lines.push(l))).toBe(0)
    const rows = lines.map((l) => JSON.parse(l) as Record<string, string | boolean>)
    expect(rows.map((r) => r.sid).sort()).toEqual([s1.sid, (await sessionOf(world.bff, a2.jar))!.sid].sort())
    for (const r of rows) {
      expect(Object.keys(r).sort()).toEqual(['created', 'deviceBound', 'expires', 'idleExpires', 'lastUsed', 'sid', 'sub'])
      // No browser here registered a device key (security model S84).
      expect(r.deviceBound).toBe(false)
    }
    expect(lines.join('\n')).not.toContain(s1.data.accessToken)
    expect(lines.join('\n')).not.toContain(s1.data.refreshToken!)

    const revocations = world.idp.counts.revocations
    const out: string[] = []
    expect(await revokeSessions(world.bff.config, { sub: 'ivy' }, (l) => out.push(l))).toBe(0)
    expect(out.filter((l) => l.startsWith('revoked '))).toHaveLength(2)
    expect(world.idp.counts.revocations).toBe(revocations + 2)
    for (const bff of [world.bff, other]) {
      expect((await spaFetch(bff, a1.jar, '/auth/session')).status).toBe(401)
      expect((await spaFetch(bff, a2.jar, '/auth/session')).status).toBe(401)
      expect((await spaFetch(bff, b.jar, '/auth/session')).status).toBe(200)
    }
    const after: string[] = []
    await listSessions(world.bff.config, 'ivy', false, (l) => after.push(l))
    expect(after[0]).toBe('0 session(s) for sub ivy')
  })

  it('revoking an unknown sid says so and exits 1', async () => {
    const out: string[] = []
    expect(await revokeSessions(world.bff.config, { sid: 'no-such-session' }, (l) => out.push(l))).toBe(1)
    expect(out).toContain('no matching session')
  })
})

describe('tokenward doctor', () => {
  it('reports Redis and what the IdP supports', async () => {
    const out: string[] = []
    expect(await doctor(world.bff.config, (l) => out.push(l))).toBe(0)
    const text = out.join('\n')
    expect(text).toMatch(/^PASS +redis: write, read and delete/m)
    expect(text).toMatch(/^PASS +PKCE S256 \[advertised\]/m)
    expect(text).toMatch(/^PASS +revocation \(RFC 7009\): \S+ accepted the client and answered a made-up token with 200/m)
    expect(text).toMatch(/^PASS +back-channel logout \[advertised\]: supported/m)
    expect(text).toMatch(/^PASS +iss in authorization response \(RFC 9207\) \[advertised\]/m)
  })

  it('proves client authentication, each upstream and Redis, and warns that /metrics is public', async () => {
    const out: string[] = []
    expect(await doctor(world.bff.config, (l) => out.push(l))).toBe(0)
    const text = out.join('\n')
    expect(text).toMatch(
      /^PASS +client authentication: client_secret_basic as \S+ accepted at http:\/\/\S+ \(a made-up code got invalid_grant\)$/m,
    )
    expect(text).toMatch(new RegExp(`^PASS +upstream /api: ${world.upstream.url.replace(/\/.*$/, '').replace(/[.]/g, '\\.')}`, 'm'))
    expect(text).toMatch(/^PASS +redis: write, read and delete in \d+ ms \(standalone, 127\.0\.0\.1:\d+\)$/m)
    expect(text).toMatch(/^WARN +metrics exposure: \/metrics is public on the main listener .*BFF_METRICS_LISTEN/m)
    const listening: string[] = []
    await doctor(loadConfig({ ...world.bff.env, BFF_METRICS_LISTEN: '127.0.0.1:9464' }), (l) => listening.push(l))
    expect(listening.join('\n')).toMatch(/^PASS +metrics exposure: \/metrics on 127\.0\.0\.1:9464 only/m)
  })

  it('fails on a wrong client secret, naming client authentication and revocation', async () => {
    const config = loadConfig({ ...world.bff.env, BFF_CLIENT_SECRET: `${world.clientSecret}x` })
    const out: string[] = []
    expect(await doctor(config, (l) => out.push(l))).toBe(1)
    const fail = out.filter((l) => l.startsWith('FAIL'))
    // The revocation endpoint refuses the same credentials: logout could not revoke either.
    expect(fail).toHaveLength(2)
    expect(fail[1]).toMatch(/^FAIL +revocation \(RFC 7009\): \S+ refused the client \(invalid_client\): logout cannot revoke/)
    expect(fail[0]).toMatch(/^FAIL +client authentication: client_secret_basic as \S+ refused at \S+: invalid_client .*BFF_CLIENT_SECRET/)
  })

  it('fails on a route whose upstream nobody listens on, and --json is one object with every check', async () => {
    const deadPort = await freePort()
    const routes = JSON.stringify([
      { prefix: '/api', upstream: world.upstream.url, token: 'user' },
      { prefix: '/dead', upstream: `http://127.0.0.1:${deadPort}/v1`, token: 'user' },
    ])
    const config = loadConfig({ ...world.bff.env, BFF_ROUTES: routes })
    const out: string[] = []
    expect(await doctor(config, (l) => out.push(l), { json: true })).toBe(1)
    expect(out).toHaveLength(1)
    const report = JSON.parse(out[0]!) as { ok: boolean; checks: Array<{ name: string; status: string; basis: string; detail: string }> }
    expect(report.ok).toBe(false)
    for (const c of report.checks) {
      expect(['pass', 'warn', 'fail']).toContain(c.status)
      expect(['proven', 'advertised']).toContain(c.basis)
    }
    expect(report.checks.filter((c) => c.status === 'fail')).toEqual([
      {
        name: 'upstream /dead',
        status: 'fail',
        basis: 'proven',
        detail: expect.stringMatching(new RegExp(`^http://127\\.0\\.0\\.1:${deadPort} unreachable: .*ECONNREFUSED`)),
      },
    ])
    expect(report.checks.find((c) => c.name === 'upstream /api')?.status).toBe('pass')
    expect(report.checks.find((c) => c.name === 'client authentication')?.status).toBe('pass')
  })

  it('fails, naming what is down, when Redis and the IdP do not answer', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`
    const config = loadConfig({ ...world.bff.env, BFF_REDIS_URL: `redis://127.0.0.1:${await freePort()}`, BFF_ISSUER: dead })
    const out: string[] = []
    expect(await doctor(config, (l) => out.push(l))).toBe(1)
    const redisPort = /redis:\/\/127\.0\.0\.1:(\d+)/.exec(config.redis.url)![1]!
    // Host and cause, not "The session store is unavailable".
    expect(out.find((l) => l.startsWith('FAIL  redis'))).toMatch(
      new RegExp(
        `^FAIL  redis: 127\\.0\\.0\\.1:${redisPort} \\(standalone\\): cannot connect to 127\\.0\\.0\\.1:${redisPort}: .*ECONNREFUSED`,
      ),
    )
    expect(out.some((l) => l.startsWith('FAIL  idp discovery'))).toBe(true)
  })
})

describe('revocation when the IdP is down (security model S51)', () => {
  it('logout still ends the local session at once, and the revocation is retried until the IdP answers', async () => {
    const { jar } = await login(world.bff.url, { username: 'liam' })
    const before = world.idp.counts.revocations
    await world.idp.stop()
    let res: Response
    try {
      res = await spaFetch(world.bff, jar, '/auth/logout', { method: 'POST' })
      expect(res.status).toBe(200)
      expect((await spaFetch(world.bff, jar, '/auth/session')).status).toBe(401)
      expect(world.bff.server.deps.terminator.pendingRetries).toBeGreaterThan(0)
    } finally {
      await world.idp.start()
    }
    // The IdP counts the revocation before tokenward has read its answer and
    // logged it: wait for both.
    const revokedLogged = () => world.bff.logs.some((l) => l.includes('refresh token revoked after retry'))
    const deadline = Date.now() + 8000
    while ((world.idp.counts.revocations === before || !revokedLogged()) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100))
    expect(world.idp.counts.revocations).toBe(before + 1)
    expect(revokedLogged()).toBe(true)
  })
})
