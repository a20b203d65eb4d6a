// Issue 13 item 5: the browser must not weaken the operator's login policy.
// BFF_AUTH_PARAMS (acr_values, max_age, prompt=login) is a floor that a login
// request, the SPA's or a step-up loginUrl's (RFC 9470), can only tighten, in
// the front-channel redirect and in a pushed request (RFC 9126) alike; and the
// ID token must then show the authentication asked for (OIDC Core §3.1.2.1:
// `acr` one of acr_values, `auth_time` within max_age), or no session is made.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { DevIdpLoginResult, DevIdpOptions } from '../../demo/idp.js'
import { CookieJar, completeAtIdp } from '../helpers/login.js'
import { sessionOf, spaFetch } from '../helpers/session.js'
import { startWorld, type World } from '../helpers/world.js'

const FLOOR = 'acr_values=urn:example:mfa&max_age=0&prompt=login'
/** The review's attack: every policy parameter asked weaker than configured. */
const WEAKER = 'acr_values=urn:example:pwd&max_age=999999&prompt=none'

/**
 * How the dev IdP reports each test user's login: `stale` authenticated an
 * hour ago (an old IdP session), `pwd` with a password only, `mfa` with the
 * configured level; anyone else without acr (the dev IdP's default).
 */
function loginResult(username: string): DevIdpLoginResult | undefined {
  if (username.startsWith('stale')) return { ts: Math.floor(Date.now() / 1000) - 3600 }
  if (username.startsWith('pwd')) return { acr: 'urn:example:pwd' }
  if (username.startsWith('mfa')) return { acr: 'urn:example:mfa' }
  return undefined
}

/** oidc-provider puts `acr` in ID tokens only when it is configured with acr values. */
const idp: Omit<DevIdpOptions, 'clients'> = {
  loginResult,
  configure: (c) => {
    c.acrValues = ['urn:example:pwd', 'urn:example:mfa']
  },
}

let front: World
let pushed: World
let open: World

beforeAll(async () => {
  ;[front, pushed, open] = await Promise.all([
    startWorld({ env: { BFF_PAR: 'never', BFF_AUTH_PARAMS: FLOOR }, idp }),
    startWorld({ env: { BFF_PAR: 'always', BFF_AUTH_PARAMS: FLOOR }, idp }),
    // No floor: the step-up parameters come from the request alone.
    startWorld({ env: { BFF_PAR: 'never' }, idp }),
  ])
})
afterAll(async () => {
  await Promise.allSettled([front?.close(), pushed?.close(), open?.close()])
})

async function startAt(world: World, jar: CookieJar, query: string): Promise<Response> {
  const url = `${world.bff.url}/auth/login?${query}`
  const res = await fetch(url, { redirect: 'manual', headers: { cookie: jar.header(url), accept: 'application/json' } })
  jar.store(url, res.headers)
  return res
}

/** Starts a login with `query`, signs in at the dev IdP as `username`, and returns tokenward's answer to the callback. */
async function loginWith(world: World, query: string, username: string): Promise<{ jar: CookieJar; callback: Response }> {
  const jar = new CookieJar()
  const start = await startAt(world, jar, query)
  expect(start.status, await start.clone().text()).toBe(302)
  const back = await completeAtIdp(start.headers.get('location')!, jar, username)
  const callback = await fetch(back, { redirect: 'manual', headers: { cookie: jar.header(back), accept: 'application/json' } })
  jar.store(back, callback.headers)
  return { jar, callback }
}

async function expectNoSession(world: World, r: { jar: CookieJar; callback: Response }, check: RegExp): Promise<void> {
  expect(r.callback.status).toBe(400)
  expect(await r.callback.json()).toMatchObject({
    error: 'invalid_request',
    message: expect.stringMatching(/did not meet the required authentication/),
  })
  expect(r.callback.headers.getSetCookie().some((l) => l.startsWith(`${world.bff.config.cookie.name}=`))).toBe(false)
  expect(r.jar.get(world.bff.config.cookie.name)).toBeUndefined()
  expect((await spaFetch(world.bff, r.jar, '/auth/session')).status).toBe(401)
  // Operators see which check failed.
  expect(world.bff.logs.some((l) => l.includes('login failed') && check.test(l))).toBe(true)
}

