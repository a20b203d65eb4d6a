import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CookieJar, completeAtIdp, login } from '../helpers/login.js'
import { sessionOf, spaFetch } from '../helpers/session.js'
import { startWorld, type World } from '../helpers/world.js'

let world: World

beforeAll(async () => {
  // Front-channel parameters, so the authorization URL can be inspected.
  world = await startWorld({ env: { BFF_PAR: 'never' } })
})
afterAll(() => world?.close())

async function startAt(jar: CookieJar, query: string): Promise<Response> {
  const url = `${world.bff.url}/auth/login?${query}`
  const res = await fetch(url, { redirect: 'manual', headers: { cookie: jar.header(url), accept: 'application/json' } })
  jar.store(url, res.headers)
  return res
}

describe('step-up authentication (RFC 9470)', () => {
  it('an upstream asking for stronger authentication becomes 401 step_up_required with a login URL carrying acr_values and max_age', async () => {
    const { jar } = await login(world.bff.url)
    const res = await spaFetch(world.bff, jar, '/api/step-up')
    expect(res.status).toBe(401)
    const body = (await res.json()) as Record<string, string>
    expect(body).toMatchObject({ error: 'step_up_required', acr_values: 'urn:example:mfa', max_age: '300' })
    expect(body.loginUrl).toBe('/auth/login?acr_values=urn%3Aexample%3Amfa&max_age=300')
    // The session is kept: the user is still signed in, just not strongly enough.
    expect((await spaFetch(world.bff, jar, '/auth/session')).status).toBe(200)
  })

  it('/auth/login passes acr_values and max_age to the IdP, and the new login replaces the session', async () => {
    const { jar } = await login(world.bff.url)
    const before = (await sessionOf(world.bff, jar))!
    await new Promise((r) => setTimeout(r, 1100)) // auth_time has a one-second resolution
    const res = await startAt(jar, 'acr_values=urn:example:mfa&max_age=0&returnTo=/orders')
    const authorize = new URL(res.headers.get('location')!)
    expect(authorize.searchParams.get('acr_values')).toBe('urn:example:mfa')
    expect(authorize.searchParams.get('max_age')).toBe('0')
    const callback = await completeAtIdp(authorize.href, jar)
    const done = await fetch(callback, { redirect: 'manual', headers: { cookie: jar.header(callback) } })
    jar.store(callback, done.headers)
    expect(done.status).toBe(303)
    expect(done.headers.get('location')).toBe('/orders')
    const after = (await sessionOf(world.bff, jar))!
    expect(after.sid).not.toBe(before.sid)
    // max_age=0 forced a fresh authentication at the IdP, after the first login.
    expect(after.data.authTime).toBeTypeOf('number')
    expect(after.data.authTime!).toBeGreaterThan(Math.floor(before.data.createdAt / 1000))
  })

  it('refuses malformed login parameters with 400', async () => {
    for (const q of ['prompt=bogus', 'max_age=-1', 'acr_values=%22quoted%22']) {
      const res = await startAt(new CookieJar(), q)
      expect(res.status).toBe(400)
      expect(await res.json()).toMatchObject({ error: 'invalid_request' })
    }
  })
})

describe('silent re-authentication (prompt=none)', () => {
  it('with an IdP session: a new tokenward session without any page', async () => {
    const { jar } = await login(world.bff.url)
    const res = await startAt(jar, 'prompt=none&returnTo=/x')
    const authorize = new URL(res.headers.get('location')!)
    expect(authorize.searchParams.get('prompt')).toBe('none')
    const callback = await completeAtIdp(authorize.href, jar)
    expect(new URL(callback).searchParams.has('code')).toBe(true)
    const done = await fetch(callback, { redirect: 'manual', headers: { cookie: jar.header(callback) } })
    expect(done.status).toBe(303)
    expect(done.headers.get('location')).toBe('/x')
  })

  it('without an IdP session: back to the app with tokenward_error=login_required, no session, no error page', async () => {
    const jar = new CookieJar()
    const res = await startAt(jar, 'prompt=none&returnTo=/x%3Fa%3D1')
    const callback = await completeAtIdp(res.headers.get('location')!, jar)
    expect(new URL(callback).searchParams.get('error')).toBe('login_required')
    const done = await fetch(callback, { redirect: 'manual', headers: { cookie: jar.header(callback) } })
    expect(done.status).toBe(303)
    expect(done.headers.get('location')).toBe('/x?a=1&tokenward_error=login_required')
    expect(done.headers.getSetCookie().some((l) => l.startsWith('__Host-tokenward='))).toBe(false)
  })
})
