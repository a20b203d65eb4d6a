import { spawn } from 'node:child_process'
import { randomBytes, randomUUID } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { importJWK, SignJWT } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { inject } from 'vitest'
import { loadFrontends } from '../../src/config-file.js'
import { doctorFrontends, revokeSessions } from '../../src/commands.js'
import { reloadFrontends } from '../../src/lifecycle/reload.js'
import { createLogger } from '../../src/log.js'
import { startServer, type RunningServer } from '../../src/server.js'
import { CookieJar, completeAtIdp, login, startLogin } from '../helpers/login.js'
import { hostRequest, startFrontendIdp, type RawAnswer } from '../helpers/frontends.js'
import { freePort } from '../helpers/ports.js'
import type { TestIdp } from '../helpers/test-idp.js'
import type { EchoUpstream } from '../helpers/upstream.js'

// Two frontends served by one process (docs/configuration.md "Several
// frontends"; security model S88-S91): `shop` at http://localhost:<port> and
// `admin` at http://127.0.0.1:<port>, one listener, told apart by Host, each
// at its own dev IdP with its own upstream. Both share the SAME cookie secret
// and encryption keys, so only the frontend binding keeps them apart.

const SHOP_API = 'https://shop-api.example'
const ADMIN_API = 'https://admin-api.example'
const COOKIE = '__Host-tokenward'

interface Side {
  name: string
  url: string
  clientId: string
  idp: TestIdp
  upstream: EchoUpstream
}

let port: number
let shop: Side
let admin: Side
let server: RunningServer
let env: Record<string, string | undefined>
let dir: string
const logs: string[] = []

function frontendYaml(s: Side, prefix = '/api'): string {
  return `
  - name: ${s.name}
    publicUrl: ${s.url}
    issuer: ${s.idp.issuer}
    clientId: ${s.clientId}
    clientSecret: \${${s.name.toUpperCase()}_SECRET}
    cookieSecret: \${COOKIE_SECRET}
    encryptionKeys: \${ENCRYPTION_KEYS}
    routes:
      - { prefix: ${prefix}, upstream: "${s.upstream.url}", token: user }
`
}

function writeConfig(text: string): string {
  const file = join(dir, `frontends-${randomUUID()}.yaml`)
  writeFileSync(file, text)
  return file
}

async function side(name: string, url: string, resource: string): Promise<Side> {
  const { clientId, idp, upstream } = await startFrontendIdp(name, url, resource)
  return { name, url, clientId, idp, upstream }
}

/** A request with the exact Host given, to this process's one listener. */
function raw(path: string, host: string, headers: Record<string, string> = {}, method = 'GET', body?: string): Promise<RawAnswer> {
  return hostRequest(port, path, host, headers, method, body)
}

/** An API call as the SPA makes it, at `s`'s origin with `jar`'s cookies for it. */
async function api(s: Side, jar: CookieJar, path = '/api/echo'): Promise<Response> {
  const url = `${s.url}${path}`
  return fetch(url, { headers: { cookie: jar.header(url), 'x-csrf': '1' }, redirect: 'manual' })
}

beforeAll(async () => {
  port = await freePort()
  dir = mkdtempSync(join(tmpdir(), 'tw-frontends-'))
  ;[shop, admin] = await Promise.all([
    side('shop', `http://localhost:${port}`, SHOP_API),
    side('admin', `http://127.0.0.1:${port}`, ADMIN_API),
  ])
  env = {
    BFF_CONFIG_FILE: writeConfig(`frontends:${frontendYaml(shop!)}${frontendYaml(admin!)}`),
    BFF_REDIS_URL: inject('redisUrl'),
    BFF_REDIS_PREFIX: `tokenward-test:${randomUUID()}:`,
    BFF_ALLOW_HTTP: 'true',
    BFF_HOST: '127.0.0.1',
    BFF_PORT: String(port),
    BFF_LOG_LEVEL: 'debug',
    SHOP_SECRET: `shop-secret-${'x'.repeat(24)}`,
    ADMIN_SECRET: `admin-secret-${'x'.repeat(24)}`,
    COOKIE_SECRET: randomBytes(32).toString('base64url'),
    ENCRYPTION_KEYS: `k1:${randomBytes(32).toString('base64')}`,
  }
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(line)
      cb()
    },
  })
  server = await startServer(loadFrontends(env), { logger: createLogger('debug', sink), store: 'redis', port })
})

afterAll(async () => {
  await server?.close()
  for (const s of [shop, admin]) {
    await s?.upstream.close()
    await s?.idp.close()
  }
})

