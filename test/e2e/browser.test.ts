// Browser end-to-end: the demo SPA, tokenward, the dev IdP and the demo API in
// a real Chromium. These tests look at what a browser actually stores, sends
// and receives, which the fetch-based integration tests can only imitate:
// SameSite and __Host- handling, CORS preflights, history navigation.

import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { createServer, request as httpRequest, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import type { Browser, BrowserContext, Page, Response } from 'playwright-core'
import { signInAtDemoSpa, submitDevIdpLogin } from '../helpers/demo-spa.js'
import { launchChromium, requireChromium } from '../helpers/chromium.js'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest'
import { startDemoApi, type DemoApi } from '../../demo/api.js'
import { startDevIdp, type DevIdp } from '../../demo/idp.js'
import { auditEvents, startBff, type TestBff } from '../helpers/bff.js'
import { CookieJar } from '../helpers/login.js'
import { freePort } from '../helpers/ports.js'
import { containsAny, sessionOf } from '../helpers/session.js'

const CLIENT_ID = 'tokenward-e2e'
const PASSWORD = 'demo'
// Short enough that a test can wait one out; BFF_REFRESH_SKEW=1 makes tokenward
// refresh during the last second of it.
const ACCESS_TOKEN_TTL = 4
const SPA_DIR = fileURLToPath(new URL('../../demo/spa', import.meta.url))
const SCREENSHOT = fileURLToPath(new URL('../../docs/demo-signed-in.png', import.meta.url))
const VIEWPORT = { width: 900, height: 640 }
// Any JWT (access or ID token) starts with `eyJ` (base64url of `{"`) and has a dot
// after its header. Random base64url, as in the sealed cookie or the sid, can hold
// `eyJ` by chance but never a dot, so this cannot fail at random.
const JWT_SHAPE = /eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+/

// The page.evaluate callbacks run in Chromium, not Node. The project compiles
// without the DOM lib (adding it would leak browser globals into src/), so this
// file declares the little it uses, in its own module scope.
interface PageStorage {
  readonly length: number
}
declare const document: { readonly cookie: string; readonly readyState: string; querySelector(selector: string): { click(): void } | null }
declare const localStorage: PageStorage
declare const sessionStorage: PageStorage

let idp: DevIdp | undefined
let api: DemoApi | undefined
let counter: CountingProxy | undefined
let bff: TestBff | undefined
let attacker: Server | undefined
let browser: Browser | undefined
/** Launched only by the back/forward cache test. */
let bfcacheBrowser: Browser | undefined
/** tokenward's public origin: localhost, so 127.0.0.1 (the IdP, the attacker) is another site. */
let publicUrl = ''
let attackerPort = 0
const contexts: BrowserContext[] = []

beforeAll(async () => {
  requireChromium('the browser end-to-end tests')
  const apiPort = await freePort()
  const audience = `http://127.0.0.1:${apiPort}`
  const bffPort = await freePort()
  publicUrl = `http://localhost:${bffPort}`
  const clientSecret = randomBytes(24).toString('base64url')
  idp = await startDevIdp({
    resource: audience,
    accessTokenTtl: ACCESS_TOKEN_TTL,
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
  counter = await startCountingProxy(api.url)
  bff = await startBff({
    issuer: idp.issuer,
    redisUrl: inject('redisUrl'),
    clientId: CLIENT_ID,
    clientSecret,
    port: bffPort,
    routes: [{ prefix: '/api', upstream: counter.url, token: 'user' }],
    env: {
      BFF_PUBLIC_URL: publicUrl,
      BFF_STATIC_DIR: SPA_DIR,
      BFF_SCOPES: 'openid profile email offline_access api',
      BFF_REFRESH_SKEW: '1',
    },
  })
  const started = await startAttacker(publicUrl)
  attacker = started.server
  attackerPort = started.port
  browser = await launchBrowser()
})

afterAll(async () => {
  await Promise.allSettled([browser?.close(), bfcacheBrowser?.close()])
  await Promise.allSettled([bff?.close(), counter?.close(), api?.close(), attacker ? closeServer(attacker) : undefined])
  await idp?.close()
})

let context: BrowserContext
let page: Page

beforeEach(async () => {
  context = await newContext()
  page = await context.newPage()
})

afterEach(async () => {
  await Promise.allSettled(contexts.splice(0).map((c) => c.close()))
})

describe('the demo SPA in Chromium', () => {
  it('logs in on the IdP login page, shows the user and calls the API', async () => {
    await signIn(page, 'alice')
    expect(await page.locator('#signed-in-title').textContent()).toBe('Hello, Alice')
    expect(await page.locator('dd[data-field="sub"]').textContent()).toBe('alice')
    expect(await page.locator('dd[data-field="email"]').textContent()).toBe('alice@example.com')

    const hits = counter!.hits.length
    const body = await callApi(page)
    expect(body).toMatchObject({ message: 'Hello, alice!', sub: 'alice' })
    expect(body.scope.split(' ')).toContain('api')
    expect(await page.locator('dd[data-result="status"]').textContent()).toBe('200 OK')
    expect(await page.locator('dd[data-result="message"]').textContent()).toBe('Hello, alice!')
    // The demo API saw exactly this call, with a bearer token tokenward added.
    expect(counter!.hits.slice(hits)).toEqual([{ method: 'GET', path: '/hello', bearer: true }])

    const png = await page.screenshot({ type: 'png' })
    expect(png.length).toBeLessThan(200 * 1024)
    // The page shows clock times, so every run's picture differs: write it only
    // when missing or asked for, instead of dirtying the work tree on each `npm test`.
    if (!existsSync(SCREENSHOT) || process.env.TOKENWARD_UPDATE_SCREENSHOT === '1') {
      await mkdir(fileURLToPath(new URL('../../docs', import.meta.url)), { recursive: true })
      await writeFile(SCREENSHOT, png)
    }
  })

  it('keeps every token on the server: cookies, responses and storage hold none', async () => {
    const seen: Array<Promise<Captured>> = []
    page.on('response', (response) => {
      if (new URL(response.url()).origin === publicUrl) seen.push(capture(response))
    })

    // The login transaction cookie, as the browser stored it while the user is at
    // the IdP: it has to survive the IdP's cross-site redirect back, so Lax
    // (security model S15).
    await page.goto(`${publicUrl}/`)
    await page.locator('#sign-in').click()
    await page.waitForURL((url) => url.origin === idp!.issuer)
    const tx = (await context.cookies(publicUrl)).find((c) => c.name === bff!.config.cookie.transactionName)
    expect(tx).toMatchObject({ name: '__Host-tokenward-tx', httpOnly: true, secure: true, sameSite: 'Lax', path: '/' })
    await submitLogin(page, 'alice')

    const hello = await callApi(page)
    expect(hello.sub).toBe('alice')

    // The session cookie as the browser holds it (security model S14).
    const cookies = await context.cookies(publicUrl)
    const session = cookies.find((c) => c.name === bff!.config.cookie.name)
    expect(session).toMatchObject({
      name: '__Host-tokenward',
      domain: 'localhost',
      path: '/',
      httpOnly: true,
      secure: true,
      sameSite: 'Strict',
    })
    expect(session!.value).not.toMatch(JWT_SHAPE)
    // HttpOnly really hides the session and transaction cookies from scripts.
    const scriptCookies = await page.evaluate(() => document.cookie)
    expect(scriptCookies).not.toContain('__Host-tokenward')
    expect(scriptCookies).not.toMatch(JWT_SHAPE)

    // The tokens tokenward holds for this browser, read on the server side.
    const stored = await sessionOf(bff!, jarWith(session!.value))
    expect(stored?.data.accessToken).toMatch(JWT_SHAPE)
    expect(stored?.data.refreshToken).toBeTruthy()
    const tokens = [stored!.data.accessToken, stored!.data.refreshToken!, stored!.data.idToken].filter((t): t is string => !!t)

    // Storage: the SPA keeps nothing, let alone a token.
    const storage = await page.evaluate(() => ({
      local: Object.entries(localStorage),
      session: Object.entries(sessionStorage),
    }))
    expect(storage).toEqual({ local: [], session: [] })

    // The session-event stream never finishes, so the browser never hands over
    // its body: read its opening event from the page, as the SPA's EventSource gets it.
    const events = await page.evaluate(async () => {
      const res = await fetch('/auth/events')
      const reader = (res.body as ReadableStream<Uint8Array>).getReader()
      const decoder = new TextDecoder()
      let text = ''
      while (!text.includes('\n\n')) {
        const { value, done } = await reader.read()
        if (done) break
        text += decoder.decode(value, { stream: true })
      }
      await reader.cancel()
      return { status: res.status, type: res.headers.get('content-type'), text }
    })
    expect(events).toMatchObject({ status: 200, type: expect.stringContaining('text/event-stream') })
    expect(events.text).toMatch(/^event: session\n/m)

    // Every response from tokenward's origin, headers and bodies (security model S13, S70).
    const captured = await Promise.all(seen)
    const paths = captured.map((c) => `${c.status} ${new URL(c.url).pathname}`)
    expect(paths).toEqual(
      expect.arrayContaining([
        '302 /auth/login',
        '303 /auth/callback',
        '200 /',
        '200 /app.js',
        '200 /client.js',
        '200 /auth/session',
        '200 /auth/events',
        '200 /api/hello',
      ]),
    )
    for (const c of captured) {
      const body = c.stream ? events.text : c.body
      const text = `${c.headers}\n${body ?? ''}`
      expect(containsAny(text, tokens), `${c.url} carries a token`).toBeUndefined()
      expect(text, `${c.url} carries a JWT`).not.toMatch(JWT_SHAPE)
      // Redirects have no body to read; everything else must have been scanned.
      if (c.status < 300 || c.status >= 400) expect(body, `${c.url}: body not captured`).toBeDefined()
    }
    // The transaction cookie was set by /auth/login itself with SameSite=Lax (security model S15).
    const loginResponse = captured.find((c) => new URL(c.url).pathname === '/auth/login')!
    expect(loginResponse.setCookies.find((l) => l.startsWith('__Host-tokenward-tx='))).toMatch(/;\s*SameSite=Lax/i)
    const callback = captured.find((c) => new URL(c.url).pathname === '/auth/callback')!
    expect(callback.setCookies.find((l) => l.startsWith('__Host-tokenward='))).toMatch(/;\s*SameSite=Strict/i)

    // Nor do tokenward's own logs (security model S70).
    expect(containsAny(bff!.logs.join('\n'), tokens)).toBeUndefined()
  })

  it('refreshes an expired access token without a reload, once for two tabs at the same moment', async () => {
    await signIn(page, 'carol')
    // Gone if anything reloads the page: the refresh must happen behind the SPA's back.
    await page.evaluate(() => {
      ;(globalThis as Record<string, unknown>).sameDocument = true
    })
    const first = await callApi(page)

    // Past the access token's expiry: the SPA just calls again.
    await sleepUntil(first.exp + 0.3)
    let refreshes = idp!.counts.refreshGrants
    const second = await callApi(page)
    expect(second.sub).toBe('carol')
    expect(second.iat).toBeGreaterThan(first.iat)
    expect(await page.locator('#refreshed').isVisible()).toBe(true)
    expect(idp!.counts.refreshGrants).toBe(refreshes + 1)
    expect(await page.evaluate(() => (globalThis as Record<string, unknown>).sameDocument)).toBe(true)

    // A second tab of the same browser shares the session.
    const tab = await context.newPage()
    await tab.goto(`${publicUrl}/`)
    await tab.locator('#signed-in').waitFor()

    await sleepUntil(second.exp + 0.3)
    refreshes = idp!.counts.refreshGrants
    const invalid = idp!.counts.invalidGrants
    // Both tabs click "Call API" at one wall-clock instant, scheduled inside each
    // page, so neither waits for the other's round trip through Playwright.
    const at = Date.now() + 300
    await Promise.all(
      [page, tab].map((p) =>
        p.evaluate((when) => {
          setTimeout(() => document.querySelector('#call-api')!.click(), when - Date.now())
        }, at),
      ),
    )
    const [a, b] = await Promise.all([page, tab].map((p) => waitForResult(p, second.iat)))
    expect(a!.iat).toBeGreaterThan(second.iat)
    // One refresh served both: the same new access token reached the API twice.
    expect(b!.iat).toBe(a!.iat)
    expect(b!.exp).toBe(a!.exp)
    expect(idp!.counts.refreshGrants).toBe(refreshes + 1)
    expect(idp!.counts.invalidGrants).toBe(invalid)
    for (const p of [page, tab]) expect(await p.locator('dd[data-result="status"]').textContent()).toBe('200 OK')
  })

  it('signs out at tokenward and the IdP; history and the old cookie bring nothing back', async () => {
    await signIn(page, 'dave')
    const signedInEntry = await historyIndex(page)
    const old = (await context.cookies(publicUrl)).find((c) => c.name === bff!.config.cookie.name)!
    expect(old).toBeDefined()
    // The replay below works while the session lives, so its 401 later means
    // something.
    expect(await replayCookie(old.value)).toBe(200)
    const revocations = idp!.counts.revocations

    await signOut(page)
    // tokenward revoked the refresh token at the IdP and cleared the cookie
    // (security model S23, S50).
    expect(idp!.counts.revocations).toBe(revocations + 1)
    expect((await context.cookies(publicUrl)).map((c) => c.name)).not.toContain(bff!.config.cookie.name)

    // Back through history (past the IdP's confirmation) to the entry that
    // showed the signed-in SPA.
    await backTo(page, signedInEntry)
    await page.locator('#signed-out').waitFor()
    expect(await page.locator('#signed-in').isHidden()).toBe(true)
    expect(await sessionStatus(page)).toBe(401)

    // The old cookie value, replayed in a browser that never logged out, is dead
    // (security model S50).
    expect(await replayCookie(old.value)).toBe(401)
  })

  it('a sign-out in one tab shows the other tab signed out within a second, with no click, reload or poll', async () => {
    await signIn(page, 'grace')
    const other = await context.newPage()
    const stream = await watchEventStream(other)
    const sessionChecks: string[] = []
    other.on('request', (r) => {
      if (new URL(r.url()).pathname === '/auth/session') sessionChecks.push(r.url())
    })
    await other.goto(`${publicUrl}/`)
    await other.locator('#signed-in').waitFor()
    // Gone if anything reloads the tab.
    await other.evaluate(() => {
      ;(globalThis as Record<string, unknown>).sameDocument = true
    })
    // tokenward listens for the session's end before it sends `session`, so
    // from here on the tab cannot miss it.
    await stream.next('session')
    const checks = sessionChecks.length

    const loggedOut = page.waitForResponse((r) => new URL(r.url()).pathname === '/auth/logout' && r.request().method() === 'POST')
    await page.locator('#sign-out').click()
    expect((await loggedOut).status()).toBe(200)
    const started = Date.now()
    // Nothing touches the other tab: it hears it on GET /auth/events.
    await other.locator('#signed-out').waitFor({ timeout: 1_500 })
    expect(Date.now() - started).toBeLessThan(1_500)
    expect(await stream.next('session_ended')).toEqual({ reason: 'logout' })
    expect(await other.locator('#notice').textContent()).toBe('You signed out in another tab or window.')
    expect(await other.locator('#who').isHidden()).toBe(true)
    expect(sessionChecks.length, 'the other tab asked /auth/session').toBe(checks)
    expect(await other.evaluate(() => (globalThis as Record<string, unknown>).sameDocument)).toBe(true)
    expect(await sessionStatus(other)).toBe(401)

    // The tab that signed out still goes through the IdP's end-session page
    // (its own session_ended did not pull it back early) and lands signed out.
    await finishSignOut(page)
  })

  // Regression: with the back/forward cache that real Chromium has on
  // (Playwright turns it off), Back after sign-out restored the SPA as it was,
  // still showing the user. index.html is now no-store and the SPA re-checks
  // the session on `pageshow`.
  it('with the real back/forward cache, Back after sign-out shows the SPA signed out', async () => {
    bfcacheBrowser ??= await launchBrowser(true)
    const real = await newContext(bfcacheBrowser)
    const tab = await real.newPage()
    await signIn(tab, 'frank')
    const signedInEntry = await historyIndex(tab)
    await signOut(tab)
    await backTo(tab, signedInEntry)
    expect(await sessionStatus(tab)).toBe(401)
    // Short: the page either re-checked the session at once or never will.
    await tab.locator('#signed-out').waitFor({ timeout: 2_000 })
  })

  it('refuses CSRF and grants no CORS to pages of another origin', async () => {
    await signIn(page, 'erin')
    const target = `${publicUrl}/api/hello`
    const getsFor = (events: Array<Record<string, unknown>>) => events.filter((e) => e.method === 'GET' && e.path === '/api/hello').length

    // 127.0.0.1 is another site than localhost, so the Strict cookie stays home;
    // localhost on another port is the same site but another origin, so the
    // cookie goes along and only the X-CSRF header and CORS stand in the way.
    const origins = [
      { origin: `http://127.0.0.1:${attackerPort}`, sameSite: false },
      { origin: `http://localhost:${attackerPort}`, sameSite: true },
    ]
    for (const { origin, sameSite } of origins) {
      const evil = await context.newPage()
      const wire = await watchWire(evil, target)
      await evil.goto(`${origin}/`)
      const hits = counter!.hits.length

      // (a) A simple GET needs no preflight: the browser sends it, tokenward
      // refuses it (security model S26) and the page cannot read the answer (#21).
      let rejected = csrfRejections()
      expect(await crossOriginFetch(evil, target, {}), origin).toEqual({ ok: false, name: 'TypeError' })
      const plain = await wire.next(1)
      expect(
        plain.map((r) => r.method),
        origin,
      ).toEqual(['GET'])
      expect(sessionCookieSent(plain[0]!), origin).toBe(sameSite)
      expect(getsFor(csrfRejections()), origin).toBe(getsFor(rejected) + 1)

      // (b) With the header it needs a preflight, which tokenward never grants, so
      // the GET itself never leaves the browser (security model S27).
      rejected = csrfRejections()
      expect(await crossOriginFetch(evil, target, { 'X-CSRF': '1' }), origin).toEqual({ ok: false, name: 'TypeError' })
      const preflighted = await wire.next(1)
      expect(
        preflighted.map((r) => r.method),
        origin,
      ).toEqual(['OPTIONS'])
      expect(getsFor(csrfRejections()), origin).toBe(getsFor(rejected))

      // (c) An auto-submitted form POST: a navigation without X-CSRF, so 403
      // (security model S26, S28); cross-site it does not even carry the
      // Strict session cookie (#15).
      const posted = evil.waitForResponse((r) => r.url() === target && r.request().method() === 'POST')
      await evil.goto(`${origin}/form`)
      const response = await posted
      expect(response.status(), origin).toBe(403)
      expect(await response.json(), origin).toMatchObject({ error: 'csrf_failed' })
      const form = await wire.next(1)
      expect(
        form.map((r) => r.method),
        origin,
      ).toEqual(['POST'])
      expect(sessionCookieSent(form[0]!), origin).toBe(sameSite)

      // Whatever the browser sent, nothing reached the API.
      expect(counter!.hits.length, origin).toBe(hits)
      await evil.close()
    }

    // The attacks logged no one out: the user's own tab still works.
    expect((await callApi(page)).sub).toBe('erin')
  })
})

// ---------------------------------------------------------------------------
// Browser helpers

/**
 * Playwright turns Chromium's back/forward cache off by default; `realBfcache`
 * keeps it on, as in the browsers users have.
 */
function launchBrowser(realBfcache = false): Promise<Browser> {
  return launchChromium([], realBfcache ? { ignoreDefaultArgs: ['--disable-back-forward-cache'] } : {})
}

async function newContext(on: Browser = browser!): Promise<BrowserContext> {
  const created = await on.newContext({ viewport: VIEWPORT, deviceScaleFactor: 1 })
  // Fail with Playwright's own message (what it waited for) well before vitest's timeout.
  created.setDefaultTimeout(8_000)
  contexts.push(created)
  return created
}

/** Signs in from the SPA's own "Sign in" button through the IdP's login form. */
function signIn(p: Page, username: string): Promise<void> {
  return signInAtDemoSpa(p, publicUrl, idp!.issuer, username, PASSWORD)
}

async function submitLogin(p: Page, username: string): Promise<void> {
  await submitDevIdpLogin(p, publicUrl, username, PASSWORD)
  expect(await p.locator('dd[data-field="sub"]').textContent()).toBe(username)
}

interface Hello {
  message: string
  sub: string
  scope: string
  iat: number
  exp: number
}

/** Clicks "Call API" and returns the API's answer as the SPA shows it. */
async function callApi(p: Page): Promise<Hello> {
  const done = p.waitForResponse((r) => new URL(r.url()).pathname === '/api/hello')
  await p.locator('#call-api').click()
  const response = await done
  expect(response.status()).toBe(200)
  // The SPA renders the body into #raw once it has it.
  return waitForResult(p, -1, await response.text())
}

/** Waits until the page shows an API answer with a token newer than `afterIat`. */
async function waitForResult(p: Page, afterIat: number, expected?: string): Promise<Hello> {
  let result: Hello | undefined
  await expect
    .poll(
      async () => {
        const raw = await p.locator('#raw').textContent()
        if (!raw) return false
        const parsed = JSON.parse(raw) as Hello
        if (typeof parsed.iat !== 'number' || parsed.iat <= afterIat) return false
        if (expected !== undefined && JSON.stringify(parsed) !== JSON.stringify(JSON.parse(expected))) return false
        result = parsed
        return true
      },
      { timeout: 10_000, interval: 50 },
    )
    .toBe(true)
  return result!
}

/**
 * Puts a session cookie value into a fresh browser context, opens the SPA there
 * and returns the status of /auth/session. The cookie gets `domain`, not `url`:
 * with a URL Playwright derives Secure from the http scheme, which a __Host-
 * cookie cannot have; a plain `domain` makes a host-only cookie in Chromium.
 */
async function replayCookie(value: string): Promise<number> {
  const replay = await newContext()
  await replay.addCookies([
    {
      name: bff!.config.cookie.name,
      value,
      domain: 'localhost',
      path: '/',
      httpOnly: true,
      secure: true,
      sameSite: 'Strict',
    },
  ])
  const p = await replay.newPage()
  await p.goto(`${publicUrl}/`)
  const status = await sessionStatus(p)
  // The SPA agrees with the server.
  await p.locator(status === 200 ? '#signed-in' : '#signed-out').waitFor()
  await replay.close()
  return status
}

/** Clicks "Sign out" and confirms at the IdP; ends on the signed-out SPA. */
async function signOut(p: Page): Promise<void> {
  await p.locator('#sign-out').click()
  await finishSignOut(p)
}

/** After "Sign out": the IdP's end-session page, its confirmation, back to the signed-out SPA. */
async function finishSignOut(p: Page): Promise<void> {
  await p.waitForURL((url) => url.origin === idp!.issuer)
  // The dev IdP asks before ending its own session.
  const confirm = p.getByRole('button', { name: 'Yes, sign me out' })
  if (await confirm.isVisible()) await confirm.click()
  await p.waitForURL(`${publicUrl}/`)
  await p.locator('#signed-out').waitFor()
  expect(await p.locator('#signed-in').isHidden()).toBe(true)
}

/**
 * Goes back in the tab's history to entry `index`. The IdP's end-session URL,
 * revisited without an IdP session, redirects straight back to the SPA, so this
 * counts history entries instead of looking at origins. 'commit': a page
 * restored from the back/forward cache fires no load event.
 */
async function backTo(p: Page, index: number): Promise<void> {
  for (let i = 0; i < 4 && (await historyIndex(p)) > index; i++) {
    await p.goBack({ waitUntil: 'commit' })
    // Settled, so the DevTools session is not caught between two renderers
    // (127.0.0.1 and localhost live in different processes).
    await p.waitForFunction(() => document.readyState === 'complete')
  }
  expect(await historyIndex(p)).toBe(index)
  expect(p.url()).toBe(`${publicUrl}/`)
}

/** Where the tab stands in its session history (DevTools protocol). */
async function historyIndex(p: Page): Promise<number> {
  const cdp = await p.context().newCDPSession(p)
  try {
    return (await cdp.send('Page.getNavigationHistory')).currentIndex
  } finally {
    await cdp.detach()
  }
}

/** GET /auth/session from the page, as the SPA would send it. */
function sessionStatus(p: Page): Promise<number> {
  return p.evaluate(async () => (await fetch('/auth/session', { headers: { 'X-CSRF': '1' } })).status)
}

async function crossOriginFetch(
  p: Page,
  url: string,
  headers: Record<string, string>,
): Promise<{ ok: boolean; name?: string; status?: number }> {
  return p.evaluate(
    async ({ url, headers }) => {
      try {
        const res = await fetch(url, { credentials: 'include', headers })
        return { ok: true, status: res.status }
      } catch (err) {
        return { ok: false, name: (err as Error).name }
      }
    },
    { url, headers },
  )
}

interface WireRequest {
  method: string
  /** Cookie name → the reasons Chromium withheld it; an empty list means it was sent. */
  cookies: Map<string, string[]>
}

/**
 * What really left the browser for `url`, from the DevTools protocol. Chromium
 * emits requestWillBeSentExtraInfo only for a request it puts on the network,
 * with every cookie it considered and why it withheld one; a fetch whose
 * preflight failed shows up in requestWillBeSent and never gets one.
 */
async function watchWire(p: Page, url: string): Promise<{ next(count: number): Promise<WireRequest[]> }> {
  const cdp = await p.context().newCDPSession(p)
  const methods = new Map<string, string>()
  const sent: Array<{ id: string; cookies: Map<string, string[]> }> = []
  const taken = new Set<string>()
  cdp.on('Network.requestWillBeSent', (e) => {
    if (e.request.url === url) methods.set(e.requestId, e.request.method)
  })
  cdp.on('Network.requestWillBeSentExtraInfo', (e) => {
    sent.push({ id: e.requestId, cookies: new Map(e.associatedCookies.map((a) => [a.cookie.name, a.blockedReasons as string[]])) })
  })
  await cdp.send('Network.enable')
  // The two events of one request come in either order: join them when asked.
  const fresh = () => sent.filter((r) => methods.has(r.id) && !taken.has(r.id))
  return {
    /** The requests to `url` sent since the last call, once at least `count` are in. */
    async next(count) {
      await expect.poll(() => fresh().length, { timeout: 5_000, interval: 20 }).toBeGreaterThanOrEqual(count)
      const out = fresh()
      for (const r of out) taken.add(r.id)
      return out.map((r) => ({ method: methods.get(r.id)!, cookies: r.cookies }))
    },
  }
}

/**
 * The server-sent events a tab's EventSource receives, from the DevTools
 * protocol; attach before the page opens its stream.
 */
async function watchEventStream(p: Page): Promise<{ next(name: string): Promise<unknown> }> {
  const cdp = await p.context().newCDPSession(p)
  const received: Array<{ name: string; data: string }> = []
  let taken = 0
  cdp.on('Network.eventSourceMessageReceived', (e) => received.push({ name: e.eventName, data: e.data }))
  await cdp.send('Network.enable')
  return {
    /** The data (parsed) of the next event called `name`, skipping others. */
    async next(name) {
      await expect.poll(() => received.slice(taken).some((e) => e.name === name), { timeout: 5_000, interval: 20 }).toBe(true)
      const index = received.findIndex((e, i) => i >= taken && e.name === name)
      taken = index + 1
      return JSON.parse(received[index]!.data) as unknown
    },
  }
}

function sessionCookieSent(request: WireRequest): boolean {
  return request.cookies.get(bff!.config.cookie.name)?.length === 0
}

interface Captured {
  url: string
  status: number
  headers: string
  setCookies: string[]
  /** undefined when the browser kept no body (redirects). */
  body?: string
  /** A server-sent event stream, whose body capture() does not wait for. */
  stream?: true
}

async function capture(response: Response): Promise<Captured> {
  const headers = await response.headersArray()
  // An event stream's body is complete only when the stream ends, which an
  // open tab's never does: the caller reads it another way.
  if ((response.headers()['content-type'] ?? '').startsWith('text/event-stream')) {
    return {
      url: response.url(),
      status: response.status(),
      headers: headers.map((h) => `${h.name}: ${h.value}`).join('\n'),
      setCookies: [],
      stream: true,
    }
  }
  let body: string | undefined
  try {
    body = (await response.body()).toString('utf8')
  } catch {
    // Redirect responses have no body to read.
  }
  return {
    url: response.url(),
    status: response.status(),
    headers: headers.map((h) => `${h.name}: ${h.value}`).join('\n'),
    setCookies: headers.filter((h) => h.name.toLowerCase() === 'set-cookie').flatMap((h) => h.value.split('\n')),
    ...(body === undefined ? {} : { body }),
  }
}

function jarWith(sessionCookie: string): CookieJar {
  const jar = new CookieJar()
  jar.set(bff!.config.cookie.name, sessionCookie, 'localhost')
  return jar
}

function csrfRejections(): Array<Record<string, unknown>> {
  return auditEvents(bff!.logs).filter((e) => e.event === 'csrf_rejected')
}

function sleepUntil(epochSeconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, epochSeconds * 1000 - Date.now())))
}

