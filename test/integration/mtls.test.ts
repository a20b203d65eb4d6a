import { spawn, spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { decodeJwt } from 'jose'
import { request } from 'node:https'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { startDevIdp, type DevIdp } from '../../demo/idp.js'
import { doctor } from '../../src/cli/doctor.js'
import { loadConfig } from '../../src/config.js'
import { handshakeHead, handshakeStatus } from '../helpers/websocket.js'
import { startBff, testSecrets, type TestBff } from '../helpers/bff.js'
import { buildCli, waitHealthy } from '../helpers/cli-build.js'
import { login } from '../helpers/login.js'
import { startMtlsUpstream, type MtlsUpstream } from '../helpers/mtls-upstream.js'
import { certificateJwk, createPki, replaceFile, type Issued, type Pki } from '../helpers/pki.js'
import { freePort } from '../helpers/ports.js'
import { expireAccessToken, sessionOf, spaFetch } from '../helpers/session.js'

// RFC 8705 against a real oidc-provider: client authentication by certificate
// (§2.1 PKI, §2.2 self-signed) at its mtls_endpoint_aliases (§5), and
// certificate-bound access tokens (§3) enforced by an HTTPS upstream.
const API = 'https://api.example'
const API_B = 'https://api-b.example'
const SUBJECT = '/O=Tokenward Tests/CN=tokenward-test'
/** RFC 4514: the most specific RDN first. */
const SUBJECT_DN = 'CN=tokenward-test,O=Tokenward Tests'

let pki: Pki
let idp: DevIdp
let upstream: MtlsUpstream
let client: Issued
let selfSigned: Issued
const ports: Record<'pki' | 'self' | 'rotate' | 'wrong', number> = { pki: 0, self: 0, rotate: 0, wrong: 0 }
const bffs: TestBff[] = []

const uris = (port: number) => ({
  redirect_uris: [`http://127.0.0.1:${port}/auth/callback`],
  post_logout_redirect_uris: [`http://127.0.0.1:${port}/`],
})

beforeAll(async () => {
  pki = createPki()
  client = pki.client('client', SUBJECT)
  selfSigned = pki.selfSigned('self', '/CN=tokenward-self-signed')
  for (const k of Object.keys(ports) as Array<keyof typeof ports>) ports[k] = await freePort()
  const bound = {
    tls_client_certificate_bound_access_tokens: true,
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
  }
  idp = await startDevIdp({
    resource: API,
    tokenExchange: { targets: { [API_B]: ['b.read'] } },
    mtls: { cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, aliases: true },
    clients: [
      {
        client_id: 'mtls-pki',
        token_endpoint_auth_method: 'tls_client_auth',
        tls_client_auth_subject_dn: SUBJECT_DN,
        ...bound,
        ...uris(ports.pki),
      },
      {
        client_id: 'mtls-self',
        token_endpoint_auth_method: 'self_signed_tls_client_auth',
        jwks: { keys: [certificateJwk(selfSigned)] },
        ...bound,
        ...uris(ports.self),
      },
      {
        client_id: 'mtls-rotate',
        token_endpoint_auth_method: 'tls_client_auth',
        tls_client_auth_subject_dn: SUBJECT_DN,
        ...bound,
        ...uris(ports.rotate),
      },
    ],
  })
  upstream = await startMtlsUpstream({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert })
}, 30_000)
afterAll(async () => {
  await Promise.allSettled(bffs.map((b) => b.close()))
  await upstream?.close()
  await idp?.close()
  pki?.close()
})

function mtlsEnv(method: string, pair: Issued, extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    BFF_CLIENT_SECRET: undefined,
    BFF_CLIENT_AUTH: method,
    BFF_TLS_CLIENT_CERT: pair.certFile,
    BFF_TLS_CLIENT_KEY: pair.keyFile,
    BFF_TLS_CA: pki.ca.certFile,
    BFF_SCOPES: 'openid profile email offline_access api',
    ...extra,
  }
}