describe('several frontends in one process (security model S88-S91)', () => {
  it('both log in at once at their own IdPs; each proxies to its own upstream with its own IdP’s token', async () => {
    const [a, b] = await Promise.all([login(shop.url, { username: 'alice' }), login(admin.url, { username: 'alice' })])
    const before = { shop: shop.upstream.requests.length, admin: admin.upstream.requests.length }
    // The upstreams verify issuer, signature and audience: a token of the other IdP would be 401.
    expect((await api(shop, a.jar)).status).toBe(200)
    expect((await api(admin, b.jar)).status).toBe(200)
    expect(shop.upstream.requests.length).toBe(before.shop + 1)
    expect(admin.upstream.requests.length).toBe(before.admin + 1)
    const me = async (s: Side, jar: CookieJar) =>
      (await (await fetch(`${s.url}/auth/session`, { headers: { cookie: jar.header(`${s.url}/`), 'x-csrf': '1' } })).json()) as {
        authenticated?: boolean
      }
    expect(await me(shop, a.jar)).toMatchObject({ authenticated: true })
    expect(await me(admin, b.jar)).toMatchObject({ authenticated: true })
    // Each frontend's sessions are in its own key space.
    const aliceShop = await server.frontends().get('shop')!.sessions.list('sub', 'alice')
    const aliceAdmin = await server.frontends().get('admin')!.sessions.list('sub', 'alice')
    expect(aliceShop.length).toBeGreaterThan(0)
    expect(aliceAdmin.length).toBeGreaterThan(0)
    expect(aliceShop.every((s) => s.data.iss === shop.idp.issuer)).toBe(true)
    expect(aliceAdmin.every((s) => s.data.iss === admin.idp.issuer)).toBe(true)
    // Logs name the frontend.
    const listening = logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'tokenward listening')
    expect(listening.map((l) => l.frontend).sort()).toEqual(['admin', 'shop'])
    const audits = logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.audit === true && l.event === 'login')
    expect(new Set(audits.map((l) => l.frontend))).toEqual(new Set(['shop', 'admin']))
  })

  it('a session cookie of one frontend replayed at the other (same name, same secrets) is no session there: 401', async () => {
    const a = await login(shop.url, { username: 'carol' })
    const cookie = a.jar.get(COOKIE, 'localhost')!
    expect(cookie).toBeTruthy()
    const stolen = new CookieJar()
    stolen.set(COOKIE, cookie, '127.0.0.1')
    const res = await api(admin, stolen)
    expect(res.status).toBe(401)
    expect(await res.json()).toMatchObject({ error: 'login_required' })
    // And at the frontend that issued it, it still works.
    expect((await api(shop, a.jar)).status).toBe(200)
  })

  it('a login transaction of one frontend used at the other’s callback is refused: 400', async () => {
    const jar = new CookieJar()
    const authorizationUrl = await startLogin(shop.url, jar)
    const callbackUrl = new URL(await completeAtIdp(authorizationUrl, jar, 'dave'))
    expect(callbackUrl.origin).toBe(shop.url)
    // The same query and the same transaction cookie, at admin's callback.
    const txName = `${COOKIE}-tx`
    const tx = jar.get(txName, 'localhost')!
    expect(tx).toBeTruthy()
    const res = await raw(`/auth/callback${callbackUrl.search}`, `127.0.0.1:${port}`, { cookie: `${txName}=${tx}` })
    expect(res.status).toBe(400)
    expect(res.headers['set-cookie'] ?? []).not.toEqual(expect.arrayContaining([expect.stringMatching(/^__Host-tokenward=[^;]/)]))
    expect(await server.frontends().get('admin')!.sessions.list('sub', 'dave')).toHaveLength(0)
  })

  it('a back-channel logout token for one frontend ends nothing at the other (issuer and audience checked)', async () => {
    const a = await login(shop.url, { username: 'erin' })
    const b = await login(admin.url, { username: 'erin' })
    const now = Math.floor(Date.now() / 1000)
    const token = async (idp: TestIdp, aud: string) =>
      new SignJWT({
        iss: idp.issuer,
        aud,
        sub: 'erin',
        iat: now,
        exp: now + 120,
        jti: randomUUID(),
        events: { 'http://schemas.openid.net/event/backchannel-logout': {} },
      })
        .setProtectedHeader({ alg: 'RS256', typ: 'logout+jwt', kid: idp.signingKey.kid })
        .sign(await importJWK(idp.signingKey, 'RS256'))
    const post = async (host: string, t: string) =>
      raw('/auth/backchannel-logout', host, { 'content-type': 'application/x-www-form-urlencoded' }, 'POST', `logout_token=${t}`)
    // shop's token (shop's IdP, shop's client) posted to admin: wrong issuer there.
    expect((await post(`127.0.0.1:${port}`, await token(shop.idp, shop.clientId))).status).toBe(400)
    // Signed by admin's IdP but for shop's client: wrong audience at admin (BCL §2.6 step 4).
    expect((await post(`127.0.0.1:${port}`, await token(admin.idp, shop.clientId))).status).toBe(400)
    expect((await api(admin, b.jar)).status).toBe(200)
    expect((await api(shop, a.jar)).status).toBe(200)
    // The real IdP's logout for shop ends shop's session only.
    const s = (await server.frontends().get('shop')!.sessions.list('sub', 'erin'))[0]!
    const client = (await shop.idp.provider.Client.find(shop.clientId)) as unknown as {
      backchannelLogout(sub: string, sid: string): Promise<void>
    }
    await client.backchannelLogout('erin', s.data.idpSid!)
    expect((await api(shop, a.jar)).status).toBe(401)
    expect((await api(admin, b.jar)).status).toBe(200)
  })

  it('sessions revoke --frontend shop --sub x leaves admin’s session of the same sub alone', async () => {
    const a = await login(shop.url, { username: 'frank' })
    const b = await login(admin.url, { username: 'frank' })
    const set = loadFrontends(env)
    const lines: string[] = []
    const shopConfig = set.frontends.find((f) => f.name === 'shop')!.config
    expect(await revokeSessions(shopConfig, { sub: 'frank' }, (l) => lines.push(l))).toBe(0)
    expect(lines.some((l) => l.startsWith('revoked '))).toBe(true)
    expect((await api(shop, a.jar)).status).toBe(401)
    expect((await api(admin, b.jar)).status).toBe(200)
  })

  it('an unknown Host is answered 421 misdirected_request; health probes answer on any Host', async () => {
    for (const host of ['evil.example', `localhost:${port + 1}`, `127.0.0.1`]) {
      const res = await raw('/auth/session', host)
      expect(res.status, host).toBe(421)
      expect(JSON.parse(res.body)).toMatchObject({ error: 'misdirected_request' })
    }
    // A WebSocket handshake for an unknown Host: 421 as well.
    const upgrade = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () =>
        socket.write(
          `GET /api/ws HTTP/1.1\r\nHost: evil.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n\r\n`,
        ),
      )
      let text = ''
      socket.on('data', (c: Buffer) => (text += c.toString('utf8')))
      socket.on('close', () => resolve(text))
      socket.on('error', reject)
    })
    expect(upgrade).toMatch(/^HTTP\/1\.1 421 /)
    expect(upgrade).toContain('"error":"misdirected_request"')
    // No Host at all (HTTP/1.0): no frontend.
    const noHost = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => socket.end('GET /auth/session HTTP/1.0\r\n\r\n'))
      let text = ''
      socket.on('data', (c: Buffer) => (text += c.toString('utf8')))
      socket.on('end', () => resolve(text))
      socket.on('error', reject)
    })
    expect(noHost).toMatch(/^HTTP\/1\.1 421 /)
    // Host names are case-insensitive (RFC 9110 §7.2): served by shop (no session: 401 from the frontend).
    expect(JSON.parse((await raw('/auth/session', `LOCALHOST:${port}`)).body)).toMatchObject({ authenticated: false })
    // A kubelet probes with the pod IP as Host.
    expect((await raw('/healthz', '10.1.2.3:3000')).status).toBe(200)
    const ready = await raw('/readyz', '10.1.2.3:3000')
    expect(ready.status).toBe(200)
    expect(JSON.parse(ready.body)).toEqual({ status: 'ready' })
  })

  it('metrics: one exposition, each frontend’s series labelled, every HELP/TYPE once', async () => {
    const res = await raw('/metrics', '10.1.2.3:3000')
    expect(res.status).toBe(200)
    const text = res.body
    expect(text).toMatch(/tokenward_http_requests_total\{[^}]*frontend="shop"/)
    expect(text).toMatch(/tokenward_http_requests_total\{[^}]*frontend="admin"/)
    expect(text).toMatch(/^process_cpu_user_seconds_total /m)
    const help = text.split('\n').filter((l) => l.startsWith('# HELP '))
    const type = text.split('\n').filter((l) => l.startsWith('# TYPE '))
    expect(new Set(help).size).toBe(help.length)
    expect(new Set(type.map((l) => l.split(' ')[2])).size).toBe(type.length)
    expect(help.some((l) => l.startsWith('# HELP tokenward_http_requests_total '))).toBe(true)
  })

  it('reload: a bad file is refused with its reasons and the running frontends kept; adding a third keeps the first two’s sessions', async () => {
    const a = await login(shop.url, { username: 'grace' })
    const b = await login(admin.url, { username: 'grace' })
    const logger = server.deps.logger
    const bad = writeConfig(`frontends:${frontendYaml(shop)}${frontendYaml(admin).replace('clientId:', 'clientld:')}`)
    expect(await reloadFrontends(server, { ...env, BFF_CONFIG_FILE: bad }, logger, 'test')).toBe(false)
    expect(logs.some((l) => l.includes('configuration reload refused') && l.includes('clientld is not a tokenward setting'))).toBe(true)
    expect([...server.frontends().keys()]).toEqual(['shop', 'admin'])
    expect((await api(admin, b.jar)).status).toBe(200)

    const third = { ...shop, name: 'third', url: `http://third.localhost:${port}` }
    const good = writeConfig(`frontends:${frontendYaml(shop)}${frontendYaml(admin)}${frontendYaml(third, '/third')}`)
    const shopDeps = server.frontends().get('shop')
    expect(await reloadFrontends(server, { ...env, BFF_CONFIG_FILE: good, THIRD_SECRET: 'x'.repeat(32) }, logger, 'test')).toBe(true)
    expect([...server.frontends().keys()]).toEqual(['shop', 'admin', 'third'])
    // Unchanged frontends keep their deps (and caches); sessions survive.
    expect(server.frontends().get('shop')).toBe(shopDeps)
    expect((await api(shop, a.jar)).status).toBe(200)
    expect((await api(admin, b.jar)).status).toBe(200)
    // The third frontend is served, and shop's cookie is no session there.
    const at3 = await raw('/auth/session', `third.localhost:${port}`, { cookie: `${COOKIE}=${a.jar.get(COOKIE, 'localhost')!}` })
    expect(at3.status).toBe(401)
    expect(JSON.parse(at3.body)).toMatchObject({ authenticated: false })

    // Changing admin (rebuilt) and removing third: admin's sessions survive, third's host is 421 again.
    const changed = writeConfig(`frontends:${frontendYaml(shop)}${frontendYaml(admin)}    sessionIdleTimeout: 1200\n`)
    const adminDeps = server.frontends().get('admin')
    expect(await reloadFrontends(server, { ...env, BFF_CONFIG_FILE: changed }, logger, 'test')).toBe(true)
    expect([...server.frontends().keys()]).toEqual(['shop', 'admin'])
    expect(server.frontends().get('admin')).not.toBe(adminDeps)
    expect(server.frontends().get('admin')!.config.session.idleTimeout).toBe(1200)
    expect(server.frontends().get('shop')).toBe(shopDeps)
    expect((await api(admin, b.jar)).status).toBe(200)
    expect((await api(shop, a.jar)).status).toBe(200)
    expect((await raw('/auth/session', `third.localhost:${port}`)).status).toBe(421)
  })

  it('the CLI: check-config reads the file, sessions need --frontend with several, and revoke --frontend acts on that one only', async () => {
    const cli = (args: string[]) =>
      new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], {
          cwd: join(import.meta.dirname, '..', '..'),
          env: { PATH: process.env.PATH, ...env, BFF_LOG_LEVEL: 'silent' },
        })
        let stdout = ''
        let stderr = ''
        child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')))
        child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')))
        child.on('close', (status) => resolve({ status, stdout, stderr }))
      })
    const check = await cli(['check-config'])
    expect(check.status).toBe(0)
    expect(check.stdout).toMatch(/^shop: configuration is valid: 1 route\(s\), issuer http/m)
    expect(check.stdout).toMatch(/^admin: configuration is valid/m)
    const noFrontend = await cli(['sessions', 'list', '--sub', 'henry'])
    expect(noFrontend.status).toBe(2)
    expect(noFrontend.stderr).toContain('--frontend is required: BFF_CONFIG_FILE declares shop, admin')
    expect((await cli(['sessions', 'list', '--sub', 'henry', '--frontend', 'nope'])).stderr).toContain('no frontend named nope')
    const a = await login(shop.url, { username: 'henry' })
    const b = await login(admin.url, { username: 'henry' })
    const revoked = await cli(['sessions', 'revoke', '--sub', 'henry', '--frontend', 'admin'])
    expect(revoked.status).toBe(0)
    expect((await api(admin, b.jar)).status).toBe(401)
    expect((await api(shop, a.jar)).status).toBe(200)
  })

  it('tokenward serve: SIGHUP and BFF_CONFIG_WATCH re-read the file; a bad file is refused and the running frontends kept', async () => {
    const p2 = await freePort()
    const one = { ...shop, name: 'one', url: `http://one.localhost:${p2}` }
    const two = { ...shop, name: 'two', url: `http://two.localhost:${p2}` }
    const three = { ...shop, name: 'three', url: `http://three.localhost:${p2}` }
    const file = writeConfig(`frontends:${frontendYaml(one)}`)
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'serve'], {
      cwd: join(import.meta.dirname, '..', '..'),
      env: {
        PATH: process.env.PATH,
        ...env,
        BFF_CONFIG_FILE: file,
        BFF_CONFIG_WATCH: 'true',
        BFF_PORT: String(p2),
        ONE_SECRET: 'x'.repeat(32),
        TWO_SECRET: 'x'.repeat(32),
        THREE_SECRET: 'x'.repeat(32),
        BFF_LOG_LEVEL: 'info',
      },
    })
    let out = ''
    child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')))
    child.stderr.on('data', (c: Buffer) => (out += c.toString('utf8')))
    const statusAt = (host: string) =>
      new Promise<number>((resolve) => {
        const req = request({ host: '127.0.0.1', port: p2, path: '/auth/session', headers: { host, 'x-csrf': '1' } }, (res) => {
          res.resume()
          resolve(res.statusCode ?? 0)
        })
        req.on('error', () => resolve(0))
        req.end()
      })
    const until = async (what: () => Promise<boolean>) => {
      for (let i = 0; i < 150; i++) {
        if (await what()) return true
        await new Promise((r) => setTimeout(r, 100))
      }
      return false
    }
    try {
      expect(await until(async () => (await statusAt(`one.localhost:${p2}`)) === 401)).toBe(true)
      expect(await statusAt(`two.localhost:${p2}`)).toBe(421)
      // A bad file: refused, logged with its reasons; `one` still served.
      writeFileSync(file, `frontends:${frontendYaml(one)}${frontendYaml(two).replace('clientId:', 'clientld:')}`)
      child.kill('SIGHUP')
      expect(await until(async () => out.includes('configuration reload refused'))).toBe(true)
      expect(out).toContain('clientld is not a tokenward setting (did you mean clientId?)')
      expect(await statusAt(`one.localhost:${p2}`)).toBe(401)
      expect(await statusAt(`two.localhost:${p2}`)).toBe(421)
      // Fixed, and signalled: `two` is served.
      writeFileSync(file, `frontends:${frontendYaml(one)}${frontendYaml(two)}`)
      child.kill('SIGHUP')
      expect(await until(async () => (await statusAt(`two.localhost:${p2}`)) === 401)).toBe(true)
      // Changed without a signal: the watch picks it up.
      writeFileSync(file, `frontends:${frontendYaml(one)}${frontendYaml(two)}${frontendYaml(three)}`)
      expect(await until(async () => (await statusAt(`three.localhost:${p2}`)) === 401)).toBe(true)
      expect(await statusAt(`one.localhost:${p2}`)).toBe(401)
    } finally {
      child.kill('SIGTERM')
      await new Promise((r) => child.once('close', r))
    }
  }, 30_000)

  it('doctor runs its checks per frontend: lines prefixed with the name, JSON checks carry frontend', async () => {
    const set = loadFrontends(env)
    const lines: string[] = []
    expect(await doctorFrontends(set, (l) => lines.push(l))).toBe(0)
    expect(lines.some((l) => l.startsWith('shop: PASS  client authentication'))).toBe(true)
    expect(lines.some((l) => l.startsWith('admin: PASS  client authentication'))).toBe(true)
    expect(lines.every((l) => /^(shop|admin): (PASS|WARN|FAIL) /.test(l))).toBe(true)
    const json: string[] = []
    expect(await doctorFrontends(set, (l) => json.push(l), { json: true })).toBe(0)
    const report = JSON.parse(json[0]!) as { ok: boolean; checks: Array<{ frontend: string; name: string }> }
    expect(report.ok).toBe(true)
    expect(new Set(report.checks.map((c) => c.frontend))).toEqual(new Set(['shop', 'admin']))
  })
})