// ---------------------------------------------------------------------------
// Servers of this file

interface CountingProxy {
  url: string
  /** Every request that reached the demo API through tokenward. */
  hits: Array<{ method: string; path: string; bearer: boolean }>
  close(): Promise<void>
}

/** Sits between tokenward and the demo API, so tests count what really got through. */
async function startCountingProxy(upstream: string): Promise<CountingProxy> {
  const target = new URL(upstream)
  const hits: CountingProxy['hits'] = []
  const server = createServer((req, res) => {
    hits.push({ method: req.method ?? '', path: req.url ?? '', bearer: /^Bearer /i.test(req.headers.authorization ?? '') })
    const out = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers)
      up.pipe(res)
    })
    out.on('error', () => {
      if (!res.headersSent) res.writeHead(502)
      res.end()
    })
    req.pipe(out)
  })
  const port = await listen(server)
  return { url: `http://127.0.0.1:${port}`, hits, close: () => closeServer(server) }
}

/** Another origin's pages: a blank one to run fetches from, and an auto-submitting form. */
async function startAttacker(bffUrl: string): Promise<{ server: Server; port: number }> {
  const blank = '<!doctype html><meta charset="utf-8"><title>elsewhere</title><p>another origin</p>'
  const form = `<!doctype html><meta charset="utf-8"><title>elsewhere</title>
<form method="post" action="${bffUrl}/api/hello"><input name="note" value="forged"></form>
<script>document.forms[0].submit()</script>`
  const server = createServer((req, res) => {
    const html = req.url === '/form' ? form : blank
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' })
    res.end(html)
  })
  return { server, port: await listen(server) }
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  return (server.address() as AddressInfo).port
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve())
    server.closeAllConnections()
  })
}
