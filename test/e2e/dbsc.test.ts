// Device Bound Session Credentials in a real Chromium (W3C webappsec-dbsc;
// security model S84-S87): Debian's Chromium with DBSC switched on and
// software keys (no TPM here), against the demo SPA behind a TLS front made at
// test time. The browser registers at login and refreshes the short-lived
// bound cookie by itself; the app's code does nothing for it.

import { execFileSync } from 'node:child_process'
import { randomBytes, createHash, X509Certificate } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { request as httpRequest, type Server } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { BrowserContext, Page } from 'playwright-core'
import { signInAtDemoSpa } from '../helpers/demo-spa.js'
import { launchPersistentChromium, requireChromium } from '../helpers/chromium.js'
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest'
import { startDemoApi, type DemoApi } from '../../demo/api.js'
import { startDevIdp, type DevIdp } from '../../demo/idp.js'
import { auditEvents, startBff, type TestBff } from '../helpers/bff.js'
import { CookieJar } from '../helpers/login.js'
import { freePort } from '../helpers/ports.js'
import { sessionOf } from '../helpers/session.js'

const HOST = 'tokenward.test'
const CLIENT_ID = 'tokenward-dbsc-e2e'
const PASSWORD = 'demo'
const SPA_DIR = fileURLToPath(new URL('../../demo/spa', import.meta.url))
const BOUND = '__Host-tokenward-bound'
const SESSION = '__Host-tokenward'
/** The lowest BFF_DBSC_COOKIE_TTL: Chromium refreshes about 120 s before expiry. */
const BOUND_TTL = 130
// Software keys stand in for the TPM; only for testing. The origin trial and the refresh quota are off.
const DBSC_FEATURES =
  '--enable-features=DeviceBoundSessions:RequireOriginTrialTokens/false/RefreshQuota/false,EnableBoundSessionCredentialsSoftwareKeysForManualTesting'

declare function fetch(url: string, init?: { headers?: Record<string, string> }): Promise<{ status: number }>

let dir = ''
let spkiPin = ''
let idp: DevIdp | undefined
let api: DemoApi | undefined
let bff: TestBff | undefined
let front: TlsFront | undefined
let publicUrl = ''
const contexts: BrowserContext[] = []

beforeAll(async () => {
  requireChromium('the device-bound session tests')
  dir = await mkdtemp(join(tmpdir(), 'tokenward-dbsc-'))
  // A self-signed certificate for the test host, trusted by its key's pin only.
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '1',
      '-subj',
      `/CN=${HOST}`,
      '-addext',
      `subjectAltName=DNS:${HOST}`,
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
    ],
    { stdio: 'ignore' },
  )
  const cert = await readFile(join(dir, 'cert.pem'))
  const key = await readFile(join(dir, 'key.pem'))
  const spki = new X509Certificate(cert).publicKey.export({ type: 'spki', format: 'der' })
  spkiPin = createHash('sha256').update(spki).digest('base64')

  const apiPort = await freePort()
  const audience = `http://127.0.0.1:${apiPort}`
  const bffPort = await freePort()
  const frontPort = await freePort()
  publicUrl = `https://${HOST}:${frontPort}`
  const clientSecret = randomBytes(24).toString('base64url')
  idp = await startDevIdp({
    resource: audience,
    accessTokenTtl: 300,
    password: PASSWORD,
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: clientSecret,
        redirect_uris: [`${publicUrl}/auth/callback`],
        post_logout_redirect_uris: [`${publicUrl}/`],
      },
    ],
  })
  api = await startDemoApi({ port: apiPort, issuer: idp.issuer, audience })
  bff = await startBff({
    issuer: idp.issuer,
    redisUrl: inject('redisUrl'),
    clientId: CLIENT_ID,
    clientSecret,
    port: bffPort,
    routes: [{ prefix: '/api', upstream: api.url, token: 'user' }],
    env: {
      BFF_PUBLIC_URL: publicUrl,
      BFF_STATIC_DIR: SPA_DIR,
      BFF_SCOPES: 'openid profile email offline_access api',
      BFF_DBSC: 'auto',
      BFF_DBSC_COOKIE_TTL: String(BOUND_TTL),
    },
  })
  front = await startTlsFront({ key, cert }, frontPort, bffPort)
})

afterAll(async () => {
  await Promise.allSettled([bff?.close(), api?.close(), front?.close()])
  await idp?.close()
  if (dir) await rm(dir, { recursive: true, force: true })
})

