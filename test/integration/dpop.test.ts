import { createHash } from 'node:crypto'
import { calculateJwkThumbprint, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, type JWK } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { login } from '../helpers/login.js'
import { expireAccessToken, sessionOf, spaFetch } from '../helpers/session.js'
import { startWorld, type World } from '../helpers/world.js'

// DPoP (RFC 9449) against a real oidc-provider issuing JWT access tokens.
const API = 'https://api.example'
let world: World
let thumbprint: string

beforeAll(async () => {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true })
  thumbprint = await calculateJwkThumbprint(await exportJWK(publicKey))
  world = await startWorld({
    idp: { resource: API },
    env: {
      BFF_DPOP: 'true',
      BFF_DPOP_KEY: JSON.stringify(await exportJWK(privateKey)),
      BFF_SCOPES: 'openid profile email offline_access api',
    },
  })
})
afterAll(() => world?.close())

function proofOf(headers: Record<string, unknown>): { header: { typ?: string; jwk?: JWK; alg?: string }; claims: Record<string, unknown> } {
  const proof = String(headers.dpop)
  return { header: decodeProtectedHeader(proof) as { typ?: string; jwk?: JWK }, claims: decodeJwt(proof) }
}

describe('DPoP-bound tokens (RFC 9449, BFF_DPOP=true)', () => {
  it('tokens are bound to tokenward’s key, and every upstream call carries a fresh proof for that call', async () => {
    const { jar } = await login(world.bff.url)
    const s = (await sessionOf(world.bff, jar))!
    expect(s.data.tokenType.toLowerCase()).toBe('dpop')
    const at = decodeJwt(s.data.accessToken) as { cnf?: { jkt?: string } }
    expect(at.cnf?.jkt).toBe(thumbprint)

    // A DPoP header from the browser is never forwarded.
    expect((await spaFetch(world.bff, jar, '/api/orders?x=1', { headers: { dpop: 'forged' } })).status).toBe(200)
    const got = world.upstream.requests.at(-1)!
    expect(got.headers.authorization).toBe(`DPoP ${s.data.accessToken}`)
    const { header, claims } = proofOf(got.headers)
    expect(header.typ).toBe('dpop+jwt')
    expect(await calculateJwkThumbprint(header.jwk!)).toBe(thumbprint)
    expect(header.jwk).not.toHaveProperty('d') // the public key only
    expect(claims.htm).toBe('GET')
    expect(claims.htu).toBe(`${world.upstream.url}/orders`)
    expect(claims.ath).toBe(createHash('sha256').update(s.data.accessToken).digest('base64url'))
    // Fresh per request.
    await spaFetch(world.bff, jar, '/api/orders')
    expect(proofOf(world.upstream.requests.at(-1)!.headers).claims.jti).not.toBe(claims.jti)
  })

  it('refresh keeps the binding', async () => {
    const { jar } = await login(world.bff.url)
    const s = await expireAccessToken(world.bff, jar)
    const grants = world.idp.counts.refreshGrants
    expect((await spaFetch(world.bff, jar, '/api/x')).status).toBe(200)
    expect(world.idp.counts.refreshGrants).toBe(grants + 1)
    const fresh = (await sessionOf(world.bff, jar))!
    expect(fresh.data.accessToken).not.toBe(s.data.accessToken)
    expect((decodeJwt(fresh.data.accessToken) as { cnf?: { jkt?: string } }).cnf?.jkt).toBe(thumbprint)
  })

  it('an upstream that demands a nonce gets one retry with it (RFC 9449 §9)', async () => {
    const { jar } = await login(world.bff.url)
    const n = world.upstream.requests.length
    expect((await spaFetch(world.bff, jar, '/api/dpop-nonce')).status).toBe(200)
    expect(world.upstream.requests.length - n).toBe(2)
    expect(proofOf(world.upstream.requests.at(-1)!.headers).claims.nonce).toBe('upstream-nonce-1')
    // Remembered for the next call: no second round trip.
    expect((await spaFetch(world.bff, jar, '/api/dpop-nonce')).status).toBe(200)
    expect(world.upstream.requests.length - n).toBe(3)
  })
})
