// Issue 13, items 3 and 4: a more specific route's policy (here its `methods`
// list) must not be reachable through a broader route, neither by a path the
// upstream reads as the specific route's (`;` parameters, letter case) nor by
// a header that makes the upstream change the method or the path.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { handshakeHead } from '../helpers/websocket.js'
import { type CookieJar, login } from '../helpers/login.js'
import { spaRequest } from '../helpers/session.js'
import { startWorld, type World } from '../helpers/world.js'

let world: World
let jar: CookieJar

beforeAll(async () => {
  world = await startWorld({
    routes: [
      { prefix: '/api', upstream: '{upstream}', token: 'user', websocket: true },
      // One service behind both: what /api forwards as /admin/... is its admin handler.
      { prefix: '/api/admin', upstream: '{upstream}/admin', token: 'user', methods: ['GET'] },
    ],
  })
  jar = (await login(world.bff.url)).jar
})
afterAll(() => world?.close())

/** A raw HTTP request from the logged-in SPA, so the test controls the exact request target. */
function send(method: string, path: string, headers: Record<string, string> = {}) {
  return spaRequest(world.bff, jar, method, path, headers)
}

/** A raw WebSocket handshake (RFC 6455 §4.1) with the session's cookie; resolves with the response head. */
function handshake(path: string, headers: Record<string, string>): Promise<string> {
  const { port, host } = new URL(world.bff.url)
  return handshakeHead(Number(port), path, { Host: host, Origin: world.bff.url, Cookie: jar.header(world.bff.url), ...headers })
}

describe('a more specific route cannot be reached through a broader one (issue 13, item 3)', () => {
  it('the admin route refuses POST as sent (the policy under attack)', async () => {
    const before = world.upstream.requests.length
    expect((await send('POST', '/api/admin/users')).status).toBe(405)
    expect(world.upstream.requests.length).toBe(before)
  })

  // Upstreams that drop `;` path parameters (Tomcat, Jetty, Spring) or route
  // case-insensitively read each of these as /api/admin/...
  it.each([
    ['POST', '/api/admin;/users'],
    ['DELETE', '/api/admin;x=1/users/7'],
    ['POST', '/api/ADMIN/users'],
    ['PUT', '/api/Admin'],
    ['POST', '/api/%41dmin;/users'],
  ])('%s %s is refused with 400 and nothing reaches the upstream', async (method, path) => {
    const before = world.upstream.requests.length
    const res = await send(method, path)
    expect(res.status).toBe(400)
    expect(JSON.parse(res.body)).toMatchObject({ error: 'invalid_request' })
    expect(world.upstream.requests.length).toBe(before)
  })

  it('what each route names as sent still works: GET /api/admin/users and POST /api/other', async () => {
    const before = world.upstream.requests.length
    expect((await send('GET', '/api/admin/users')).status).toBe(200)
    expect(world.upstream.requests.at(-1)).toMatchObject({ method: 'GET', url: '/admin/users' })
    expect((await send('POST', '/api/other', { 'content-length': '0' })).status).toBe(200)
    expect(world.upstream.requests.at(-1)).toMatchObject({ method: 'POST', url: '/other' })
    expect(world.upstream.requests.length).toBe(before + 2)
  })

  it('a WebSocket upgrade through the broader route is refused the same way (the admin route serves none)', async () => {
    const before = world.upstream.requests.length
    expect(await handshake('/api/ADMIN/socket', {})).toMatch(/^HTTP\/1\.1 400 /)
    expect(await handshake('/api/admin;x/socket', {})).toMatch(/^HTTP\/1\.1 400 /)
    expect(world.upstream.requests.length).toBe(before)
    // The broader route's own WebSocket still works.
    expect(await handshake('/api/socket', {})).toMatch(/^HTTP\/1\.1 101 /)
  })
})

describe('method and URL override headers never reach the upstream (issue 13, item 4)', () => {
  const overrides = {
    'X-HTTP-Method-Override': 'DELETE',
    'X-HTTP-Method': 'DELETE',
    'X-Method-Override': 'DELETE',
    'X-Original-URL': '/admin/users/7',
    'X-Rewrite-URL': '/admin/users/7',
  }
  const names = Object.keys(overrides).map((n) => n.toLowerCase())

  it('a GET on the admin route that asks the upstream to act as a DELETE arrives as a plain GET', async () => {
    const before = world.upstream.requests.length
    expect((await send('GET', '/api/admin/users/7', overrides)).status).toBe(200)
    expect(world.upstream.requests.length).toBe(before + 1)
    const got = world.upstream.requests.at(-1)!
    expect(got.method).toBe('GET')
    const sent = got.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase())
    for (const name of names) expect(sent, name).not.toContain(name)
  })

  it('nor on a WebSocket handshake', async () => {
    const before = world.upstream.requests.length
    expect(await handshake('/api/socket', overrides)).toMatch(/^HTTP\/1\.1 101 /)
    expect(world.upstream.requests.length).toBe(before + 1)
    const got = world.upstream.requests.at(-1)!
    for (const name of names) expect(got.headers[name], name).toBeUndefined()
  })
})
