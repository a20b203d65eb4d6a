import { join } from 'node:path'
import { inject } from 'vitest'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startBff, type TestBff } from '../helpers/bff.js'
import { freePort } from '../helpers/ports.js'
import { startWorld, type World } from '../helpers/world.js'

let world: World

beforeAll(async () => {
  world = await startWorld({ env: { BFF_STATIC_DIR: join(import.meta.dirname, '..', 'fixtures', 'spa') } })
})
afterAll(() => world?.close())

describe('health, readiness and the rest of the surface', () => {
  it('/healthz and /readyz answer 200 when Redis and the IdP are there', async () => {
    expect((await fetch(`${world.bff.url}/healthz`)).status).toBe(200)
    const ready = await fetch(`${world.bff.url}/readyz`)
    expect(ready.status).toBe(200)
    expect(await ready.json()).toEqual({ status: 'ready' })
  })

  it('/readyz is 503 naming the IdP while its metadata cannot be loaded; /healthz stays 200', async () => {
    let dead: TestBff | undefined
    try {
      dead = await startBff({
        issuer: `http://127.0.0.1:${await freePort()}`,
        redisUrl: inject('redisUrl'),
        clientId: 'x',
        clientSecret: 'y',
      })
      expect((await fetch(`${dead.url}/healthz`)).status).toBe(200)
      const r = await fetch(`${dead.url}/readyz`)
      expect(r.status).toBe(503)
      expect(r.headers.get('retry-after')).toBeTruthy()
      expect(await r.json()).toMatchObject({ error: 'idp_unavailable', down: ['identity provider metadata'] })
      const login = await fetch(`${dead.url}/auth/login`, { redirect: 'manual' })
      expect(login.status).toBe(503)
      expect(await login.json()).toMatchObject({ error: 'idp_unavailable' })
    } finally {
      await dead?.close()
    }
  })

  it('serves BFF_STATIC_DIR, with index.html for unknown page paths', async () => {
    const index = await fetch(`${world.bff.url}/`)
    expect(index.status).toBe(200)
    expect(await index.text()).toContain('fixture spa')
    expect(await (await fetch(`${world.bff.url}/app.js`)).text()).toContain('export const x')
    const deep = await fetch(`${world.bff.url}/orders/7`, { headers: { accept: 'text/html' } })
    expect(await deep.text()).toContain('fixture spa')
  })

  it('an unknown non-page path is a JSON 404; a request id is echoed when well-formed', async () => {
    const r = await fetch(`${world.bff.url}/nope.json`, { headers: { 'x-request-id': 'abc-123' } })
    expect(r.status).toBe(404)
    expect(await r.json()).toMatchObject({ error: 'not_found' })
    expect(r.headers.get('x-request-id')).toBe('abc-123')
    const bad = await fetch(`${world.bff.url}/healthz`, { headers: { 'x-request-id': 'bad id <script>' } })
    expect(bad.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/)
  })
})
