// Front-channel logout in a real Chromium (OpenID Connect Front-Channel Logout
// 1.0; security model S75, S76): the user signs out AT THE IdP, whose "signed
// out" page frames tokenward's /auth/frontchannel-logout cross-site. The
// session cookie is SameSite=Strict and never travels with that frame, so this
// is the proof that the endpoint needs none, and that the IdP may frame it.

import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { signInAtDemoSpa } from '../helpers/demo-spa.js'
import { launchChromium, requireChromium } from '../helpers/chromium.js'
import { afterAll, beforeAll, expect, inject, it } from 'vitest'
import { startDevIdp, type DevIdp } from '../../demo/idp.js'
import { auditEvents, startBff, type TestBff } from '../helpers/bff.js'
import { CookieJar } from '../helpers/login.js'
import { freePort } from '../helpers/ports.js'
import { sessionOf } from '../helpers/session.js'
import { startEchoUpstream, type EchoUpstream } from '../helpers/upstream.js'

const CLIENT_ID = 'tokenward-e2e-frontchannel'
const PASSWORD = 'demo'
const SPA_DIR = fileURLToPath(new URL('../../demo/spa', import.meta.url))

let idp: DevIdp | undefined
let upstream: EchoUpstream | undefined
let bff: TestBff | undefined
let browser: Browser | undefined
let context: BrowserContext | undefined
/** tokenward on localhost; the IdP on 127.0.0.1: another site. */
let publicUrl = ''

beforeAll(async () => {
  requireChromium('the browser end-to-end tests')
  const bffPort = await freePort()
  publicUrl = `http://localhost:${bffPort}`
  const clientSecret = randomBytes(24).toString('base64url')
  idp = await startDevIdp({
    password: PASSWORD,
    frontchannelLogout: true,
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: clientSecret,
        redirect_uris: [`${publicUrl}/auth/callback`],
        post_logout_redirect_uris: [`${publicUrl}/`],
        // Front-channel only: no back-channel logout could end the session instead.
        frontchannel_logout_uri: `${publicUrl}/auth/frontchannel-logout`,
        frontchannel_logout_session_required: true,
      },
    ],
  })
  upstream = await startEchoUpstream()
  bff = await startBff({
    issuer: idp.issuer,
    redisUrl: inject('redisUrl'),
    clientId: CLIENT_ID,
    clientSecret,
    port: bffPort,
    routes: [{ prefix: '/api', upstream: upstream.url, token: 'user' }],
    env: { BFF_PUBLIC_URL: publicUrl, BFF_STATIC_DIR: SPA_DIR },
  })
  browser = await launchChromium()
  context = await browser.newContext()
  context.setDefaultTimeout(8_000)
})

afterAll(async () => {
  await context?.close()
  await browser?.close()
  await Promise.allSettled([bff?.close(), upstream?.close()])
  await idp?.close()
})

function signIn(p: Page, username: string): Promise<void> {
  return signInAtDemoSpa(p, publicUrl, idp!.issuer, username, PASSWORD)
}

it('a logout at the IdP ends the tokenward session through the IdP’s cross-site iframe, with no cookie, and the open tab hears it', async () => {
  const page = await context!.newPage()
  await signIn(page, 'alice')
  const cookieName = bff!.config.cookie.name
  const cookie = (await context!.cookies(publicUrl)).find((c) => c.name === cookieName)
  expect(cookie?.sameSite).toBe('Strict')
  const jar = new CookieJar()
  jar.set(cookieName, cookie!.value, 'localhost')
  const session = (await sessionOf(bff!, jar))!
  expect(session.data.idpSid).toBeTruthy()

  // Control: Playwright reports the Cookie header a same-site request carried.
  const sameSite = page.waitForRequest((r) => new URL(r.url()).pathname === '/auth/session')
  await page.reload()
  expect(await (await sameSite).headerValue('cookie')).toContain(`${cookieName}=`)
  await page.locator('#signed-in').waitFor()

  // Another tab of the app stays open; it learns of the logout on /auth/events.
  const other = await context!.newPage()
  await other.goto(`${publicUrl}/`)
  await other.locator('#signed-in').waitFor()

  // The user goes to the IdP and signs out there (not through tokenward).
  const framed = page.waitForResponse((r) => r.url().startsWith(`${publicUrl}/auth/frontchannel-logout?`))
  await page.goto(`${idp!.issuer}${idp!.provider.pathFor('end_session')}`)
  await page.getByRole('button', { name: 'Yes, sign me out' }).click()
  const response = await framed
  expect(response.status()).toBe(200)
  // The frame is cross-site (127.0.0.1 frames localhost) and carried no cookie.
  expect(new URL(page.url()).origin).toBe(idp!.issuer)
  expect(response.frame().parentFrame()).toBe(page.mainFrame())
  expect((await response.request().headerValue('cookie')) ?? '').not.toContain(`${cookieName}=`)
  const target = new URL(response.url())
  expect(target.searchParams.get('iss')).toBe(idp!.issuer)
  expect(target.searchParams.get('sid')).toBe(session.data.idpSid)
  // The IdP is allowed to frame it (frame-ancestors): the page rendered inside.
  await expect.poll(() => response.frame().locator('body').textContent()).toContain('Signed out of this application')

  // The session is gone server-side, audited as a front-channel logout.
  await expect.poll(() => sessionOf(bff!, jar)).toBeNull()
  expect(auditEvents(bff!.logs).some((e) => e.event === 'frontchannel_logout' && e.sid === session.sid)).toBe(true)
  // The open tab shows it without a reload.
  await other.locator('#signed-out').waitFor()
  expect(await other.locator('#notice').textContent()).toBe('You were signed out at the identity provider.')
  // And the cookie the browser still holds no longer opens a session.
  expect(await other.evaluate(async () => (await fetch('/auth/session', { headers: { 'X-CSRF': '1' } })).status)).toBe(401)
})
