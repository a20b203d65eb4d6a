// Interop: tokenward against LemonLDAP::NG 2.16 (Debian's packages), an
// OpenID Provider nobody here wrote, driven through its own pages in Chromium.
// What LLNG does differently from the dev IdP is asserted as it happens: no
// refresh-token rotation, no revocation endpoint, no back-channel logout, a
// logout confirmation page, online refresh tokens ending with the IdP session
// and offline ones (`offline_access`) outliving it.

import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { launchChromium, requireChromium } from '../helpers/chromium.js'
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest'
import { startBff, type TestBff } from '../helpers/bff.js'
import { startLemonLdap, type LemonLdap } from '../helpers/lemonldap.js'
import { CookieJar } from '../helpers/login.js'
import { freePort } from '../helpers/ports.js'
import { expireAccessToken, sessionOf, spaFetch } from '../helpers/session.js'
import { startEchoUpstream, type EchoUpstream } from '../helpers/upstream.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const CLIENT_ID = 'tokenward-interop'
// A demo user of the packaged configuration (Demo authentication: password = login).
const USER = 'dwho'
// Short, so the refresh storm waits for a real expiry; BFF_REFRESH_SKEW=1 refreshes in its last second.
const ACCESS_TOKEN_TTL = 4

// The page.evaluate callbacks run in Chromium; the fetch they call has the
// same shape as Node's, whose types they are checked against.

let llng: LemonLdap | undefined
let upstream: EchoUpstream | undefined
/** Asks for `offline_access` (tokenward's default scopes). */
let offline: TestBff | undefined
/** Asks for no `offline_access`: its refresh token is an online one. */
let online: TestBff | undefined
let browser: Browser | undefined
const contexts: BrowserContext[] = []
const clientSecret = randomBytes(24).toString('base64url')
/** A port and origin registered at LLNG for an instance a test starts itself. */
let spare = { port: 0, origin: '' }
let startInstance: (port: number, origin: string, env: Record<string, string>) => Promise<TestBff>

/** Runs `use` with a third tokenward instance on the spare port (registered at LLNG), stopped afterwards. */
async function withInstance<T>(env: Record<string, string>, use: (bff: TestBff) => Promise<T>): Promise<T> {
  const bff = await startInstance(spare.port, spare.origin, env)
  try {
    return await use(bff)
  } finally {
    await bff.close()
  }
}

/** tokenward's public origin for an instance: localhost, so LLNG on 127.0.0.1 is another site. */
const publicUrl = (bff: TestBff) => bff.env.BFF_PUBLIC_URL!

beforeAll(async () => {
  requireChromium('the interop tests')
  const ports = [await freePort(), await freePort(), await freePort()]
  const origins = ports.map((p) => `http://localhost:${p}`)
  upstream = await startEchoUpstream()
  llng = await startLemonLdap({
    clientId: CLIENT_ID,
    clientSecret,
    redirectUris: origins.map((o) => `${o}/auth/callback`),
    postLogoutRedirectUris: origins.map((o) => `${o}/`),
    allowOffline: true,
    accessTokenTtl: ACCESS_TOKEN_TTL,
    // Pointed at the echo upstream, which records what the browser loads.
    frontChannelLogout: { url: `${upstream.url}/frontchannel-logout`, sessionRequired: true },
    // Applies only to end-session requests with an id_token_hint (see the logout tests).
    logoutBypassConfirm: true,
  })
  // client_secret_post: see the client authentication test below for why not tokenward's default.
  startInstance = (port: number, origin: string, env: Record<string, string>) =>
    startBff({
      issuer: llng!.issuer,
      redisUrl: inject('redisUrl'),
      clientId: CLIENT_ID,
      clientSecret,
      port,
      routes: [{ prefix: '/api', upstream: upstream!.url, token: 'user' }],
      env: { BFF_PUBLIC_URL: origin, BFF_REFRESH_SKEW: '1', BFF_CLIENT_AUTH: 'client_secret_post', ...env },
    })
  offline = await startInstance(ports[0]!, origins[0]!, { BFF_SCOPES: 'openid profile email offline_access' })
  online = await startInstance(ports[1]!, origins[1]!, { BFF_SCOPES: 'openid profile email' })
  spare = { port: ports[2]!, origin: origins[2]! }
  browser = await launchChromium()
}, 90_000)

