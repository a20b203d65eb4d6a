import { exportJWK, exportPKCS8, generateKeyPair } from 'jose'
import { inject } from 'vitest'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startDevIdp, type DevIdp } from '../../demo/idp.js'
import { startBff, type TestBff } from '../helpers/bff.js'
import { login } from '../helpers/login.js'
import { freePort } from '../helpers/ports.js'
import { expireAccessToken, spaFetch } from '../helpers/session.js'
import { startEchoUpstream, type EchoUpstream } from '../helpers/upstream.js'

// BFF_CLIENT_AUTH=private_key_jwt (RFC 7523): no shared secret; the IdP knows
// only the client's public key. The key is made here, per run.
let idp: DevIdp
let upstream: EchoUpstream
const bffs: TestBff[] = []
let privateJwk: Record<string, unknown>
let privatePem: string
let ports: number[]

beforeAll(async () => {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true })
  privateJwk = { ...(await exportJWK(privateKey)), kid: 'test-key' }
  privatePem = await exportPKCS8(privateKey)
  const publicKeyJwk = await exportJWK(publicKey)
  ports = [await freePort(), await freePort()]
  idp = await startDevIdp({
    clients: ports.map((port, i) => ({
      client_id: `pkjwt-${i}`,
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'ES256',
      jwks: { keys: [{ ...publicKeyJwk, kid: 'test-key' }] },
      redirect_uris: [`http://127.0.0.1:${port}/auth/callback`],
      post_logout_redirect_uris: [`http://127.0.0.1:${port}/`],
    })),
  })
  upstream = await startEchoUpstream()
})
afterAll(async () => {
  await Promise.allSettled(bffs.map((b) => b.close()))
  await upstream?.close()
  await idp?.close()
})

describe('private_key_jwt client authentication', () => {
  it.each([
    ['a private JWK', 0],
    ['a PKCS#8 PEM', 1],
  ])('with %s: login, refresh and logout work, and no client secret is configured', async (_name, i) => {
    const bff = await startBff({
      issuer: idp.issuer,
      redisUrl: inject('redisUrl'),
      clientId: `pkjwt-${i}`,
      clientSecret: 'unused',
      port: ports[i],
      routes: [{ prefix: '/api', upstream: upstream.url, token: 'user' }],
      env: {
        BFF_CLIENT_SECRET: undefined,
        BFF_CLIENT_AUTH: 'private_key_jwt',
        BFF_CLIENT_PRIVATE_KEY: i === 0 ? JSON.stringify(privateJwk) : privatePem,
      },
    })
    bffs.push(bff)
    const { jar } = await login(bff.url)
    await expireAccessToken(bff, jar)
    const grants = idp.counts.refreshGrants
    expect((await spaFetch(bff, jar, '/api/x')).status).toBe(200)
    expect(idp.counts.refreshGrants).toBe(grants + 1)
    const revocations = idp.counts.revocations
    expect((await spaFetch(bff, jar, '/auth/logout', { method: 'POST' })).status).toBe(200)
    expect(idp.counts.revocations).toBe(revocations + 1)
  })
})
