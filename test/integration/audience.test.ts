import { decodeJwt } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { login } from '../helpers/login.js'
import { sessionOf, spaFetch } from '../helpers/session.js'
import { startWorld, type World } from '../helpers/world.js'

// A real oidc-provider with resource indicators (RFC 8707): access tokens are
// JWTs for the API's audience.
const API = 'https://api.example'
let world: World

beforeAll(async () => {
  world = await startWorld({
    idp: { resource: API },
    env: { BFF_SCOPES: 'openid profile email offline_access api' },
    routes: [
      { prefix: '/api', upstream: '{upstream}', token: 'user' },
      { prefix: '/orders', upstream: '{upstream}/orders', token: 'user', resource: API, scopes: ['api'] },
    ],
  })
})
afterAll(() => world?.close())

describe('per-route token policy: resource and scopes (RFC 8707)', () => {
  it('a route with its own resource gets its own audience-restricted token, obtained once with the refresh token', async () => {
    const { jar } = await login(world.bff.url)
    const own = (await sessionOf(world.bff, jar))!.data.accessToken
    const grants = world.idp.counts.refreshGrants
    expect((await spaFetch(world.bff, jar, '/orders/7')).status).toBe(200)
    const sent = String(world.upstream.requests.at(-1)!.headers.authorization).slice('Bearer '.length)
    expect(sent).not.toBe(own)
    const claims = decodeJwt(sent)
    expect(claims.aud).toBe(API)
    expect(claims.scope).toBe('api')
    expect(world.idp.counts.refreshGrants).toBe(grants + 1)
    // Cached in the session: the next call needs no grant, and the plain route keeps the session's own token.
    expect((await spaFetch(world.bff, jar, '/orders/8')).status).toBe(200)
    expect(world.upstream.requests.at(-1)!.headers.authorization).toBe(`Bearer ${sent}`)
    expect((await spaFetch(world.bff, jar, '/api/x')).status).toBe(200)
    expect(world.upstream.requests.at(-1)!.headers.authorization).toBe(`Bearer ${own}`)
    expect(world.idp.counts.refreshGrants).toBe(grants + 1)
    expect(world.idp.counts.invalidGrants).toBe(0)
  })

  it('concurrent first calls on two instances still make one grant', async () => {
    const other = await world.startInstance()
    const { jar } = await login(world.bff.url)
    const grants = world.idp.counts.refreshGrants
    const results = await Promise.all([world.bff, other].flatMap((b) => Array.from({ length: 20 }, () => spaFetch(b, jar, '/orders/1'))))
    expect(results.every((r) => r.status === 200)).toBe(true)
    expect(world.idp.counts.refreshGrants).toBe(grants + 1)
    expect(world.idp.counts.invalidGrants).toBe(0)
  })
})