async function start(clientId: string, port: number, env: Record<string, string | undefined>, routes?: unknown[]): Promise<TestBff> {
  const bff = await startBff({
    issuer: idp.issuer,
    redisUrl: inject('redisUrl'),
    clientId,
    clientSecret: 'unused',
    port,
    routes: routes ?? [
      { prefix: '/api', upstream: upstream.url, token: 'user', mtls: true },
      // No "mtls": with a certificate configured, an https token route presents it by default.
      { prefix: '/b', upstream: upstream.url, token: 'user', tokenExchange: { audience: API_B } },
    ],
    env,
  })
  bffs.push(bff)
  return bff
}

/** The environment a `tokenward` command sees: everything a server needs, nothing started. */
function cliEnv(clientId: string, env: Record<string, string | undefined>): Record<string, string | undefined> {
  const { cookieSecret, encryptionKeys } = testSecrets()
  return {
    BFF_PUBLIC_URL: 'http://127.0.0.1:9',
    BFF_ISSUER: idp.issuer,
    BFF_CLIENT_ID: clientId,
    BFF_ROUTES: JSON.stringify([{ prefix: '/api', upstream: upstream.url, token: 'user', mtls: true }]),
    BFF_COOKIE_SECRET: cookieSecret,
    BFF_ENCRYPTION_KEYS: encryptionKeys,
    BFF_REDIS_URL: inject('redisUrl'),
    BFF_REDIS_PREFIX: `tokenward-test:${randomUUID()}:`,
    BFF_ALLOW_HTTP: 'true',
    ...env,
  }
}

function cnf(token: string): string | undefined {
  return (decodeJwt(token) as { cnf?: Record<string, string> }).cnf?.['x5t#S256']
}

