// Issue 13, "also fix": a response to a request the session authenticated is
// one user's data; the browser's request carried a cookie, not Authorization,
// so a shared cache in front of tokenward would store an upstream's
// `public, max-age=600` answer and serve it to other users (RFC 9111 §3.5).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CookieJar, login } from '../helpers/login.js'
import { spaFetch } from '../helpers/session.js'
import { startWorld, type World } from '../helpers/world.js'

let world: World
let jar: CookieJar

beforeAll(async () => {
  world = await startWorld({
    routes: [
      { prefix: '/api', upstream: '{upstream}', token: 'user' },
      { prefix: '/maybe', upstream: '{upstream}', token: 'optional' },
      { prefix: '/public', upstream: '{upstream}', token: 'none' },
    ],
  })
  jar = (await login(world.bff.url)).jar
})
afterAll(() => world?.close())

/** The Cache-Control the browser (and any cache on the way) gets when the upstream answers with `upstream`. */
async function cacheControl(route: string, upstream: string | undefined, as: CookieJar = jar): Promise<string | null> {
  const path =
    upstream === undefined ? `${route}/echo` : `${route}/with-headers?${new URLSearchParams({ 'cache-control': upstream }).toString()}`
  const res = await spaFetch(world.bff, as, path)
  expect(res.status).toBe(200)
  await res.arrayBuffer()
  return res.headers.get('cache-control')
}

/** Directive names, lower-cased. */
const names = (v: string | null) => (v ?? '').split(',').map((d) => d.split('=')[0]!.trim().toLowerCase())

describe('responses to requests the session authenticated are never storable by a shared cache', () => {
  it('a user route: `public, max-age=600` comes back private, without public', async () => {
    const v = await cacheControl('/api', 'public, max-age=600')
    expect(names(v)).toContain('private')
    expect(names(v)).not.toContain('public')
    expect(names(v)).toContain('max-age')
  })

  it('a user route: no Cache-Control from the upstream comes back no-store', async () => {
    expect(await cacheControl('/api', undefined)).toBe('no-store')
  })

  it('a user route: s-maxage and a field-qualified private are dropped; private or no-store as sent are kept', async () => {
    const shared = await cacheControl('/api', 'S-MaxAge=600, max-age=60, private="x-foo"')
    expect(names(shared)).toEqual(['max-age', 'private'])
    expect(shared).not.toContain('x-foo')
    expect(await cacheControl('/api', 'private, max-age=60')).toBe('private, max-age=60')
    expect(await cacheControl('/api', 'no-store')).toBe('no-store')
  })

  it('an optional route with a session is rewritten; without one it passes as sent', async () => {
    expect(names(await cacheControl('/maybe', 'public, max-age=600'))).not.toContain('public')
    expect(await cacheControl('/maybe', 'public, max-age=600', new CookieJar())).toBe('public, max-age=600')
    expect(await cacheControl('/maybe', undefined, new CookieJar())).toBeNull()
  })

  it('a none route keeps `public, max-age=600`, even for a logged-in browser', async () => {
    expect(await cacheControl('/public', 'public, max-age=600')).toBe('public, max-age=600')
  })
})
