import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CookieJar, completeAtIdp, login, startLogin } from '../helpers/login.js'
import { startWorld, type World } from '../helpers/world.js'

let world: World

beforeAll(async () => {
  // Front-channel parameters (BFF_PAR=never): some cases read `state` from the authorization URL.
  world = await startWorld({ env: { BFF_PAR: 'never' } })
})
afterAll(() => world?.close())

async function callback(jar: CookieJar, url: string, accept = 'application/json'): Promise<Response> {
  const headers: Record<string, string> = { accept }
  const cookie = jar.header(url)
  if (cookie) headers.cookie = cookie
  return fetch(url, { headers, redirect: 'manual' })
}

/** Asserts a refused callback: 400, no session cookie, and no token request at the IdP. */
async function expectRefused(res: Response, tokenRequestsBefore: number, checkTokenRequests = true): Promise<void> {
  expect(res.status).toBe(400)
  expect(res.headers.getSetCookie().some((l) => l.startsWith('__Host-tokenward='))).toBe(false)
  if (res.headers.get('content-type')?.includes('json')) expect(await res.json()).toMatchObject({ error: 'invalid_request' })
  if (checkTokenRequests) expect(world.idp.counts.tokenRequests).toBe(tokenRequestsBefore)
}

describe('the callback refuses what it did not start (security model S2, S3)', () => {
  it('tampered state: 400, no session, no token request (#3)', async () => {
    const jar = new CookieJar()
    const cb = new URL(await completeAtIdp(await startLogin(world.bff.url, jar), jar))
    cb.searchParams.set('state', 'tampered')
    const before = world.idp.counts.tokenRequests
    await expectRefused(await callback(jar, cb.href), before)
  })

  it('missing state: 400 (#3)', async () => {
    const jar = new CookieJar()
    const cb = new URL(await completeAtIdp(await startLogin(world.bff.url, jar), jar))
    cb.searchParams.delete('state')
    const before = world.idp.counts.tokenRequests
    await expectRefused(await callback(jar, cb.href), before)
  })

  it('a replayed callback: 400 and no second token request (#2)', async () => {
    const r = await login(world.bff.url)
    const before = world.idp.counts.tokenRequests
    await expectRefused(await callback(r.jar, r.callbackUrl), before)
  })

  it('a callback in a browser without the transaction cookie (login CSRF, code injection): 400 (#4)', async () => {
    const a = new CookieJar()
    const cb = await completeAtIdp(await startLogin(world.bff.url, a), a)
    const before = world.idp.counts.tokenRequests
    await expectRefused(await callback(new CookieJar(), cb), before)
    // The victim's own transaction from another login does not help the attacker either.
    const b = new CookieJar()
    await startLogin(world.bff.url, b)
    await expectRefused(await callback(b, cb), before)
  })

  it('an IdP error response: 400, and error_description is not reflected (#5)', async () => {
    const jar = new CookieJar()
    const authorize = new URL(await startLogin(world.bff.url, jar))
    const state = authorize.searchParams.get('state')!
    const url = `${world.bff.url}/auth/callback?error=access_denied&error_description=${encodeURIComponent('<script>alert(1)</script>')}&state=${state}&iss=${encodeURIComponent(world.idp.issuer)}`
    const before = world.idp.counts.tokenRequests
    const res = await callback(jar, url, 'text/html')
    const html = await res.clone().text()
    await expectRefused(res, before)
    expect(html).toContain('access_denied')
    expect(html).not.toContain('<script>alert(1)</script>')
    expect(html).not.toContain('alert(1)')
  })

  it('a wrong iss in the authorization response is refused before the token call (RFC 9207, #6)', async () => {
    const jar = new CookieJar()
    const cb = new URL(await completeAtIdp(await startLogin(world.bff.url, jar), jar))
    expect(cb.searchParams.get('iss')).toBe(world.idp.issuer)
    cb.searchParams.set('iss', 'https://evil.example')
    const before = world.idp.counts.tokenRequests
    await expectRefused(await callback(jar, cb.href), before)
  })

  // Issue 13: the error branch answered before the RFC 9207 check, so in a
  // mix-up (RFC 9207 §2.4) another IdP's error, or a silent login's
  // login_required, was taken for this IdP's. The dev IdP advertises
  // authorization_response_iss_parameter_supported.
  describe('error responses get the RFC 9207 iss check too', () => {
    /** Starts a login (with `query`, e.g. prompt=none) and comes back with an IdP error response. */
    async function errorCallback(jar: CookieJar, query: string, error: string, iss: string | null): Promise<Response> {
      const url = `${world.bff.url}/auth/login?returnTo=%2Fx${query ? `&${query}` : ''}`
      const login = await fetch(url, { redirect: 'manual', headers: { cookie: jar.header(url) } })
      jar.store(url, login.headers)
      const state = new URL(login.headers.get('location')!).searchParams.get('state')!
      const cb = new URL(`${world.bff.url}/auth/callback`)
      cb.searchParams.set('error', error)
      cb.searchParams.set('state', state)
      if (iss !== null) cb.searchParams.set('iss', iss)
      return callback(jar, cb.href)
    }
    const mixUpLogged = () => world.bff.logs.some((l) => l.includes('login failed') && l.includes('RFC 9207'))

    it('an error without iss: 400 as a mix-up, not the IdP’s error', async () => {
      const res = await errorCallback(new CookieJar(), '', 'access_denied', null)
      const body = (await res.clone().json()) as { message: string }
      await expectRefused(res, world.idp.counts.tokenRequests)
      expect(body.message).not.toContain('access_denied')
      expect(mixUpLogged()).toBe(true)
    })

    it('an error with another issuer’s iss: 400 as a mix-up', async () => {
      const res = await errorCallback(new CookieJar(), '', 'access_denied', 'https://evil.example')
      const body = (await res.clone().json()) as { message: string }
      await expectRefused(res, world.idp.counts.tokenRequests)
      expect(body.message).not.toContain('access_denied')
    })

    it('a silent login’s login_required without iss: 400, not a redirect back to the app', async () => {
      const res = await errorCallback(new CookieJar(), 'prompt=none', 'login_required', null)
      expect(res.headers.get('location')).toBeNull()
      await expectRefused(res, world.idp.counts.tokenRequests)
    })

    it('a silent login’s login_required with the right iss still goes back to the app', async () => {
      const res = await errorCallback(new CookieJar(), 'prompt=none', 'login_required', world.idp.issuer)
      expect(res.status).toBe(303)
      expect(res.headers.get('location')).toBe('/x?tokenward_error=login_required')
    })
  })

  it('a code for another login (swapped state) is refused (#4)', async () => {
    const jar = new CookieJar()
    const first = new URL(await completeAtIdp(await startLogin(world.bff.url, jar), jar))
    const second = new URL(await completeAtIdp(await startLogin(world.bff.url, jar), jar))
    // Second login's state with the first login's code: PKCE and nonce no longer match.
    first.searchParams.set('state', second.searchParams.get('state')!)
    const res = await callback(jar, first.href)
    expect(res.status).toBe(400)
    expect(res.headers.getSetCookie().some((l) => l.startsWith('__Host-tokenward='))).toBe(false)
  })

  it('two tabs logging in at once share one transaction cookie and both succeed', async () => {
    const jar = new CookieJar()
    const a = await startLogin(world.bff.url, jar, '/a')
    const b = await startLogin(world.bff.url, jar, '/b')
    const cbA = await completeAtIdp(a, jar)
    const cbB = await completeAtIdp(b, jar)
    const ra = await callback(jar, cbB)
    expect(ra.status).toBe(303)
    expect(ra.headers.get('location')).toBe('/b')
    const rb = await callback(jar, cbA)
    expect(rb.status).toBe(303)
    expect(rb.headers.get('location')).toBe('/a')
  })
})

describe('returnTo never redirects off-origin (security model S7)', () => {
  const vectors = [
    '//evil.com',
    '/\\evil.com',
    '/\t/evil.com',
    '/\v/evil.com',
    '/\n/evil.com',
    '/\r/evil.com',
    '/./\\evil.com',
    'https://evil.com',
    'evil.com/x',
    '/%2f%2fevil.com',
    'javascript:alert(1)',
    '/.//evil.com',
    '/%2e//evil.com',
  ]
  it.each(vectors)('%j lands on /', async (vector) => {
    const r = await login(world.bff.url, { returnTo: vector })
    expect(r.location).toBe('/')
  })

  it('a same-origin path with query and fragment is kept', async () => {
    expect((await login(world.bff.url, { returnTo: '/orders/7?tab=items#top' })).location).toBe('/orders/7?tab=items#top')
  })
})