describe('mutual-TLS client authentication and certificate-bound tokens (RFC 8705)', () => {
  it.each([
    ['tls_client_auth (subject DN registered)', 'mtls-pki', 'pki', () => client],
    ['self_signed_tls_client_auth (certificate registered as a JWK)', 'mtls-self', 'self', () => selfSigned],
  ] as const)(
    '%s: login, bound token accepted upstream, refresh and token exchange keep the binding, logout revokes',
    async (_n, clientId, port, pair) => {
      const bff = await start(
        clientId,
        ports[port],
        mtlsEnv(clientId === 'mtls-pki' ? 'tls_client_auth' : 'self_signed_tls_client_auth', pair()),
      )
      // The issuer is plain http: only its HTTPS alias listener (RFC 8705 §5)
      // can see a certificate, so a login at all proves the alias was used.
      const { jar } = await login(bff.url)
      const s = (await sessionOf(bff, jar))!
      expect(cnf(s.data.accessToken)).toBe(pair().thumbprint)

      const res = await spaFetch(bff, jar, '/api/orders')
      expect(res.status).toBe(200)
      expect(upstream.requests.at(-1)).toMatchObject({ url: '/orders', presented: pair().thumbprint, status: 200 })

      await expireAccessToken(bff, jar)
      const grants = idp.counts.refreshGrants
      expect((await spaFetch(bff, jar, '/api/again')).status).toBe(200)
      expect(idp.counts.refreshGrants).toBe(grants + 1)
      const fresh = (await sessionOf(bff, jar))!
      expect(fresh.data.accessToken).not.toBe(s.data.accessToken)
      expect(cnf(fresh.data.accessToken)).toBe(pair().thumbprint)

      // RFC 8693 with a bound subject token: the exchange presents the
      // certificate, and the exchanged token is bound to it as well.
      const exchanges = idp.counts.tokenExchanges
      expect((await spaFetch(bff, jar, '/b/items')).status).toBe(200)
      expect(idp.counts.tokenExchanges).toBe(exchanges + 1)
      expect(upstream.requests.at(-1)).toMatchObject({ url: '/items', presented: pair().thumbprint, status: 200 })

      const revocations = idp.counts.revocations
      expect((await spaFetch(bff, jar, '/auth/logout', { method: 'POST' })).status).toBe(200)
      expect(idp.counts.revocations).toBe(revocations + 1)
      bffs.splice(bffs.indexOf(bff), 1)
      await bff.close() // its port is the next test's
    },
  )

  it('the upstream refuses the bound token without the certificate, so a route without mtls is refused by tokenward and by startup; client credentials and WebSockets are bound too', async () => {
    const bff = await start('mtls-pki', ports.pki, mtlsEnv('tls_client_auth', client), [
      { prefix: '/api', upstream: upstream.url, token: 'user', mtls: true },
      { prefix: '/plain', upstream: upstream.url, token: 'user', mtls: false },
      { prefix: '/svc', upstream: upstream.url, token: 'client', mtls: true },
      { prefix: '/ws', upstream: upstream.url, token: 'user', mtls: true, websocket: true },
    ])
    const { jar } = await login(bff.url)
    const token = (await sessionOf(bff, jar))!.data.accessToken
    // Straight to the upstream with the token but no certificate: refused.
    const status = await new Promise<number>((resolve, reject) => {
      request(`${upstream.url}/direct`, { ca: pki.ca.cert, headers: { authorization: `Bearer ${token}` } }, (r) => {
        r.resume()
        resolve(r.statusCode ?? 0)
      })
        .on('error', reject)
        .end()
    })
    expect(status).toBe(401)
    expect(upstream.requests.at(-1)).toMatchObject({ url: '/direct', presented: undefined, status: 401 })

    // A route that said "mtls": false never sends the bound token.
    const n = upstream.requests.length
    const res = await spaFetch(bff, jar, '/plain/x')
    expect(res.status).toBe(502)
    expect(((await res.json()) as { error: string }).error).toBe('upstream_unavailable')
    expect(upstream.requests.length).toBe(n)
    expect(bff.logs.some((l) => l.includes('certificate-bound access token') && l.includes('/plain'))).toBe(true)

    // A WebSocket handshake on an mtls route presents the certificate too.
    expect(await websocketStatus(bff, '/ws/chat', jar.header(bff.url))).toBe(101)
    expect(upstream.requests.at(-1)).toMatchObject({ url: '/chat', presented: client.thumbprint, status: 101 })

    // tokenward's own token (client credentials) is bound and presented alike.
    expect((await spaFetch(bff, jar, '/svc/jobs')).status).toBe(200)
    expect(upstream.requests.at(-1)).toMatchObject({ url: '/jobs', presented: client.thumbprint, status: 200 })

    // Left unsaid, an https route presents the certificate (the /b route above
    // proves it end to end); a plain-http one cannot, and is a configuration error.
    expect(
      loadConfig({ ...bff.env, BFF_ROUTES: JSON.stringify([{ prefix: '/api', upstream: upstream.url, token: 'user' }]) }).routes[0]!.mtls,
    ).toBe(true)
    expect(() =>
      loadConfig({ ...bff.env, BFF_ROUTES: JSON.stringify([{ prefix: '/api', upstream: 'http://127.0.0.1:9', token: 'user' }]) }),
    ).toThrow(/route \/api sends access tokens that the IdP may bind .* plain-http upstream cannot be given the certificate/)
    await spaFetch(bff, jar, '/auth/logout', { method: 'POST' })
  })

  it('a certificate the IdP does not know is refused as invalid_client, clearly', async () => {
    const stranger = pki.selfSigned('stranger', SUBJECT) // same subject, not issued by the CA the IdP trusts
    const config = loadConfig(cliEnv('mtls-pki', mtlsEnv('tls_client_auth', stranger)))
    // A login: the pushed authorization request (RFC 9126, authenticated like
    // the token request) is refused, no session, and the log says why.
    const bff = await start('mtls-wrong', ports.wrong, mtlsEnv('tls_client_auth', stranger))
    await expect(login(bff.url)).rejects.toThrow(/answered 4\d\d/)
    expect(bff.logs.some((l) => l.includes('authorization request refused: invalid_client (HTTP 401)'))).toBe(true)
    const lines: string[] = []
    expect(await doctor(config, (l) => lines.push(l), { json: true })).toBe(1)
    const report = JSON.parse(lines[0]!) as { checks: Array<{ name: string; status: string; detail: string }> }
    const auth = report.checks.find((c) => c.name === 'client authentication')!
    expect(auth.status).toBe('fail')
    expect(auth.detail).toMatch(/tls_client_auth as mtls-pki refused at https:\/\/127\.0\.0\.1:\d+\/token: invalid_client/)
    expect(auth.detail).toContain('tls_client_auth_subject_dn')
    // The right certificate passes the same check, and doctor shows the method and expiry.
    const good: string[] = []
    expect(await doctor(loadConfig(cliEnv('mtls-pki', mtlsEnv('tls_client_auth', client))), (l) => good.push(l), { json: true })).toBe(0)
    const checks = (JSON.parse(good[0]!) as { checks: Array<{ name: string; status: string; detail: string }> }).checks
    expect(checks.find((c) => c.name === 'client authentication')?.status).toBe('pass')
    // Two days left: a warning ahead of expiry, with the method and the subject.
    expect(checks.find((c) => c.name === 'client certificate')).toMatchObject({ status: 'warn' })
    expect(checks.find((c) => c.name === 'client certificate')?.detail).toMatch(
      /^expires in [12]\.\d days .*: tls_client_auth; subject O=Tokenward Tests, CN=tokenward-test/,
    )
    const long = pki.client('long', SUBJECT, { days: 60 })
    const later: string[] = []
    expect(await doctor(loadConfig(cliEnv('mtls-pki', mtlsEnv('tls_client_auth', long))), (l) => later.push(l), { json: true })).toBe(0)
    const cert = (JSON.parse(later[0]!) as { checks: Array<{ name: string; status: string; detail: string }> }).checks.find(
      (c) => c.name === 'client certificate',
    )
    expect(cert).toMatchObject({ status: 'pass' })
    expect(cert?.detail).toMatch(/^tls_client_auth; subject O=Tokenward Tests, CN=tokenward-test, issuer CN=tokenward test CA/)
  })

  it('an IdP served over HTTPS itself, without aliases: BFF_TLS_CA verifies it and the certificate goes to its own token endpoint', async () => {
    const direct = await startDevIdp({
      mtls: { cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, aliases: false },
      clients: [
        { client_id: 'mtls-direct', token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_subject_dn: SUBJECT_DN, ...uris(9) },
      ],
    })
    try {
      expect(direct.issuer).toMatch(/^https:/)
      const run = async (env: Record<string, string | undefined>) => {
        const lines: string[] = []
        const code = await doctor(
          loadConfig({ ...cliEnv('mtls-direct', mtlsEnv('tls_client_auth', client)), BFF_ISSUER: direct.issuer, ...env }),
          (l) => lines.push(l),
          { json: true },
        )
        return { code, checks: (JSON.parse(lines[0]!) as { checks: Array<{ name: string; status: string; detail: string }> }).checks }
      }
      const ok = await run({})
      expect(ok.checks.find((c) => c.name === 'client authentication')).toMatchObject({ status: 'pass' })
      expect(ok.checks.find((c) => c.name === 'client authentication')?.detail).toContain(`accepted at ${direct.issuer}/token`)
      // Without the test CA the IdP's certificate is not trusted: discovery fails, clearly.
      const untrusted = await run({ BFF_TLS_CA: undefined })
      expect(untrusted.code).toBe(1)
      expect(untrusted.checks.find((c) => c.name === 'idp discovery')).toMatchObject({ status: 'fail' })
      expect(untrusted.checks.find((c) => c.name === 'idp discovery')?.detail).toMatch(/certificate/i)
    } finally {
      await direct.close()
    }
  })

  it('rotation during traffic: the renewed pair is picked up without a restart and no request fails', async () => {
    // Files of its own, replaced in place below.
    const live = pki.client('live', SUBJECT)
    const bff = await start('mtls-rotate', ports.rotate, mtlsEnv('tls_client_auth', live))
    const { jar } = await login(bff.url)
    const renewed = pki.client('renewed', SUBJECT, { days: 1 })
    const refreshes = idp.counts.refreshGrants
    const failures: number[] = []
    let ok = 0
    let stop = false
    const worker = async () => {
      while (!stop) {
        const r = await spaFetch(bff, jar, '/api/traffic')
        await r.arrayBuffer()
        if (r.status === 200) ok++
        else failures.push(r.status)
      }
    }
    const workers = [worker(), worker(), worker()]
    await new Promise((r) => setTimeout(r, 300))
    // First a pair that does not belong together: refused, the old pair keeps serving.
    replaceFile(live.certFile, renewed.cert)
    await waitFor(() => bff.logs.some((l) => l.includes('client_certificate_reload') && l.includes('"outcome":"failure"')))
    expect(upstream.requests.at(-1)!.presented).toBe(live.thumbprint)
    // Then its key: the new pair replaces the old.
    replaceFile(live.keyFile, renewed.key)
    await waitFor(() => upstream.requests.at(-1)!.presented === renewed.thumbprint)
    await new Promise((r) => setTimeout(r, 300))
    stop = true
    await Promise.all(workers)
    expect(failures).toEqual([])
    expect(ok).toBeGreaterThan(20)
    // The token bound to the old certificate was renewed before it was sent,
    // once for all three concurrent callers: the upstream never refused one.
    expect(upstream.requests.filter((r) => r.url === '/traffic' && r.status === 401)).toEqual([])
    expect(idp.counts.refreshGrants).toBe(refreshes + 1)
    // The session survived, and its token is now bound to the new certificate.
    expect(cnf((await sessionOf(bff, jar))!.data.accessToken)).toBe(renewed.thumbprint)
    const reload = bff.logs
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.event === 'client_certificate_reload' && l.outcome === 'success')
    expect(reload).toMatchObject({ audit: true, previous: live.thumbprint, thumbprint: renewed.thumbprint })
    // The expiry gauge follows the new certificate (one day left instead of two).
    const text = await bff.server.deps.metrics.metrics()
    const seconds = Number(/^tokenward_client_certificate_expiry_seconds (\S+)$/m.exec(text)?.[1])
    expect(seconds).toBeGreaterThan(86_400 - 120)
    expect(seconds).toBeLessThan(86_400 + 60)
    expect(text).toContain('tokenward_client_auth_info{method="tls_client_auth"} 1')
  }, 30_000)
})

