import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { login } from '../helpers/login.js'
import { spaFetch } from '../helpers/session.js'
import { startWorld, type World } from '../helpers/world.js'

// Pushed Authorization Requests (RFC 9126), BFF_PAR=auto|always|never.
let withPar: World
let withoutPar: World

beforeAll(async () => {
  withPar = await startWorld()
  withoutPar = await startWorld({
    env: { BFF_PAR: 'always' },
    idp: {
      configure: (c) => {
        c.features = { ...c.features, pushedAuthorizationRequests: { enabled: false } }
      },
    },
  })
})
afterAll(async () => {
  await withPar?.close()
  await withoutPar?.close()
})

describe('Pushed Authorization Requests (RFC 9126)', () => {
  it('auto (the default) pushes the parameters when the IdP advertises PAR: the browser carries only a request_uri', async () => {
    const res = await fetch(`${withPar.bff.url}/auth/login`, { redirect: 'manual' })
    expect(res.status).toBe(302)
    const authorize = new URL(res.headers.get('location')!)
    expect(authorize.searchParams.get('request_uri')).toMatch(/^urn:ietf:params:oauth:request_uri:/)
    expect(authorize.searchParams.get('client_id')).toBeTruthy()
    for (const p of ['state', 'nonce', 'code_challenge', 'redirect_uri', 'scope']) expect(authorize.searchParams.has(p)).toBe(false)
    // And the login completes through it.
    const { jar } = await login(withPar.bff.url)
    expect((await spaFetch(withPar.bff, jar, '/auth/session')).status).toBe(200)
  })

  it('always, against an IdP without PAR: a clear 503 and no redirect', async () => {
    const res = await fetch(`${withoutPar.bff.url}/auth/login`, { redirect: 'manual', headers: { accept: 'application/json' } })
    expect(res.status).toBe(503)
    expect(await res.json()).toMatchObject({ error: 'idp_unavailable' })
    expect(res.headers.get('location')).toBeNull()
  })
})