afterAll(async () => {
  await browser?.close()
  await Promise.allSettled([offline?.close(), online?.close(), upstream?.close()])
  await llng?.stop()
})

afterEach(async () => {
  await Promise.allSettled(contexts.splice(0).map((c) => c.close()))
})

async function newPage(): Promise<Page> {
  const context = await browser!.newContext()
  context.setDefaultTimeout(10_000)
  contexts.push(context)
  return context.newPage()
}

/** Logs in from tokenward's login endpoint through LLNG's own login form; returns the session cookie as a jar for spaFetch. */
async function signIn(page: Page, bff: TestBff, idp: LemonLdap = llng!): Promise<CookieJar> {
  await page.goto(`${publicUrl(bff)}/auth/login?returnTo=%2F`)
  await page.waitForURL((url) => url.origin === idp.url)
  await page.locator('input[name="user"]').fill(USER)
  await page.locator('input[name="password"]').fill(USER)
  await page.locator('button[type="submit"]').first().click()
  await page.waitForURL(`${publicUrl(bff)}/`).catch(async (err: unknown) => {
    const warnings = bff.logs.filter((l) => /"level":(40|50)/.test(l)).slice(-3)
    const where = `at ${page.url()}: ${await pageText(page)}`
    throw new Error(`the login did not come back, ${where}; tokenward: ${warnings.join(' ')}; LLNG: ${idp.log.join('').slice(-1000)}`, {
      cause: err,
    })
  })
  const cookie = (await page.context().cookies(publicUrl(bff))).find((c) => c.name === bff.config.cookie.name)
  if (!cookie) throw new Error('no session cookie after the login')
  const jar = new CookieJar()
  // spaFetch talks to the instance's listening address (127.0.0.1), not its public name.
  jar.set(bff.config.cookie.name, cookie.value, new URL(bff.url).hostname)
  return jar
}

/** The visible text of the page, shortened, for failure messages. */
async function pageText(page: Page): Promise<string> {
  const text = (
    (await page
      .locator('body')
      .textContent()
      .catch(() => '')) ?? ''
  )
    .replace(/\s+/g, ' ')
    .trim()
  return text.length > 500 ? `${text.slice(0, 500)}…` : text
}

/** GET /auth/session from the page, as the SPA would call it. */
function pageSession(page: Page): Promise<{ status: number; body: Record<string, unknown> }> {
  return page.evaluate(async () => {
    const r = await fetch('/auth/session', { headers: { 'X-CSRF': '1' } })
    return { status: r.status, body: (await r.json()) as Record<string, unknown> }
  })
}

function bearer(i: number): string {
  const auth = upstream!.requests[i]?.headers.authorization ?? ''
  return /^Bearer (\S+)$/.exec(auth)?.[1] ?? ''
}

/** The iss and sid of a front-channel logout URL LLNG built (OpenID Connect Front-Channel Logout 1.0 §2). */
function frontChannelParameters(url: string | null | undefined): { iss: string | null; sid: string | null } {
  const u = new URL(url ?? '', 'http://unused')
  expect(u.pathname).toBe('/frontchannel-logout')
  return { iss: u.searchParams.get('iss'), sid: u.searchParams.get('sid') }
}

/** Logs the browser out at LLNG's portal, not through tokenward (no confirmation asked there). */
async function logoutAtIdp(page: Page, idp: LemonLdap = llng!): Promise<void> {
  await page.goto(`${idp.url}/?logout=1`)
}