/** The status of a raw WebSocket handshake (RFC 6455 §4.1) through tokenward, as a browser sends it. */
async function websocketStatus(bff: TestBff, path: string, cookie: string): Promise<number> {
  const { port, host } = new URL(bff.url)
  return handshakeStatus(await handshakeHead(Number(port), path, { Host: host, Origin: bff.url, Cookie: cookie }))
}

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms
  while (!cond()) {
    if (Date.now() > until) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe('the production CLI with a client certificate (node dist/cli.js)', () => {
  let build: ReturnType<typeof buildCli>
  beforeAll(() => {
    build = buildCli('mtls')
  }, 120_000)
  afterAll(() => build?.cleanup())

  it('check-config refuses an expired certificate (exit 1); serve reloads the pair on SIGHUP', async () => {
    const expired = pki.client('cli-expired', SUBJECT, { expired: true })
    const refused = spawnSync(process.execPath, [build.cli, 'check-config'], {
      env: { PATH: process.env.PATH, ...cliEnv('mtls-pki', mtlsEnv('tls_client_auth', expired)) } as NodeJS.ProcessEnv,
      encoding: 'utf8',
    })
    expect(refused.status).toBe(1)
    expect(refused.stderr).toContain(`BFF_TLS_CLIENT_CERT ${expired.certFile} expired on 2020-01-02T00:00:00.000Z`)

    const live = pki.client('cli-live', SUBJECT)
    const next = pki.client('cli-next', SUBJECT)
    const port = await freePort()
    const child = spawn(process.execPath, [build.cli, 'serve'], {
      env: {
        PATH: process.env.PATH,
        ...cliEnv('mtls-pki', mtlsEnv('tls_client_auth', live)),
        BFF_PORT: String(port),
        BFF_HOST: '127.0.0.1',
        BFF_LOG_LEVEL: 'info',
      } as NodeJS.ProcessEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (out += d.toString()))
    try {
      await waitHealthy(`http://127.0.0.1:${port}`)
      replaceFile(live.keyFile, next.key)
      replaceFile(live.certFile, next.cert)
      // Before the file watch's debounce: this reload is SIGHUP's.
      child.kill('SIGHUP')
      await waitFor(() => out.includes('client_certificate_reload'))
      const reload = out
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.event === 'client_certificate_reload')
      expect(reload).toMatchObject({ outcome: 'success', trigger: 'SIGHUP', previous: live.thumbprint, thumbprint: next.thumbprint })
      expect(out).not.toContain('PRIVATE KEY')
    } finally {
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
      child.kill('SIGTERM')
      expect(await exited).toBe(0)
    }
  }, 60_000)
})
