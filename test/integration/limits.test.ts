import { connect } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.js'
import { Keyring } from '../../src/crypto/keyring.js'
import { createLogger } from '../../src/log.js'
import type { OidcClient } from '../../src/oidc/client.js'
import { MemoryStore } from '../../src/store/memory/store.js'
import { RefreshLease } from '../../src/tokens/lease.js'
import { SessionManager } from '../../src/session/sessions.js'
import { SessionTerminator } from '../../src/lifecycle/terminate.js'
import { TokenService } from '../../src/tokens/refresh.js'
import { testEnv } from '../helpers/env.js'
import { startWorld, type World } from '../helpers/world.js'

let world: World

beforeAll(async () => {
  world = await startWorld()
})
afterAll(() => world?.close())

/** Sends raw bytes and returns everything the server answers until it closes. */
function rawRequest(bytes: string): Promise<string> {
  const { port } = new URL(world.bff.url)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1')
    let out = ''
    socket.on('data', (d) => (out += d.toString()))
    socket.on('end', () => resolve(out))
    socket.on('error', reject)
    socket.setTimeout(5000, () => socket.destroy(new Error('no answer')))
    socket.end(bytes)
  })
}

describe('limits with clear errors (issue 9)', () => {
  it('oversized request headers: 431 with a JSON body', async () => {
    const res = await rawRequest(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`)
    expect(res).toMatch(/^HTTP\/1\.1 431 /)
    expect(res).toContain('"error":"invalid_request"')
    expect(res).toContain('connection: close')
  })

  it('a malformed request line: 400 with a JSON body', async () => {
    const res = await rawRequest('GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n')
    expect(res).toMatch(/^HTTP\/1\.1 400 /)
    expect(res).toContain('"error":"invalid_request"')
  })

  it('/auth/login is rate-limited per client address: 429 rate_limited with Retry-After', async () => {
    const results = await Promise.all(Array.from({ length: 320 }, () => fetch(`${world.bff.url}/auth/login`, { redirect: 'manual' })))
    const limited = results.filter((r) => r.status === 429)
    expect(results.filter((r) => r.status === 302).length).toBe(300)
    expect(limited.length).toBe(20)
    expect(limited[0]!.headers.get('retry-after')).toMatch(/^\d+$/)
    expect(await limited[0]!.json()).toMatchObject({ error: 'rate_limited' })
  })

  it('behind a trusted proxy each client has its own login limit, and the upstream sees the client', async () => {
    const behind = await world.startInstance({
      BFF_TRUSTED_PROXIES: '127.0.0.1, ::1',
      BFF_ROUTES: JSON.stringify([{ prefix: '/open', upstream: world.upstream.url, token: 'none' }]),
    })
    const from = (client: string, path = '/auth/login') =>
      fetch(`${behind.url}${path}`, { redirect: 'manual', headers: { 'x-forwarded-for': `6.6.6.6, ${client}` } })
    const flood = await Promise.all(Array.from({ length: 310 }, () => from('198.51.100.1')))
    expect(flood.filter((r) => r.status === 429).length).toBe(10)
    // Another client behind the same proxy is not locked out by the first one's flood.
    expect((await from('198.51.100.2')).status).toBe(302)
    // The upstream gets the client and the trusted hop, not what the client wrote to their left.
    await fetch(`${behind.url}/open/who`, { headers: { 'x-csrf': '1', 'x-forwarded-for': '6.6.6.6, 198.51.100.7' } })
    expect(world.upstream.requests.at(-1)!.headers['x-forwarded-for']).toBe('198.51.100.7, 127.0.0.1')
    // Without trust, the same headers mean nothing: all of them are one peer.
    const untrusted = await Promise.all(
      Array.from({ length: 301 }, (_, i) =>
        fetch(`${world.bff.url}/auth/login`, { redirect: 'manual', headers: { 'x-forwarded-for': `198.51.100.${i % 200}` } }),
      ),
    )
    expect(untrusted.some((r) => r.status === 429)).toBe(true)
  })

  it('refreshes waiting in one process are bounded: beyond the cap, 503 at once', async () => {
    const config = loadConfig(testEnv())
    const store = new MemoryStore()
    const sessions = new SessionManager({ store, keyring: new Keyring(config.encryptionKeys), idleTimeoutMs: 60_000, maxAgeMs: 3_600_000 })
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    const oidc = {
      async refreshTokenGrant() {
        await gate
        return {
          accessToken: 'new',
          tokenType: 'Bearer',
          expiresIn: 300,
          refreshToken: undefined,
          refreshTokenLifetime: undefined,
          scope: undefined,
          idToken: undefined,
          idClaims: undefined,
        }
      },
      async revokeRefreshToken() {
        return true
      },
    } as unknown as OidcClient
    const logger = createLogger('silent')
    const terminator = new SessionTerminator({ sessions, events: store.events, oidc, logger })
    const lease = new RefreshLease({ leases: store.leases, leaseMs: 5000, logger })
    const tokens = new TokenService({ config, sessions, oidc, logger, terminator, lease, now: Date.now, maxInflight: 3 })
    const expired = async () =>
      (
        await sessions.create({
          sub: 'u',
          iss: 'i',
          aud: ['a'],
          claims: {},
          createdAt: Date.now(),
          accessToken: 'old',
          tokenType: 'Bearer',
          accessTokenExpiresAt: Date.now() - 1,
          refreshToken: 'rt',
        })
      ).session
    const pending = await Promise.all([1, 2, 3].map(async () => expired()))
    const inflight = pending.map((s) => tokens.accessToken(s))
    await new Promise((r) => setTimeout(r, 20))
    expect(tokens.inflight).toBe(3)
    const started = Date.now()
    await expect(tokens.accessToken(await expired())).rejects.toMatchObject({ code: 'idp_unavailable', status: 503 })
    expect(Date.now() - started).toBeLessThan(100)
    release()
    expect((await Promise.all(inflight)).map((t) => t.token)).toEqual(['new', 'new', 'new'])
    await store.close()
  })
})