describe('tokenward against LemonLDAP::NG 2.16', () => {
  it('logs in through LLNG’s login form in Chromium and lands back in the app with a session', async () => {
    const page = await newPage()
    const requests = llng!.tokenRequests().length
    await signIn(page, offline!)
    const session = await pageSession(page)
    expect(session.status).toBe(200)
    expect(session.body).toMatchObject({ authenticated: true, sub: USER })
    expect(session.body.claims).toMatchObject({ iss: llng!.issuer, aud: [CLIENT_ID] })
    // One code exchange at LLNG, accepted (this RP requires PKCE, so tokenward's code_verifier was checked).
    expect(llng!.tokenRequests().slice(requests)).toEqual([{ grant: 'authorization_code', status: 200 }])
  })

  it('forwards LLNG’s own access token to the upstream: a JWT signed by LLNG’s key, issued by it for this client', async () => {
    const page = await newPage()
    const jar = await signIn(page, offline!)
    const seen = upstream!.requests.length
    const res = await spaFetch(offline!, jar, '/api/echo')
    expect(res.status).toBe(200)
    const token = bearer(seen)
    const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(`${llng!.url}/oauth2/jwks`)), { issuer: llng!.issuer })
    expect(payload).toMatchObject({ sub: USER, client_id: CLIENT_ID })
    expect(decodeProtectedHeader(token).alg).toBe('RS256')
    expect(token).toBe((await sessionOf(offline!, jar))!.data.accessToken)
  })

  it('after the access token expires, 20 concurrent calls cause exactly one refresh request at LLNG, and all succeed', async () => {
    const page = await newPage()
    const jar = await signIn(page, offline!)
    const before = (await sessionOf(offline!, jar))!.data
    expect(before.refreshToken).toBeTruthy()
    // Wait out the real lifetime (minus BFF_REFRESH_SKEW): no white-box expiry here.
    await new Promise((r) => setTimeout(r, Math.max(0, before.accessTokenExpiresAt! - 1000 - Date.now()) + 200))
    const requests = llng!.tokenRequests().length
    const seen = upstream!.requests.length
    const results = await Promise.all(Array.from({ length: 20 }, () => spaFetch(offline!, jar, '/api/echo')))
    expect(results.map((r) => r.status)).toEqual(Array(20).fill(200))
    expect(llng!.tokenRequests().slice(requests)).toEqual([{ grant: 'refresh_token', status: 200 }])
    const tokens = new Set(upstream!.requests.slice(seen).map((_, i) => bearer(seen + i)))
    expect(tokens.size).toBe(1)
    expect(tokens.has(before.accessToken)).toBe(false)
    // LLNG 2.16 does not rotate refresh tokens: tokenward keeps the one it has.
    expect((await sessionOf(offline!, jar))!.data.refreshToken).toBe(before.refreshToken)
  })

  it('RP-initiated logout: POST /auth/logout gives LLNG’s end-session URL, LLNG asks for confirmation, the browser ends at the post-logout URL without a session', async () => {
    const page = await newPage()
    const jar = await signIn(page, offline!)
    const refreshToken = (await sessionOf(offline!, jar))!.data.refreshToken!
    const { redirectTo } = await page.evaluate(async () => {
      const r = await fetch('/auth/logout', { method: 'POST', headers: { 'X-CSRF': '1' } })
      return (await r.json()) as { redirectTo: string }
    })
    const end = new URL(redirectTo)
    expect(`${end.origin}${end.pathname}`).toBe(`${llng!.url}/oauth2/logout`)
    expect(end.searchParams.get('client_id')).toBe(CLIENT_ID)
    expect(end.searchParams.get('post_logout_redirect_uri')).toBe(`${publicUrl(offline!)}/`)
    expect(end.searchParams.has('id_token_hint')).toBe(false)
    expect((await pageSession(page)).status).toBe(401)

    await page.goto(redirectTo)
    // Without id_token_hint LLNG cannot tell which RP asks (it finds the RP,
    // and so its "bypass confirmation" option, only through the hint's azp): it asks the user.
    expect(page.url().startsWith(`${llng!.url}/oauth2/logout?`)).toBe(true)
    await page.getByText('Do you want to logout?').waitFor()
    await page.getByRole('button', { name: 'Accept' }).click()
    // With a front-channel logout URL registered, LLNG then shows an information
    // page holding the RP's iframe, and goes on by itself only after 30 s.
    expect(frontChannelParameters(await page.locator('iframe').getAttribute('src'))).toEqual({ iss: llng!.issuer, sid: USER })
    await page.getByRole('button', { name: 'Continue' }).click()
    // A GET form without fields: the post-logout URL with an empty query.
    await page.waitForURL((url) => `${url.origin}${url.pathname}` === `${publicUrl(offline!)}/`)
    expect((await pageSession(page)).status).toBe(401)
    // The LLNG session ended too: a new login shows LLNG's login form again.
    await page.goto(`${publicUrl(offline!)}/auth/login?returnTo=%2F`)
    await page.waitForURL((url) => url.origin === llng!.url)
    await page.locator('input[name="user"]').waitFor()
    // But the offline refresh token tokenward held is still good at LLNG: it
    // has no revocation endpoint (RFC 7009) and its logout ends only the SSO
    // session. Deleting it from the store is all tokenward can do.
    const grant = await fetch(`${llng!.url}/oauth2/token`, {
      method: 'POST',
      body: new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: refreshToken,
        client_id: CLIENT_ID,
        client_secret: clientSecret,
      }),
    })
    expect(grant.status).toBe(200)
  })

  it('logout at LLNG itself, without offline_access: the next refresh gets invalid_grant and the session ends with 401 login_required', async () => {
    const page = await newPage()
    const jar = await signIn(page, online!)
    expect((await spaFetch(online!, jar, '/api/echo')).status).toBe(200)
    const frontChannel = upstream!.requests.length
    await logoutAtIdp(page)
    // LLNG's logout page loads the RP's front-channel logout URL in an iframe
    // (OpenID Connect Front-Channel Logout 1.0 §2) with the issuer and, as sid,
    // the user's sub: LLNG 2.16's ID tokens carry no sid claim.
    await expect.poll(() => upstream!.requests.slice(frontChannel).filter((r) => r.url.startsWith('/frontchannel-logout')).length).toBe(1)
    const loaded = upstream!.requests.slice(frontChannel).find((r) => r.url.startsWith('/frontchannel-logout'))!
    expect(frontChannelParameters(loaded.url)).toEqual({ iss: llng!.issuer, sid: USER })
    expect((await sessionOf(online!, jar))!.data.idpSid).toBeUndefined()
    // What LLNG sends, at tokenward's front-channel endpoint: a user id is not an
    // IdP session id, and a guessable one must not end sessions (security model
    // S75), so nothing ends here; the refresh below does it.
    const frontchannel = new URL(`${publicUrl(online!)}/auth/frontchannel-logout`)
    frontchannel.search = new URL(loaded.url, upstream!.url).search
    const answer = await fetch(frontchannel)
    expect(answer.status).toBe(200)
    expect(await sessionOf(online!, jar)).not.toBeNull()

    await expireAccessToken(online!, jar)
    const requests = llng!.tokenRequests().length
    const res = await spaFetch(online!, jar, '/api/echo')
    expect(res.status).toBe(401)
    expect(await res.json()).toMatchObject({ error: 'login_required' })
    expect(llng!.tokenRequests().slice(requests)).toEqual([{ grant: 'refresh_token', status: 400 }])
    expect((await spaFetch(online!, jar, '/auth/session')).status).toBe(401)
    expect(await sessionOf(online!, jar)).toBeNull()
  })

  it('logout at LLNG itself, with offline_access: the offline refresh token outlives the IdP session and the session keeps working', async () => {
    const page = await newPage()
    const jar = await signIn(page, offline!)
    await logoutAtIdp(page)
    for (let i = 0; i < 2; i++) {
      const old = (await expireAccessToken(offline!, jar)).data
      const requests = llng!.tokenRequests().length
      const res = await spaFetch(offline!, jar, '/api/echo')
      expect(res.status).toBe(200)
      expect(llng!.tokenRequests().slice(requests)).toEqual([{ grant: 'refresh_token', status: 200 }])
      expect((await sessionOf(offline!, jar))!.data.accessToken).not.toBe(old.accessToken)
    }
    expect((await spaFetch(offline!, jar, '/auth/session')).status).toBe(200)
  })

  it('client_secret_basic with a "-" in the client id: LLNG refuses the code exchange, since it does not form-decode Basic credentials (RFC 6749 §2.3.1)', async () => {
    await withInstance({ BFF_CLIENT_AUTH: 'client_secret_basic' }, async (bff) => {
      const page = await newPage()
      const requests = llng!.tokenRequests().length
      await page.goto(`${publicUrl(bff)}/auth/login?returnTo=%2F`)
      await page.locator('input[name="user"]').fill(USER)
      await page.locator('input[name="password"]').fill(USER)
      await page.locator('button[type="submit"]').first().click()
      await page.waitForURL((url) => url.origin === publicUrl(bff) && url.pathname === '/auth/callback')
      await page.getByText('The sign-in could not be completed').waitFor()
      expect(llng!.tokenRequests().slice(requests)).toEqual([{ grant: 'authorization_code', status: 401 }])
      // openid-client form-encodes the id before Basic (RFC 6749 §2.3.1), "-" as %2D; LLNG looks the encoded id up as it is.
      expect(llng!.log.join('')).toContain(`No registered Relying Party found with client_id ${CLIENT_ID.replace('-', '%2D')}`)
      expect((await pageSession(page)).status).toBe(401)
    })
  })

  it('RP-initiated logout with BFF_LOGOUT_ID_TOKEN_HINT=true: LLNG skips its confirmation for an RP set to bypass it', async () => {
    await withInstance({ BFF_LOGOUT_ID_TOKEN_HINT: 'true' }, async (bff) => {
      const page = await newPage()
      await signIn(page, bff)
      const { redirectTo } = await page.evaluate(async () => {
        const r = await fetch('/auth/logout', { method: 'POST', headers: { 'X-CSRF': '1' } })
        return (await r.json()) as { redirectTo: string }
      })
      expect(new URL(redirectTo).searchParams.get('id_token_hint')).toMatch(/^eyJ/)
      await page.goto(redirectTo)
      // No "Do you want to logout?": straight to the information page with the front-channel iframe.
      expect(await page.getByText('Do you want to logout?').count()).toBe(0)
      expect(frontChannelParameters(await page.locator('iframe').getAttribute('src'))).toEqual({ iss: llng!.issuer, sid: USER })
      await page.getByRole('button', { name: 'Continue' }).click()
      await page.waitForURL((url) => `${url.origin}${url.pathname}` === `${publicUrl(bff)}/`)
      expect((await pageSession(page)).status).toBe(401)
    })
  })
})