afterEach(async () => {
  await Promise.allSettled(contexts.splice(0).map((c) => c.close()))
})

/** A browser with a fresh profile (DBSC sessions live in the profile), trusting the test certificate. */
async function browserContext(dbsc: boolean): Promise<BrowserContext> {
  const profile = await mkdtemp(join(dir, 'profile-'))
  const context = await launchPersistentChromium(profile, [
    `--ignore-certificate-errors-spki-list=${spkiPin}`,
    `--host-resolver-rules=MAP ${HOST} 127.0.0.1`,
    ...(dbsc ? [DBSC_FEATURES] : []),
  ])
  context.setDefaultTimeout(15_000)
  contexts.push(context)
  return context
}

function signIn(page: Page, username = 'alice'): Promise<void> {
  return signInAtDemoSpa(page, publicUrl, idp!.issuer, username, PASSWORD)
}

/** A same-origin fetch from the page, as the SPA makes it. */
function pageFetch(page: Page, path: string): Promise<number> {
  return page.evaluate(async (p) => (await fetch(p, { headers: { 'x-csrf': '1' } })).status, path)
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const until = Date.now() + ms
  for (;;) {
    const v = await probe()
    if (v !== undefined) return v
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

function jarWith(cookies: Array<{ name: string; value: string }>): CookieJar {
  const jar = new CookieJar()
  for (const c of cookies) jar.set(c.name, c.value, '127.0.0.1')
  return jar
}

describe('Device Bound Session Credentials in Chromium', () => {
  it('registers at login, sets a short-lived bound cookie, and refreshes it by itself when it is gone', async () => {
    const context = await browserContext(true)
    const page = context.pages()[0] ?? (await context.newPage())
    await signIn(page)
    // Chromium registers in the background right after the login's redirect.
    const bound = await waitFor('the bound cookie', async () => (await context.cookies(publicUrl)).find((c) => c.name === BOUND))
    expect(bound).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Strict', path: '/' })
    expect(bound.expires - Date.now() / 1000).toBeGreaterThan(BOUND_TTL - 10)
    expect(bound.expires - Date.now() / 1000).toBeLessThanOrEqual(BOUND_TTL + 1)
    const cookies = await context.cookies(publicUrl)
    const session = await sessionOf(bff!, jarWith(cookies))
    expect(session?.data.dbsc?.alg).toMatch(/^(ES256|RS256)$/)
    // Registered once, after the first /auth/session that carried the session cookie offered it.
    expect(front!.statuses.filter((r) => r.startsWith('POST /auth/dbsc/register'))).toEqual(['POST /auth/dbsc/register 200'])
    expect(await pageFetch(page, '/api/hello')).toBe(200)

    // The bound cookie gone (as when it expired): fetch and navigation still work,
    // because Chromium holds them and refreshes first, with no app code involved.
    const refreshesBefore = front!.requests.filter((r) => r === 'POST /auth/dbsc/refresh').length
    await context.clearCookies({ name: BOUND })
    expect(await pageFetch(page, '/api/hello')).toBe(200)
    expect(front!.requests.filter((r) => r === 'POST /auth/dbsc/refresh').length).toBeGreaterThan(refreshesBefore)
    expect(front!.statuses.filter((r) => r.startsWith('POST /auth/dbsc/refresh')).at(-1)).toBe('POST /auth/dbsc/refresh 200')
    expect((await context.cookies(publicUrl)).some((c) => c.name === BOUND)).toBe(true)
    await context.clearCookies({ name: BOUND })
    await page.goto(`${publicUrl}/`)
    await page.locator('#signed-in').waitFor()
    expect(await page.locator('dd[data-field="sub"]').textContent()).toBe('alice')
    expect(auditEvents(bff!.logs).filter((e) => e.event === 'dbsc_proof_rejected' && e.sid === session!.sid)).toEqual([])
  })

  it("a thief's plain browser with the copied cookies works only while the bound cookie does; without it, 401", async () => {
    const victim = await browserContext(true)
    const page = victim.pages()[0] ?? (await victim.newPage())
    await signIn(page, 'bob')
    await waitFor('the bound cookie', async () => (await victim.cookies(publicUrl)).find((c) => c.name === BOUND))
    const stolen = (await victim.cookies(publicUrl)).filter((c) => c.name === SESSION || c.name === BOUND)
    expect(stolen).toHaveLength(2)

    const thief = await browserContext(false)
    await thief.addCookies(stolen)
    const thiefPage = thief.pages()[0] ?? (await thief.newPage())
    await thiefPage.goto(`${publicUrl}/`)
    // Until the bound cookie's sealed expiry (130 s here; the next test waits for it).
    expect(await pageFetch(thiefPage, '/api/hello')).toBe(200)
    // The long-lived cookie alone, as once the bound one has expired: refused, and this browser cannot refresh.
    await thief.clearCookies({ name: BOUND })
    expect(await pageFetch(thiefPage, '/api/hello')).toBe(401)
    expect(await pageFetch(thiefPage, '/auth/session')).toBe(401)
    expect(auditEvents(bff!.logs).some((e) => e.event === 'dbsc_cookie_refused')).toBe(true)
    // The victim's browser is not affected.
    expect(await pageFetch(page, '/api/hello')).toBe(200)
  })

  it("a copied bound cookie kept alive in the thief's browser stops working at its sealed expiry", async () => {
    const victim = await browserContext(true)
    const page = victim.pages()[0] ?? (await victim.newPage())
    await signIn(page, 'dave')
    const bound = await waitFor('the bound cookie', async () => (await victim.cookies(publicUrl)).find((c) => c.name === BOUND))
    const issuedAt = (bound.expires - BOUND_TTL) * 1000
    const stolen = (await victim.cookies(publicUrl))
      .filter((c) => c.name === SESSION || c.name === BOUND)
      // The thief ignores Max-Age: its copies never expire in its browser.
      .map((c) => ({ ...c, expires: Math.floor(Date.now() / 1000) + 3600 }))
    const thief = await browserContext(false)
    await thief.addCookies(stolen)
    const thiefPage = thief.pages()[0] ?? (await thief.newPage())
    await thiefPage.goto(`${publicUrl}/`)
    let lastOk = 0
    for (;;) {
      const status = await pageFetch(thiefPage, '/api/hello')
      if (status !== 200) {
        expect(status).toBe(401)
        break
      }
      lastOk = Date.now()
      expect(lastOk - issuedAt).toBeLessThan((BOUND_TTL + 10) * 1000)
      await new Promise((r) => setTimeout(r, 1000))
    }
    const usefulLife = (lastOk - issuedAt) / 1000
    console.info(`copied bound cookie (BFF_DBSC_COOKIE_TTL=${BOUND_TTL}) last worked ${usefulLife.toFixed(1)} s after it was issued`)
    expect(usefulLife).toBeGreaterThan(BOUND_TTL - 5)
    expect(usefulLife).toBeLessThanOrEqual(BOUND_TTL + 5 + 1)
    // Meanwhile the victim's browser kept refreshing its own and still works.
    expect(await pageFetch(page, '/api/hello')).toBe(200)
  }, 200_000)

  it('a browser without DBSC logs in and works as before', async () => {
    const context = await browserContext(false)
    const page = context.pages()[0] ?? (await context.newPage())
    await signIn(page, 'carol')
    expect(await pageFetch(page, '/api/hello')).toBe(200)
    await new Promise((r) => setTimeout(r, 500))
    const cookies = await context.cookies(publicUrl)
    expect(cookies.some((c) => c.name === BOUND)).toBe(false)
    expect((await sessionOf(bff!, jarWith(cookies)))?.data.dbsc).toBeUndefined()
  })
})

interface TlsFront {
  /** `METHOD path` of every request, in order. */
  readonly requests: string[]
  /** `METHOD path status` of every answer. */
  readonly statuses: string[]
  close(): Promise<void>
}

/** HTTPS in front of tokenward's plain-http port, as a TLS-terminating proxy. */
async function startTlsFront(tls: { key: Buffer; cert: Buffer }, port: number, bffPort: number): Promise<TlsFront> {
  const requests: string[] = []
  const statuses: string[] = []
  const server: Server = createHttpsServer(tls, (req, res) => {
    requests.push(`${req.method} ${(req.url ?? '/').split('?')[0]}`)
    const out = httpRequest({ host: '127.0.0.1', port: bffPort, method: req.method, path: req.url, headers: req.headers }, (up) => {
      statuses.push(`${req.method} ${(req.url ?? '/').split('?')[0]} ${up.statusCode}`)
      res.writeHead(up.statusCode ?? 502, up.headers)
      up.pipe(res)
    })
    out.on('error', () => {
      if (!res.headersSent) res.writeHead(502)
      res.end()
    })
    req.pipe(out)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => resolve())
  })
  expect((server.address() as AddressInfo).port).toBe(port)
  return {
    requests,
    statuses,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}
