import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { listSessions } from '../../src/commands.js'
import { handshakeHead } from '../helpers/websocket.js'
import { auditEvents, type TestBff } from '../helpers/bff.js'
import { deviceKey, parseChallenge, parseRegistration, proof, type DeviceKey } from '../helpers/dbsc-client.js'
import { CookieJar, completeAtIdp, startLogin } from '../helpers/login.js'
import { spaFetch } from '../helpers/session.js'
import { startWorld, type World } from '../helpers/world.js'

// Device Bound Session Credentials (W3C webappsec-dbsc; security model
// S84-S87) driven by a Node client that behaves like the browser: a
// non-extractable WebCrypto key, the registration offered at login, refreshes
// answered with proofs. tokenward's public URL is https (as behind a TLS
// proxy); the test talks plain http to its port.

/** Logs in; returns the jar and the Secure-Session-Registration header of the first /auth/session. */
async function loginAt(bff: TestBff): Promise<{ jar: CookieJar; registration: string | null }> {
  const jar = new CookieJar()
  const authorizationUrl = await startLogin(bff.url, jar)
  const callbackUrl = new URL(await completeAtIdp(authorizationUrl, jar))
  // The IdP redirects to the https public URL: the test reaches the same port over http.
  const res = await fetch(`${bff.url}${callbackUrl.pathname}${callbackUrl.search}`, {
    headers: { cookie: jar.header(bff.url) },
    redirect: 'manual',
  })
  expect(res.status).toBe(303)
  jar.store(bff.url, res.headers)
  // Not on the callback's redirect: the browser would send the registration without the SameSite cookie.
  expect(res.headers.get('secure-session-registration')).toBeNull()
  const session = await spaFetch(bff, jar, '/auth/session')
  expect(session.status).toBe(200)
  return { jar, registration: session.headers.get('secure-session-registration') }
}