describe('an RP that LemonLDAP::NG does not allow offline access', () => {
  let strict: LemonLdap | undefined
  beforeAll(async () => {
    strict = await startLemonLdap({
      clientId: CLIENT_ID,
      clientSecret,
      redirectUris: [`${spare.origin}/auth/callback`],
      postLogoutRedirectUris: [`${spare.origin}/`],
      allowOffline: false,
    })
  })
  afterAll(() => strict?.stop())

  it('offline_access asked for anyway: LLNG ignores it, and the refresh token ends with the LLNG session', async () => {
    const scopes = 'openid profile email offline_access'
    await withInstance({ BFF_ISSUER: strict!.issuer, BFF_SCOPES: scopes }, async (bff) => {
      const page = await newPage()
      const jar = await signIn(page, bff, strict)
      expect((await sessionOf(bff, jar))!.data.refreshToken).toBeTruthy()
      await logoutAtIdp(page, strict)
      await expireAccessToken(bff, jar)
      const requests = strict!.tokenRequests().length
      const res = await spaFetch(bff, jar, '/api/echo')
      expect(res.status).toBe(401)
      expect(await res.json()).toMatchObject({ error: 'login_required' })
      expect(strict!.tokenRequests().slice(requests)).toEqual([{ grant: 'refresh_token', status: 400 }])
    })
  })
})

