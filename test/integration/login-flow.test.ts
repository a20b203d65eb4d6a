import * as oidc from 'openid-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { auditEvents } from '../helpers/bff.js'
import { CookieJar, login } from '../helpers/login.js'
import { containsAny, sessionOf, spaFetch } from '../helpers/session.js'
import { CLIENT_ID, startWorld, type World } from '../helpers/world.js'

let world: World

beforeAll(async () => {
  // BFF_LOGOUT_ID_TOKEN_HINT keeps the ID token server-side, so the scans below
  // can look for it too.
  // BFF_PAR=never keeps the authorization parameters in the front-channel URL,
  // where these tests inspect them; par.test.ts covers the pushed form.
  world = await startWorld({ env: { BFF_LOGOUT_ID_TOKEN_HINT: 'true', BFF_PAR: 'never' } })
})
afterAll(() => world?.close())

function parseSetCookie(line: string): { name: string; value: string; attrs: Map<string, string | true> } {
  const [pair, ...rest] = line.split(';').map((s) => s.trim())
  const eq = pair!.indexOf('=')
  const attrs = new Map<string, string | true>()
  for (const a of rest) {
    const i = a.indexOf('=')
    attrs.set((i < 0 ? a : a.slice(0, i)).toLowerCase(), i < 0 ? true : a.slice(i + 1))
  }
  return { name: pair!.slice(0, eq), value: pair!.slice(eq + 1), attrs }
}