describe('BFF_AUTH_PARAMS is a floor for the authorization request', () => {
  it('the review’s request (weaker acr_values, longer max_age, prompt=none) is refused with 400 and never reaches the IdP', async () => {
    const res = await startAt(front, new CookieJar(), WEAKER)
    expect(res.status).toBe(400)
    expect(await res.json()).toMatchObject({ error: 'invalid_request' })
    expect(res.headers.get('location')).toBeNull()
  })

  it('prompt=none with a configured prompt=login: 400, no redirect', async () => {
    const res = await startAt(front, new CookieJar(), 'prompt=none')
    expect(res.status).toBe(400)
    expect(await res.json()).toMatchObject({ error: 'invalid_request', message: expect.stringMatching(/prompt=none/) })
    expect(res.headers.get('location')).toBeNull()
  })

  it('acr_values outside the configured list: 400, no redirect', async () => {
    const res = await startAt(front, new CookieJar(), 'acr_values=urn:example:pwd')
    expect(res.status).toBe(400)
    expect(res.headers.get('location')).toBeNull()
  })

  it('front channel: a longer max_age and another prompt still send max_age=0, prompt with login, and the configured acr_values', async () => {
    const res = await startAt(front, new CookieJar(), 'max_age=999999&prompt=consent')
    expect(res.status).toBe(302)
    const q = new URL(res.headers.get('location')!).searchParams
    expect(q.get('max_age')).toBe('0')
    expect(q.get('prompt')!.split(' ')).toEqual(expect.arrayContaining(['login', 'consent']))
    expect(q.get('acr_values')).toBe('urn:example:mfa')
    expect(q.getAll('max_age')).toHaveLength(1)
    expect(q.getAll('prompt')).toHaveLength(1)
  })

  it('pushed request: the IdP receives the floor values, not the weaker requested ones', async () => {
    const before = pushed.idp.events.length
    const res = await startAt(pushed, new CookieJar(), 'max_age=999999&prompt=consent')
    expect(res.status).toBe(302)
    const q = new URL(res.headers.get('location')!).searchParams
    expect(q.get('request_uri')).toMatch(/^urn:ietf:params:oauth:request_uri:/)
    expect(q.has('max_age')).toBe(false)
    const pars = pushed.idp.events.slice(before).filter((e) => e.name === 'pushed_authorization_request.success')
    expect(pars).toHaveLength(1)
    const received = pars[0]!.detail!
    expect(received.max_age).toBe('0')
    expect(String(received.prompt).split(' ')).toEqual(expect.arrayContaining(['login', 'consent']))
    expect(received.acr_values).toBe('urn:example:mfa')
  })

  it('pushed request: the review’s weaker request is refused before anything is pushed', async () => {
    const before = pushed.idp.events.length
    const res = await startAt(pushed, new CookieJar(), WEAKER)
    expect(res.status).toBe(400)
    expect(pushed.idp.events.slice(before).some((e) => e.name === 'pushed_authorization_request.success')).toBe(false)
  })

  it('a login that meets the floor succeeds (front channel and pushed)', async () => {
    for (const world of [front, pushed]) {
      const r = await loginWith(world, 'returnTo=/ok', 'mfa-user')
      expect(r.callback.status, await r.callback.clone().text()).toBe(303)
      expect(r.callback.headers.get('location')).toBe('/ok')
      expect((await sessionOf(world.bff, r.jar))?.data.claims.acr).toBe('urn:example:mfa')
    }
  })

  it('an IdP that returns no acr is not held to acr_values (a voluntary claim), max_age still is', async () => {
    const r = await loginWith(front, 'returnTo=/ok', 'alice')
    expect(r.callback.status, await r.callback.clone().text()).toBe(303)
  })
})

describe('the callback holds the ID token to the authentication asked for', () => {
  it('configured max_age=0, but the IdP reports an authentication an hour old: 400, no session', async () => {
    await expectNoSession(front, await loginWith(front, 'returnTo=/x', 'stale-user'), /auth_time/)
  })

  it('configured acr_values=urn:example:mfa, but the ID token says acr=urn:example:pwd: 400, no session', async () => {
    await expectNoSession(front, await loginWith(front, 'returnTo=/x', 'pwd-user'), /acr/)
  })

  it('the same through a pushed request', async () => {
    await expectNoSession(pushed, await loginWith(pushed, 'returnTo=/x', 'pwd-user'), /acr/)
    await expectNoSession(pushed, await loginWith(pushed, 'returnTo=/x', 'stale-user'), /auth_time/)
  })

  it('step-up (no floor configured): the loginUrl’s acr_values and max_age are checked too', async () => {
    // The proxy's step_up_required loginUrl has this shape (test/integration/step-up.test.ts).
    const stepUp = 'acr_values=urn%3Aexample%3Amfa&max_age=300&returnTo=/orders'
    await expectNoSession(open, await loginWith(open, stepUp, 'pwd-user'), /acr/)
    await expectNoSession(open, await loginWith(open, stepUp, 'stale-user'), /auth_time/)
    const good = await loginWith(open, stepUp, 'mfa-user')
    expect(good.callback.status).toBe(303)
    expect(good.callback.headers.get('location')).toBe('/orders')
  })

  it('without acr_values or max_age asked, nothing is demanded (the dev IdP’s defaults log in)', async () => {
    const r = await loginWith(open, 'returnTo=/x', 'stale-user')
    expect(r.callback.status, await r.callback.clone().text()).toBe(303)
  })
})