// `tokenward doctor` run from source (tsx): the same CLI as the production
// build, without the build's time (test/integration/cli.test.ts runs the build).
describe('tokenward doctor against LemonLDAP::NG 2.16', () => {
  function doctor(env: Record<string, string>): Promise<{ status: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'doctor'], {
        cwd: ROOT,
        env: { PATH: process.env.PATH, ...env },
      })
      let stdout = ''
      let stderr = ''
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
      child.on('close', (status) => resolve({ status, stdout, stderr }))
    })
  }

  it('exits 0: client authentication works, and what LLNG does not advertise (revocation, back-channel logout) is a warning', async () => {
    const r = await doctor(offline!.env)
    expect(r.stdout, r.stderr).not.toMatch(/^FAIL/m)
    expect(r.status).toBe(0)
    expect(r.stdout).toMatch(/^PASS +client authentication: client_secret_post as tokenward-interop accepted/m)
    expect(r.stdout).toMatch(/^WARN +revocation .*refresh tokens outlive logout/m)
    expect(r.stdout).toMatch(/^WARN +back-channel logout .*sessions ended at the IdP are not ended here/m)
    expect(r.stdout).toMatch(/^PASS +end session \[advertised\]: .*\/oauth2\/logout$/m)
  })

  it('with client_secret_basic it exits 1: LLNG refuses the form-encoded client id (invalid_client)', async () => {
    const r = await doctor({ ...offline!.env, BFF_CLIENT_AUTH: 'client_secret_basic' })
    expect(r.status).toBe(1)
    expect(r.stdout).toMatch(/^FAIL +client authentication: client_secret_basic as tokenward-interop refused .*invalid_client/m)
    expect(r.stdout).toMatch(/^FAIL +client authentication: .*try BFF_CLIENT_AUTH=client_secret_post\)$/m)
  })
})