describe('login, session and logout round trip', () => {
  it('logs in through the IdP, shows the session without tokens, logs out and kills the refresh token', async () => {
    const { bff, idp } = world
    const result = await login(bff.url, { username: 'alice', returnTo: '/orders?x=1' })
    expect(result.location).toBe('/orders?x=1')

    // The callback: 303, no-store, no-referrer, and the session cookie's attributes (security model S6, S14, S24).
    const callback = result.exchanges.find((e) => e.url.startsWith(`${bff.url}/auth/callback`))!
    expect(callback.status).toBe(303)
    expect(callback.headers.get('cache-control')).toContain('no-store')
    expect(callback.headers.get('referrer-policy')).toBe('no-referrer')
    const cookies = callback.headers.getSetCookie().map(parseSetCookie)
    const session = cookies.find((c) => c.name === '__Host-tokenward')!
    expect(session).toBeDefined()
    expect(session.attrs.get('httponly')).toBe(true)
    expect(session.attrs.get('secure')).toBe(true)
    expect(session.attrs.get('path')).toBe('/')
    expect(session.attrs.get('samesite')).toBe('Strict')
    expect(session.attrs.has('domain')).toBe(false)
    expect(Number(session.attrs.get('max-age'))).toBeGreaterThan(28000)

    // The transaction cookie is Lax and short-lived (security model S15).
    const login1 = result.exchanges.find((e) => e.url.startsWith(`${bff.url}/auth/login`))!
    const tx = login1.headers
      .getSetCookie()
      .map(parseSetCookie)
      .find((c) => c.name === '__Host-tokenward-tx')!
    expect(tx.attrs.get('samesite')).toBe('Lax')
    expect(tx.attrs.get('httponly')).toBe(true)
    expect(tx.attrs.get('secure')).toBe(true)
    expect(Number(tx.attrs.get('max-age'))).toBeLessThanOrEqual(600)

    // The authorization request: code, PKCE S256, state, nonce (security model S1).
    const authorize = new URL(login1.headers.get('location')!)
    expect(authorize.searchParams.get('response_type')).toBe('code')
    expect(authorize.searchParams.get('code_challenge_method')).toBe('S256')
    expect(authorize.searchParams.get('state')).toBeTruthy()
    expect(authorize.searchParams.get('nonce')).toBeTruthy()
    expect(authorize.searchParams.get('scope')).toBe('openid profile email offline_access')
    expect(authorize.searchParams.get('redirect_uri')).toBe(`${bff.url}/auth/callback`)

    const jar = result.jar
    const stored = await sessionOf(bff, jar)
    expect(stored?.data.refreshToken).toBeTruthy()
    const secrets = [stored!.data.accessToken, stored!.data.refreshToken!, stored!.data.idToken!]

    const info = await spaFetch(bff, jar, '/auth/session')
    expect(info.status).toBe(200)
    expect(info.headers.get('cache-control')).toContain('no-store')
    const body = (await info.json()) as Record<string, unknown>
    expect(body).toMatchObject({ authenticated: true, sub: 'alice', sid: stored!.sid })
    expect((body.claims as Record<string, unknown>).email).toBe('alice@example.com')
    expect(body.expiresAt).toBeTypeOf('number')
    expect(body.idleExpiresAt).toBeTypeOf('number')
    expect(body.sid).not.toBe(jar.get('__Host-tokenward'))

    // No token in any response tokenward sent to the browser, nor in a cookie (security model S13).
    for (const r of [...result.responses, info]) {
      const text = [...r.headers.entries()].map(([k, v]) => `${k}: ${v}`).join('\n') + JSON.stringify(body)
      expect(containsAny(text, secrets)).toBeUndefined()
      expect(text).not.toContain('eyJ')
    }
    expect(jar.get('__Host-tokenward')).not.toContain('eyJ')

    const grantsBefore = idp.counts.revocations
    const out = await spaFetch(bff, jar, '/auth/logout', { method: 'POST' })
    expect(out.status).toBe(200)
    const { redirectTo } = (await out.json()) as { redirectTo: string }
    const end = new URL(redirectTo)
    expect(end.origin).toBe(idp.issuer)
    expect(end.searchParams.get('client_id')).toBe(CLIENT_ID)
    expect(end.searchParams.get('post_logout_redirect_uri')).toBe(`${bff.url}/`)
    expect(out.headers.getSetCookie().some((l) => l.startsWith('__Host-tokenward=;') && /Max-Age=0/.test(l))).toBe(true)
    // The browser's own cache of the user's (private) API answers goes too.
    expect(out.headers.get('clear-site-data')).toBe('"cache"')
    expect(idp.counts.revocations).toBe(grantsBefore + 1)

    // The old cookie is dead (security model S50)...
    const replay = new CookieJar()
    replay.set('__Host-tokenward', session.value, '127.0.0.1')
    expect((await spaFetch(bff, replay, '/auth/session')).status).toBe(401)
    // ...and so is the refresh token at the IdP.
    const configuration = await oidc.discovery(new URL(idp.issuer), CLIENT_ID, world.clientSecret, undefined, {
      execute: [oidc.allowInsecureRequests],
    })
    await expect(oidc.refreshTokenGrant(configuration, stored!.data.refreshToken!)).rejects.toMatchObject({ error: 'invalid_grant' })

    const events = auditEvents(bff.logs).map((e) => e.event)
    expect(events).toContain('login')
    expect(events).toContain('logout')
  })

  it('with BFF_LOGOUT_ID_TOKEN_HINT=true the end-session URL carries id_token_hint, the documented exception', async () => {
    const jar = (await login(world.bff.url)).jar
    const out = await spaFetch(world.bff, jar, '/auth/logout', { method: 'POST' })
    const url = new URL(((await out.json()) as { redirectTo: string }).redirectTo)
    expect(url.searchParams.get('id_token_hint')).toMatch(/^eyJ/)
  })

  it('two logins get distinct state, nonce and PKCE challenge (security model S1)', async () => {
    const locations = await Promise.all(
      [1, 2].map(async () => {
        const r = await fetch(`${world.bff.url}/auth/login`, { redirect: 'manual' })
        return new URL(r.headers.get('location')!)
      }),
    )
    for (const p of ['state', 'nonce', 'code_challenge']) {
      expect(locations[0]!.searchParams.get(p)).not.toBe(locations[1]!.searchParams.get(p))
    }
  })

  it('GET /auth/logout needs the current sid; a cross-site link leaves the session alive (security model S30)', async () => {
    const { bff } = world
    const jar = (await login(bff.url)).jar
    const sid = ((await (await spaFetch(bff, jar, '/auth/session')).json()) as { sid: string }).sid
    const bad = await spaFetch(bff, jar, '/auth/logout?sid=wrong', { csrf: false })
    expect(bad.status).toBe(400)
    expect(await bad.json()).toMatchObject({ error: 'invalid_request' })
    expect((await spaFetch(bff, jar, '/auth/session')).status).toBe(200)
    const good = await spaFetch(bff, jar, `/auth/logout?sid=${sid}`, { csrf: false })
    expect(good.status).toBe(302)
    expect(new URL(good.headers.get('location')!).origin).toBe(world.idp.issuer)
    expect((await spaFetch(bff, jar, '/auth/session')).status).toBe(401)
  })

  // Issue 13 item 6: with SameSite=Strict, a foreign page's link to GET
  // /auth/logout arrives without the session cookie, and the "no session"
  // branch used to answer with a Set-Cookie deleting it: the user was logged
  // out from any page, nothing revoked, nothing audited.
  it('a cross-site GET /auth/logout without the cookie does not delete it; the session keeps working', async () => {
    const { bff } = world
    const jar = (await login(bff.url)).jar
    const cookieName = bff.config.cookie.name
    const before = jar.get(cookieName)
    expect(before).toBeDefined()
    // What the browser sends on a cross-site navigation: no Strict cookie, Fetch Metadata.
    const url = `${bff.url}/auth/logout`
    const res = await fetch(url, {
      redirect: 'manual',
      headers: { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' },
    })
    expect(res.status).toBe(302)
    expect(res.headers.getSetCookie().filter((l) => l.startsWith(`${cookieName}=`))).toEqual([])
    // The browser applies whatever came back to its jar, then goes on using the app.
    jar.store(url, res.headers)
    expect(jar.get(cookieName)).toBe(before)
    expect((await spaFetch(bff, jar, '/auth/session')).status).toBe(200)
    expect((await spaFetch(bff, jar, '/api/x')).status).toBe(200)
    // Without Fetch Metadata (an old browser) the cookie is kept too.
    const bare = await fetch(url, { redirect: 'manual' })
    expect(bare.headers.getSetCookie().filter((l) => l.startsWith(`${cookieName}=`))).toEqual([])
  })

  it('a same-origin GET /auth/logout with a stale cookie still clears it', async () => {
    const { bff } = world
    const jar = (await login(bff.url)).jar
    const cookieName = bff.config.cookie.name
    const stale = jar.get(cookieName)!
    expect((await spaFetch(bff, jar, '/auth/logout', { method: 'POST' })).status).toBe(200)
    const res = await fetch(`${bff.url}/auth/logout`, {
      redirect: 'manual',
      headers: { cookie: `${cookieName}=${stale}`, 'sec-fetch-site': 'same-origin', 'sec-fetch-mode': 'navigate' },
    })
    expect(res.status).toBe(302)
    const cleared = res.headers.getSetCookie().find((l) => l.startsWith(`${cookieName}=`))
    expect(cleared).toBeDefined()
    expect(cleared).toMatch(/max-age=0/i)
  })

  it('/auth/session and POST /auth/logout require X-CSRF: 1 (security model S22, S26)', async () => {
    const { bff } = world
    const jar = (await login(bff.url)).jar
    const s = await spaFetch(bff, jar, '/auth/session', { csrf: false })
    expect(s.status).toBe(403)
    expect(await s.json()).toMatchObject({ error: 'csrf_failed' })
    const o = await spaFetch(bff, jar, '/auth/logout', { method: 'POST', csrf: false })
    expect(o.status).toBe(403)
    const foreign = await spaFetch(bff, jar, '/auth/logout', { method: 'POST', headers: { origin: 'https://evil.example' } })
    expect(foreign.status).toBe(403)
    expect((await spaFetch(bff, jar, '/auth/session')).status).toBe(200)
    expect(auditEvents(bff.logs).some((e) => e.event === 'csrf_rejected')).toBe(true)
  })

  it('an anonymous /auth/session is a 401 login_required', async () => {
    const r = await spaFetch(world.bff, new CookieJar(), '/auth/session')
    expect(r.status).toBe(401)
    expect(await r.json()).toMatchObject({ authenticated: false, error: 'login_required' })
  })

  it('never writes a token or cookie value into a log line (security model S70)', async () => {
    const { bff } = world
    const r = await login(bff.url)
    const s = await sessionOf(bff, r.jar)
    const cookie = r.jar.get('__Host-tokenward')!
    await spaFetch(bff, r.jar, '/auth/session')
    await spaFetch(bff, r.jar, '/auth/logout', { method: 'POST' })
    const logs = bff.logs.join('\n')
    expect(logs.length).toBeGreaterThan(0)
    expect(containsAny(logs, [s!.data.accessToken, s!.data.refreshToken!, s!.data.idToken!, cookie])).toBeUndefined()
    expect(logs).not.toContain('eyJ')
    expect(logs).not.toContain(world.clientSecret)
  })
})