/** A POST the browser makes to a DBSC endpoint. */
function dbscPost(bff: TestBff, cookie: string, path: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${bff.url}${path}`, {
    method: 'POST',
    headers: { cookie, origin: bff.config.publicOrigin, 'sec-fetch-site': 'same-origin', ...headers },
    redirect: 'manual',
  })
}

async function register(bff: TestBff, jar: CookieJar, registration: string | null, key: DeviceKey): Promise<Response> {
  const r = parseRegistration(registration)
  const jwt = await proof(key, { jti: r.challenge, authorization: r.authorization }, { withJwk: true })
  const res = await dbscPost(bff, jar.header(bff.url), r.path, { 'secure-session-response': jwt })
  jar.store(bff.url, res.headers)
  return res
}

/** The refresh dance: 403 + challenge, then the proof. */
async function refresh(bff: TestBff, jar: CookieJar, key: DeviceKey, sid: string): Promise<Response> {
  const first = await dbscPost(bff, jar.header(bff.url), '/auth/dbsc/refresh', { 'sec-secure-session-id': sid })
  expect(first.status).toBe(403)
  const { challenge, id } = parseChallenge(first.headers.get('secure-session-challenge'))
  expect(id).toBe(sid)
  const res = await dbscPost(bff, jar.header(bff.url), '/auth/dbsc/refresh', {
    'sec-secure-session-id': sid,
    'secure-session-response': await proof(key, { jti: challenge }),
  })
  jar.store(bff.url, res.headers)
  return res
}

/** The status line of a raw WebSocket handshake (RFC 6455 §4.1) as a browser sends it. */
async function handshakeStatusLine(bff: TestBff, path: string, cookie: string): Promise<string> {
  const { port, host } = new URL(bff.url)
  const head = await handshakeHead(Number(port), path, { Host: host, Origin: bff.config.publicOrigin, Cookie: cookie })
  return head.split('\r\n')[0]!
}

const BOUND = '__Host-tokenward-bound'
const SESSION = '__Host-tokenward'

describe('device-bound sessions', () => {
  let world: World
  let other: TestBff
  beforeAll(async () => {
    world = await startWorld({
      publicScheme: 'https',
      env: { BFF_DBSC: 'auto', BFF_DBSC_COOKIE_TTL: '3', BFF_DBSC_MAX_REJECTIONS: '3' },
      // A bound cookie of seconds, to watch a stolen one die; production cannot go below 130 s.
      configOptions: { dbscMinCookieTtl: 1 },
      routes: [
        { prefix: '/api', upstream: '{upstream}', token: 'user' },
        { prefix: '/ws', upstream: '{upstream}/socket', token: 'user', websocket: true },
      ],
    })
    other = await world.startInstance()
  })
  afterAll(() => world?.close())

  it('login offers registration; registering binds the session and sets a short-lived bound cookie', async () => {
    const { bff } = world
    const { jar, registration } = await loginAt(bff)
    const offer = parseRegistration(registration)
    // Offered once a minute per session and instance, not on every poll.
    expect((await spaFetch(bff, jar, '/auth/session')).headers.get('secure-session-registration')).toBeNull()
    expect(offer.algs).toEqual(['ES256', 'RS256'])
    expect(offer.path).toBe('/auth/dbsc/register')
    expect(offer.challenge).toMatch(/^[\w-]{43}$/)
    expect(offer.authorization).toMatch(/^[\w-]{32}$/)
    const before = (await (await spaFetch(bff, jar, '/auth/session')).json()) as { deviceBound: boolean; sid: string }
    expect(before.deviceBound).toBe(false)

    const res = await register(bff, jar, registration, await deviceKey())
    expect(res.status).toBe(200)
    expect(res.headers.get('cache-control')).toContain('no-store')
    const body = (await res.json()) as Record<string, unknown>
    expect(body).toMatchObject({
      session_identifier: before.sid,
      refresh_url: '/auth/dbsc/refresh',
      scope: { origin: bff.config.publicOrigin, include_site: false },
      credentials: [{ type: 'cookie', name: BOUND, attributes: 'Path=/; HttpOnly; Secure; SameSite=Strict' }],
    })
    const excluded = (body.scope as { scope_specification: Array<{ type: string; path: string }> }).scope_specification
    expect(excluded.every((r) => r.type === 'exclude')).toBe(true)
    expect(excluded.map((r) => r.path)).toEqual(expect.arrayContaining(['/auth/login', '/auth/callback', '/auth/dbsc', '/healthz']))
    const setCookie = res.headers.getSetCookie().find((c) => c.startsWith(`${BOUND}=`))
    expect(setCookie).toMatch(/Max-Age=3;/)
    expect(parseChallenge(res.headers.get('secure-session-challenge')).id).toBe(before.sid)

    const after = (await (await spaFetch(bff, jar, '/auth/session')).json()) as { deviceBound: boolean }
    expect(after.deviceBound).toBe(true)
    // What `tokenward sessions list --json` prints (the CLI's command, in-process).
    const lines: string[] = []
    expect(await listSessions(bff.config, 'alice', true, (l) => lines.push(l))).toBe(0)
    const rows = lines.map((l) => JSON.parse(l) as { sid: string; deviceBound: boolean })
    expect(rows.find((r) => r.sid === before.sid)?.deviceBound).toBe(true)
    expect((await spaFetch(bff, jar, '/api/x')).status).toBe(200)
    expect(await handshakeStatusLine(bff, '/ws', jar.header(bff.url))).toMatch(/^HTTP\/1\.1 101 /)
    const events = auditEvents(bff.logs).filter((e) => e.event === 'dbsc_registered' && e.sid === before.sid)
    expect(events).toHaveLength(1)
    expect(JSON.stringify(events)).not.toContain(jar.get(SESSION))
  })

  it('a bound session without its bound cookie gets 401 everywhere it needs the session, audited', async () => {
    const { bff } = world
    const { jar, registration } = await loginAt(bff)
    expect((await register(bff, jar, registration, await deviceKey())).status).toBe(200)
    jar.set(BOUND, undefined, '127.0.0.1')
    const api = await spaFetch(bff, jar, '/api/x')
    expect(api.status).toBe(401)
    expect(await api.json()).toMatchObject({ error: 'login_required', message: expect.stringContaining('device') as string })
    expect((await spaFetch(bff, jar, '/auth/session')).status).toBe(401)
    const events = await fetch(`${bff.url}/auth/events`, { headers: { cookie: jar.header(bff.url) } })
    expect(events.status).toBe(401)
    expect(await handshakeStatusLine(bff, '/ws', jar.header(bff.url))).toMatch(/^HTTP\/1\.1 401 /)
    expect(auditEvents(bff.logs).some((e) => e.event === 'dbsc_cookie_refused' && e.reason === 'bound cookie missing')).toBe(true)
    // A bound cookie of another session does not do either.
    const second = await loginAt(bff)
    expect((await register(bff, second.jar, second.registration, await deviceKey())).status).toBe(200)
    jar.set(BOUND, second.jar.get(BOUND), '127.0.0.1')
    expect((await spaFetch(bff, jar, '/api/x')).status).toBe(401)
  })

  it('refresh: 403 with a challenge, then the proof gets a new bound cookie; the challenge sent ahead spares the 403', async () => {
    const { bff } = world
    const key = await deviceKey()
    const { jar, registration } = await loginAt(bff)
    const reg = await register(bff, jar, registration, key)
    const sid = (reg.headers.get('secure-session-challenge') ?? '').replace(/^.*id="([^"]+)"$/, '$1')
    const ahead = parseChallenge(reg.headers.get('secure-session-challenge')).challenge
    jar.set(BOUND, undefined, '127.0.0.1')
    const res = await refresh(bff, jar, key, sid)
    expect(res.status).toBe(200)
    expect(((await res.json()) as { session_identifier: string }).session_identifier).toBe(sid)
    expect(jar.get(BOUND)).toBeDefined()
    expect((await spaFetch(bff, jar, '/api/x')).status).toBe(200)
    // The challenge sent with the registration answer, without a 403.
    const direct = await dbscPost(bff, jar.header(bff.url), '/auth/dbsc/refresh', {
      'sec-secure-session-id': sid,
      'secure-session-response': await proof(key, { jti: ahead }),
    })
    expect(direct.status).toBe(200)
    // The same proof again: the challenge is used up; a new one is offered.
    const replay = await dbscPost(bff, jar.header(bff.url), '/auth/dbsc/refresh', {
      'sec-secure-session-id': sid,
      'secure-session-response': await proof(key, { jti: ahead }),
    })
    expect(replay.status).toBe(403)
    expect(replay.headers.get('secure-session-challenge')).toMatch(/^"[\w-]{43}";id="/)
  })

  it('a registration is written under the refresh lease: it waits for a refresh in flight, and never hides a journal it left (security model S35)', async () => {
    const { bff } = world
    const { sessions, store } = bff.server.deps
    const version = async (sid: string) => (await sessions.loadBySid(sid, { slide: false }))!.version
    const sidOf = async (jar: CookieJar) => ((await (await spaFetch(bff, jar, '/auth/session?slide=false')).json()) as { sid: string }).sid

    // A refresh elsewhere holds the lease and is redeeming this version's
    // refresh token; it finishes normally: the registration goes through after it.
    const first = await loginAt(bff)
    const a = await sidOf(first.jar)
    const v = await version(a)
    expect((await store.leases.acquire(a, 'refresh-elsewhere', 10_000)).acquired).toBe(true)
    expect(await store.leases.writeJournal(a, 'refresh-elsewhere', v, 60_000)).toBe(true)
    const pending = register(bff, first.jar, first.registration, await deviceKey())
    await sleep(300)
    expect(await version(a)).toBe(v)
    await store.leases.clearJournal(a)
    await store.leases.release(a, 'refresh-elsewhere')
    expect((await pending).status).toBe(200)
    expect(await version(a)).toBe(v + 1)

    // The holder dies after writing its journal: the registration does not
    // write over the possibly spent refresh token, and the journal stays for
    // the next refresh to find.
    const second = await loginAt(bff)
    const b = await sidOf(second.jar)
    const w = await version(b)
    expect((await store.leases.acquire(b, 'refresh-elsewhere', 10_000)).acquired).toBe(true)
    expect(await store.leases.writeJournal(b, 'refresh-elsewhere', w, 60_000)).toBe(true)
    const refused = register(bff, second.jar, second.registration, await deviceKey())
    await sleep(300)
    await store.leases.release(b, 'refresh-elsewhere')
    expect((await refused).status).toBe(401)
    expect(await version(b)).toBe(w)
    const probe = await store.leases.acquire(b, 'probe', 1000)
    expect(probe.journal).toBe(w)
    await store.leases.release(b, 'probe')
  })

  it('refuses registration proofs with a foreign challenge, a wrong authorization, a replay or a second key', async () => {
    const { bff } = world
    const a = await loginAt(bff)
    const b = await loginAt(bff)
    const key = await deviceKey()
    const ra = parseRegistration(a.registration)
    const rb = parseRegistration(b.registration)
    const post = (jar: CookieJar, payload: Record<string, unknown>) =>
      proof(key, payload, { withJwk: true }).then((jwt) =>
        dbscPost(bff, jar.header(bff.url), '/auth/dbsc/register', { 'secure-session-response': jwt }),
      )
    // b's challenge presented with a's cookie (and b's authorization): refused, and used up.
    expect((await post(a.jar, { jti: rb.challenge, authorization: rb.authorization })).status).toBe(400)
    expect((await post(b.jar, { jti: rb.challenge, authorization: rb.authorization })).status).toBe(400)
    // a's challenge with a wrong authorization.
    expect((await post(a.jar, { jti: ra.challenge, authorization: rb.authorization })).status).toBe(400)
    // A fresh login, registered once; the same proof again, then a second registration.
    const c = await loginAt(bff)
    const rc = parseRegistration(c.registration)
    const jwt = await proof(key, { jti: rc.challenge, authorization: rc.authorization }, { withJwk: true })
    expect((await dbscPost(bff, c.jar.header(bff.url), '/auth/dbsc/register', { 'secure-session-response': jwt })).status).toBe(200)
    expect((await dbscPost(bff, c.jar.header(bff.url), '/auth/dbsc/register', { 'secure-session-response': jwt })).status).toBe(400)
    // Cross-site: refused before anything else.
    const cross = await dbscPost(bff, c.jar.header(bff.url), '/auth/dbsc/register', {
      'secure-session-response': jwt,
      origin: 'https://evil.example',
    })
    expect(cross.status).toBe(403)
    expect(auditEvents(bff.logs).filter((e) => e.event === 'dbsc_proof_rejected').length).toBeGreaterThanOrEqual(3)
  })

  it('a thief with copied cookies and no key: works until the bound cookie expires, then 401; its proofs end the session', async () => {
    const { bff } = world
    const { jar, registration } = await loginAt(bff)
    const reg = await register(bff, jar, registration, await deviceKey())
    expect(reg.status).toBe(200)
    const sid = parseChallenge(reg.headers.get('secure-session-challenge')).id
    // The infostealer copies the cookie values and sends them however long it likes (no Max-Age).
    const stolen = `${SESSION}=${jar.get(SESSION)}; ${BOUND}=${jar.get(BOUND)}`
    const copiedAt = Date.now()
    const thief = () => fetch(`${bff.url}/api/x`, { headers: { cookie: stolen, 'x-csrf': '1' } })
    expect((await thief()).status).toBe(200)
    let lastOk = copiedAt
    for (;;) {
      const status = (await thief()).status
      if (status !== 200) {
        expect(status).toBe(401)
        break
      }
      lastOk = Date.now()
      expect(lastOk - copiedAt).toBeLessThan(15_000)
      await new Promise((r) => setTimeout(r, 100))
    }
    const usefulLife = lastOk - copiedAt
    // Bound cookie TTL (3 s) plus the 5 s skew tokenward allows, at most.
    expect(usefulLife).toBeLessThanOrEqual(8_500)
    console.info(`stolen bound cookie useful life with BFF_DBSC_COOKIE_TTL=3: ${usefulLife} ms`)

    // Its refresh attempts: challenges are free, proofs with its own key are refused and counted.
    const thiefKey = await deviceKey()
    for (let i = 1; i <= 3; i++) {
      const first = await dbscPost(bff, stolen, '/auth/dbsc/refresh', { 'sec-secure-session-id': sid })
      expect(first.status).toBe(403)
      const { challenge } = parseChallenge(first.headers.get('secure-session-challenge'))
      const res = await dbscPost(bff, stolen, '/auth/dbsc/refresh', {
        'sec-secure-session-id': sid,
        'secure-session-response': await proof(thiefKey, { jti: challenge }),
      })
      expect(res.status).toBe(401)
    }
    const rejected = auditEvents(bff.logs).filter((e) => e.event === 'dbsc_proof_rejected' && e.sid === sid)
    expect(rejected).toHaveLength(3)
    expect(auditEvents(bff.logs).some((e) => e.event === 'session_revoked' && e.sid === sid)).toBe(true)
    // The session is gone for the victim too (it was stolen): sign in again.
    expect((await dbscPost(bff, stolen, '/auth/dbsc/refresh', { 'sec-secure-session-id': sid })).status).toBe(401)
    const metrics = await (await fetch(`${bff.url}/metrics`)).text()
    expect(metrics).toMatch(/tokenward_dbsc_rejections_total\{reason="proof"\} [1-9]/)
    expect(metrics).toMatch(/tokenward_dbsc_registrations_total [1-9]/)
  })

  it('a challenge from one instance is answered at another; the bound cookie works at both', async () => {
    const { bff } = world
    const key = await deviceKey()
    const { jar, registration } = await loginAt(bff)
    const reg = await register(bff, jar, registration, key)
    const sid = parseChallenge(reg.headers.get('secure-session-challenge')).id
    jar.set(BOUND, undefined, '127.0.0.1')
    const first = await dbscPost(bff, jar.header(bff.url), '/auth/dbsc/refresh', { 'sec-secure-session-id': sid })
    const { challenge } = parseChallenge(first.headers.get('secure-session-challenge'))
    const res = await dbscPost(other, jar.header(other.url), '/auth/dbsc/refresh', {
      'sec-secure-session-id': sid,
      'secure-session-response': await proof(key, { jti: challenge }),
    })
    expect(res.status).toBe(200)
    jar.store(other.url, res.headers)
    expect((await spaFetch(bff, jar, '/api/x')).status).toBe(200)
    expect((await spaFetch(other, jar, '/api/x')).status).toBe(200)
    const metrics = await (await fetch(`${other.url}/metrics`)).text()
    expect(metrics).toMatch(/tokenward_dbsc_refreshes_total 1/)
  })

  it('a session that never registers works exactly as before', async () => {
    const { bff } = world
    const { jar } = await loginAt(bff)
    expect(jar.get(BOUND)).toBeUndefined()
    expect((await spaFetch(bff, jar, '/api/x')).status).toBe(200)
    const s = (await (await spaFetch(bff, jar, '/auth/session')).json()) as { deviceBound: boolean; authenticated: boolean }
    expect(s).toMatchObject({ authenticated: true, deviceBound: false })
    const refresh = await dbscPost(bff, jar.header(bff.url), '/auth/dbsc/refresh', {})
    expect(refresh.status).toBe(400)
  })
})

describe('device-bound sessions off', () => {
  it('BFF_DBSC=off, and http public URLs, offer nothing and serve no endpoint', async () => {
    for (const options of [{ publicScheme: 'https' as const, env: { BFF_DBSC: 'off' } }, { env: { BFF_DBSC: 'auto' } }]) {
      const world = await startWorld(options)
      try {
        const { jar, registration } = await loginAt(world.bff)
        expect(registration).toBeNull()
        expect((await dbscPost(world.bff, jar.header(world.bff.url), '/auth/dbsc/refresh')).status).toBe(404)
        expect((await spaFetch(world.bff, jar, '/api/x')).status).toBe(200)
        if (!options.publicScheme) {
          expect(world.bff.logs.some((l) => l.includes('device-bound sessions are off'))).toBe(true)
        }
      } finally {
        await world.close()
      }
    }
  })
})
