import { createHash } from 'node:crypto'
import {
  calculateJwkThumbprint,
  decodeJwt,
  decodeProtectedHeader,
  exportJWK,
  generateKeyPair,
  importJWK,
  SignJWT,
  type JWK,
  type JWTPayload,
} from 'jose'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { startDevIdp, TOKEN_EXCHANGE_GRANT } from '../../demo/idp.js'
import { exchangeKey } from '../../src/tokens/exchange.js'
import { auditEvents, type TestBff } from '../helpers/bff.js'
import { login, type CookieJar } from '../helpers/login.js'
import { containsAny, expireAccessToken, sessionOf, spaFetch } from '../helpers/session.js'
import { startEchoUpstream, type EchoUpstream, type RecordedRequest } from '../helpers/upstream.js'
import { CLIENT_ID, startWorld, type World } from '../helpers/world.js'

// Issue 8: per-route token exchange (RFC 8693). A real oidc-provider with
// resource indicators issues the session's own tokens as RFC 9068 JWTs for
// API, and exchanges them (demo/idp.ts registers the grant) for tokens for
// API_B only. Each echo upstream verifies tokens like a real API: signature
// against the IdP's JWKS, issuer, and its own audience.
const API = 'https://api.example'
const API_B = 'https://api-b.example'
const UNKNOWN = 'https://unknown.example'
const B = { audience: API_B, resource: undefined, scopes: ['b.read'] }

let world: World
let upstreamB: EchoUpstream

beforeAll(async () => {
  upstreamB = await startEchoUpstream()
  world = await startWorld({
    idp: { resource: API, tokenExchange: { targets: { [API_B]: ['b.read', 'b.write'] } } },
    env: { BFF_SCOPES: 'openid profile email offline_access api' },
    routes: [
      { prefix: '/api', upstream: '{upstream}', token: 'user' },
      { prefix: '/b', upstream: upstreamB.url, token: 'user', tokenExchange: { audience: API_B, scopes: ['b.read'] } },
      { prefix: '/b-res', upstream: upstreamB.url, token: 'user', tokenExchange: { resource: API_B } },
      { prefix: '/nope', upstream: '{upstream}', token: 'user', tokenExchange: { audience: UNKNOWN } },
    ],
  })
  const policy = { issuer: world.idp.issuer, jwksUri: world.idp.provider.urlFor('jwks') }
  world.upstream.verifyTokens({ ...policy, audience: API })
  upstreamB.verifyTokens({ ...policy, audience: API_B })
})
afterAll(async () => {
  await world?.close()
  await upstreamB?.close()
})
beforeEach(() => {
  upstreamB.rejectToken(undefined)
})

function bearer(r: RecordedRequest): string {
  return String(r.headers.authorization).replace(/^Bearer /, '')
}

function exchanges(): number {
  return world.idp.counts.tokenExchanges
}

/** Makes the session's exchanged token for `target` look expired (white-box, like expireAccessToken). */
async function expireExchanged(bff: TestBff, jar: CookieJar, target: typeof B): Promise<void> {
  const s = (await sessionOf(bff, jar))!
  const key = exchangeKey(target)
  const t = s.data.exchangedTokens?.[key]
  if (!t) throw new Error('no exchanged token to expire')
  const exchangedTokens = { ...s.data.exchangedTokens, [key]: { ...t, expiresAt: Date.now() - 1000 } }
  const { result } = await bff.server.deps.sessions.replace(s, { ...s.data, exchangedTokens })
  if (result !== 'ok') throw new Error(`could not expire the exchanged token: ${result}`)
}

describe('issue 8: per-route token exchange (RFC 8693)', () => {
  it('RFC 8693 §2.1/§2.2.1: the upstream receives a token exchanged for its audience with the user’s sub, never the session’s own token', async () => {
    const { jar } = await login(world.bff.url, { username: 'carol' })
    const own = (await sessionOf(world.bff, jar))!.data.accessToken
    expect(decodeJwt(own).aud).toBe(API)
    const before = exchanges()
    const seen = upstreamB.requests.length

    // 200 means upstream B verified the token: IdP signature, issuer, audience API_B.
    expect((await spaFetch(world.bff, jar, '/b/echo')).status).toBe(200)
    const sent = bearer(upstreamB.requests.at(-1)!)
    expect(sent).not.toBe(own)
    expect(decodeJwt(sent)).toMatchObject({ aud: API_B, sub: 'carol', iss: world.idp.issuer, client_id: CLIENT_ID, scope: 'b.read' })
    expect(decodeProtectedHeader(sent).typ).toBe('at+jwt')
    expect(exchanges()).toBe(before + 1)

    // The IdP exchanged the session's own token (the subject, §2.1): its jti.
    const event = world.idp.events.filter((e) => e.name === 'token_exchange').at(-1)!
    expect(event.detail).toMatchObject({
      clientId: CLIENT_ID,
      accountId: 'carol',
      audience: API_B,
      subjectJti: decodeJwt(own).jti,
      tokenType: 'Bearer',
    })
    // The subject token went to the IdP only: upstream B never saw it, in any header.
    for (const r of upstreamB.requests.slice(seen)) expect(containsAny(r.rawHeaders.join('\n'), [own])).toBeUndefined()

    // Kept in the (encrypted) session under the exchange's own key, in a map of
    // its own (not with the audience tokens), next to the session's own token.
    const s = (await sessionOf(world.bff, jar))!
    expect(s.data.exchangedTokens?.[exchangeKey(B)]?.accessToken).toBe(sent)
    expect(s.data.audienceTokens?.[exchangeKey(B)]).toBeUndefined()
    expect(s.data.accessToken).toBe(own)

    // The same target named by `resource` (RFC 8707) instead: a token for API_B with every scope the IdP grants there.
    expect((await spaFetch(world.bff, jar, '/b-res/echo')).status).toBe(200)
    expect(decodeJwt(bearer(upstreamB.requests.at(-1)!))).toMatchObject({ aud: API_B, sub: 'carol', scope: 'b.read b.write' })
    expect(exchanges()).toBe(before + 2)
  })

  it('two routes, two audiences: each upstream refuses the other’s token (RFC 8693 §2.1 audience restriction)', async () => {
    const { jar } = await login(world.bff.url, { username: 'dave' })
    expect((await spaFetch(world.bff, jar, '/api/echo')).status).toBe(200)
    const forA = bearer(world.upstream.requests.at(-1)!)
    expect((await spaFetch(world.bff, jar, '/b/echo')).status).toBe(200)
    const forB = bearer(upstreamB.requests.at(-1)!)
    expect(decodeJwt(forA)).toMatchObject({ aud: API, sub: 'dave' })
    expect(decodeJwt(forB)).toMatchObject({ aud: API_B, sub: 'dave' })

    // Presented straight to the other upstream, each token is refused: invalid_token (RFC 6750 §3.1).
    const present = async (upstream: EchoUpstream, token: string) => {
      const res = await fetch(`${upstream.url}/echo`, { headers: { authorization: `Bearer ${token}` } })
      return { status: res.status, challenge: res.headers.get('www-authenticate'), body: (await res.json()) as { problem?: string } }
    }
    const bAtA = await present(world.upstream, forB)
    expect(bAtA).toMatchObject({ status: 401, challenge: 'Bearer error="invalid_token"' })
    expect(bAtA.body.problem).toBe('ERR_JWT_CLAIM_VALIDATION_FAILED')
    expect(await present(upstreamB, forA)).toMatchObject({ status: 401, challenge: 'Bearer error="invalid_token"' })
    // Whereas each accepts its own.
    expect((await present(world.upstream, forA)).status).toBe(200)
    expect((await present(upstreamB, forB)).status).toBe(200)
  })

  it('20 concurrent requests make exactly one exchange; the cached token is reused (also by another instance) until it expires', async () => {
    const { jar } = await login(world.bff.url)
    const before = exchanges()
    const refreshes = world.idp.counts.refreshGrants
    const seen = upstreamB.requests.length
    const results = await Promise.all(Array.from({ length: 20 }, () => spaFetch(world.bff, jar, '/b/echo')))
    expect(results.map((r) => r.status)).toEqual(Array(20).fill(200))
    expect(exchanges()).toBe(before + 1)
    const tokens = new Set(upstreamB.requests.slice(seen).map(bearer))
    expect(tokens.size).toBe(1)
    const [token] = [...tokens]

    // Later requests, here and on a second instance reading the same session: no new exchange.
    for (let i = 0; i < 5; i++) expect((await spaFetch(world.bff, jar, '/b/echo')).status).toBe(200)
    const other = await world.startInstance()
    expect((await spaFetch(other, jar, '/b/echo')).status).toBe(200)
    expect(bearer(upstreamB.requests.at(-1)!)).toBe(token)
    expect(exchanges()).toBe(before + 1)

    // Expired (within BFF_REFRESH_SKEW, like every token): one new exchange, no refresh (the subject token is fresh).
    await expireExchanged(world.bff, jar, B)
    const again = await Promise.all(Array.from({ length: 5 }, () => spaFetch(world.bff, jar, '/b/echo')))
    expect(again.map((r) => r.status)).toEqual(Array(5).fill(200))
    expect(exchanges()).toBe(before + 2)
    expect(world.idp.counts.refreshGrants).toBe(refreshes)
    const renewed = bearer(upstreamB.requests.at(-1)!)
    expect(renewed).not.toBe(token)
    expect(decodeJwt(renewed).aud).toBe(API_B)
  })

  it('a session written by the previous release (exchanged tokens kept among the audience tokens) still uses its exchanged token', async () => {
    const { jar } = await login(world.bff.url)
    expect((await spaFetch(world.bff, jar, '/b/echo')).status).toBe(200)
    const sent = bearer(upstreamB.requests.at(-1)!)
    const s = (await sessionOf(world.bff, jar))!
    // The previous release's shape: one map, the exchange keyed `x:…`, no exchangedTokens.
    const { exchangedTokens, ...rest } = s.data
    const old = { ...rest, audienceTokens: { ...s.data.audienceTokens, ...exchangedTokens } }
    expect((await world.bff.server.deps.sessions.replace(s, old)).result).toBe('ok')
    world.bff.server.deps.sessions.invalidate(s.sid) // read it back from the store, as an instance that did not write it
    const before = exchanges()
    expect((await spaFetch(world.bff, jar, '/b/echo')).status).toBe(200)
    expect(bearer(upstreamB.requests.at(-1)!)).toBe(sent)
    expect(exchanges()).toBe(before)
    const now = (await sessionOf(world.bff, jar))!
    expect(now.data.exchangedTokens?.[exchangeKey(B)]?.accessToken).toBe(sent)
    expect(now.data.audienceTokens?.[exchangeKey(B)]).toBeUndefined()
  })

  it('a subject token that needs refreshing is refreshed first, through the refresh path, then exchanged', async () => {
    const { jar } = await login(world.bff.url)
    expect((await spaFetch(world.bff, jar, '/b/echo')).status).toBe(200)
    const oldOwn = (await expireAccessToken(world.bff, jar)).data.accessToken
    await expireExchanged(world.bff, jar, B)
    const before = exchanges()
    const refreshes = world.idp.counts.refreshGrants
    const results = await Promise.all(Array.from({ length: 10 }, () => spaFetch(world.bff, jar, '/b/echo')))
    expect(results.map((r) => r.status)).toEqual(Array(10).fill(200))
    expect(world.idp.counts.refreshGrants).toBe(refreshes + 1)
    expect(exchanges()).toBe(before + 1)
    expect(world.idp.counts.invalidGrants).toBe(0)
    // The exchange's subject was the refreshed token, not the expired one.
    const fresh = (await sessionOf(world.bff, jar))!.data.accessToken
    expect(fresh).not.toBe(oldOwn)
    const event = world.idp.events.filter((e) => e.name === 'token_exchange').at(-1)!
    expect(event.detail?.subjectJti).toBe(decodeJwt(fresh).jti)
  })

  it('an upstream that rejects the exchanged token (invalid_token) gets one new exchange and one retry', async () => {
    const { jar } = await login(world.bff.url)
    expect((await spaFetch(world.bff, jar, '/b/echo')).status).toBe(200)
    const first = bearer(upstreamB.requests.at(-1)!)
    const before = exchanges()
    upstreamB.rejectToken(first)
    expect((await spaFetch(world.bff, jar, '/b/echo')).status).toBe(200)
    expect(exchanges()).toBe(before + 1)
    const second = bearer(upstreamB.requests.at(-1)!)
    expect(second).not.toBe(first)
    expect(decodeJwt(second).aud).toBe(API_B)
  })

  it('the IdP refusing the exchange (invalid_target, RFC 8693 §2.2.2): 502 upstream_unavailable, nothing forwarded, the session lives on', async () => {
    const { jar } = await login(world.bff.url)
    const s = (await sessionOf(world.bff, jar))!
    const errorsBefore = world.idp.counts.tokenExchangeErrors
    const forwarded = world.upstream.requests.length
    const res = await spaFetch(world.bff, jar, '/nope/echo')
    expect(res.status).toBe(502)
    expect(res.headers.get('cache-control')).toBe('no-store')
    const text = await res.text()
    expect(JSON.parse(text)).toEqual({ error: 'upstream_unavailable', message: 'The identity provider refused a token for this API.' })
    // The IdP's own words are not reflected; no token in the body.
    expect(text).not.toContain('invalid_target')
    expect(containsAny(text, [s.data.accessToken, s.data.refreshToken!])).toBeUndefined()
    expect(world.upstream.requests.length).toBe(forwarded)
    expect(world.idp.counts.tokenExchangeErrors).toBe(errorsBefore + 1)
    expect(world.idp.events.filter((e) => e.name === 'grant.error').at(-1)!.detail).toMatchObject({ error: 'invalid_target' })

    // The session is untouched and every other route still works.
    expect((await spaFetch(world.bff, jar, '/auth/session')).status).toBe(200)
    expect((await spaFetch(world.bff, jar, '/api/echo')).status).toBe(200)
    expect((await spaFetch(world.bff, jar, '/b/echo')).status).toBe(200)
    const after = (await sessionOf(world.bff, jar))!
    expect(after.data.refreshToken).toBe(s.data.refreshToken)
    expect(auditEvents(world.bff.logs).filter((e) => e.sid === s.sid && e.outcome === 'failure')).toEqual([])
    // Logged for the operator with the IdP's error code, never a token.
    const line = world.bff.logs.filter((l) => l.includes('token exchange refused')).at(-1)!
    expect(line).toContain('invalid_target')
    expect(
      containsAny(world.bff.logs.join('\n'), [s.data.accessToken, s.data.refreshToken!, bearer(upstreamB.requests.at(-1)!)]),
    ).toBeUndefined()
  })

  it('the IdP unreachable during an exchange: 503 idp_unavailable with Retry-After, as for a refresh; the session is kept', async () => {
    const { jar } = await login(world.bff.url)
    expect((await spaFetch(world.bff, jar, '/api/echo')).status).toBe(200)
    await world.idp.stop()
    try {
      const res = await spaFetch(world.bff, jar, '/b/echo')
      expect(res.status).toBe(503)
      expect(res.headers.get('retry-after')).toBeTruthy()
      expect(await res.json()).toMatchObject({ error: 'idp_unavailable' })
      // Routes that need no IdP keep working meanwhile.
      expect((await spaFetch(world.bff, jar, '/api/echo')).status).toBe(200)
    } finally {
      await world.idp.start()
    }
    expect((await spaFetch(world.bff, jar, '/b/echo')).status).toBe(200)
  })
})

describe('issue 8 with DPoP (RFC 9449): the exchanged token is bound to tokenward’s key as well', () => {
  let dpopWorld: World
  let thumbprint: string

  beforeAll(async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true })
    thumbprint = await calculateJwkThumbprint(await exportJWK(publicKey))
    dpopWorld = await startWorld({
      idp: { resource: API, tokenExchange: { targets: { [API_B]: ['b.read'] } } },
      env: {
        BFF_DPOP: 'true',
        BFF_DPOP_KEY: JSON.stringify(await exportJWK(privateKey)),
        BFF_SCOPES: 'openid profile email offline_access api',
      },
      routes: [{ prefix: '/b', upstream: '{upstream}', token: 'user', tokenExchange: { audience: API_B } }],
    })
    dpopWorld.upstream.verifyTokens({ issuer: dpopWorld.idp.issuer, jwksUri: dpopWorld.idp.provider.urlFor('jwks'), audience: API_B })
  })
  afterAll(() => dpopWorld?.close())

  it('a DPoP-bound subject token is exchanged with a proof of its key; the upstream gets `DPoP` with a fresh proof for the new token', async () => {
    const { jar } = await login(dpopWorld.bff.url)
    const own = (await sessionOf(dpopWorld.bff, jar))!.data.accessToken
    expect((decodeJwt(own) as { cnf?: { jkt?: string } }).cnf?.jkt).toBe(thumbprint)
    expect((await spaFetch(dpopWorld.bff, jar, '/b/echo')).status).toBe(200)
    const got = dpopWorld.upstream.requests.at(-1)!
    const [scheme, token] = String(got.headers.authorization).split(' ')
    expect(scheme).toBe('DPoP')
    expect(token).not.toBe(own)
    expect(decodeJwt(token!)).toMatchObject({ aud: API_B, cnf: { jkt: thumbprint } })
    const proof = String(got.headers.dpop)
    expect(await calculateJwkThumbprint((decodeProtectedHeader(proof) as { jwk: JWK }).jwk)).toBe(thumbprint)
    expect(decodeJwt(proof)).toMatchObject({
      htm: 'GET',
      htu: `${dpopWorld.upstream.url}/echo`,
      ath: createHash('sha256').update(token!).digest('base64url'),
    })
    expect(dpopWorld.idp.events.filter((e) => e.name === 'token_exchange').at(-1)!.detail).toMatchObject({ tokenType: 'DPoP' })
  })
})

describe('issue 8: the dev IdP’s token-exchange grant (RFC 8693 §2.2) validates the subject token for real', () => {
  const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token'

  async function exchange(
    params: Record<string, string>,
    secret = world.clientSecret,
  ): Promise<{ status: number; body: Record<string, unknown> }> {
    const res = await fetch(world.idp.provider.urlFor('token'), {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${encodeURIComponent(CLIENT_ID)}:${encodeURIComponent(secret)}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({
        grant_type: TOKEN_EXCHANGE_GRANT,
        subject_token_type: ACCESS_TOKEN_TYPE,
        requested_token_type: ACCESS_TOKEN_TYPE,
        audience: API_B,
        ...params,
      }),
    })
    return { status: res.status, body: (await res.json()) as Record<string, unknown> }
  }

  /** A copy of a real access token's claims, changed in one way, signed by `key` (the IdP's own unless given). */
  async function forge(real: string, change: JWTPayload, key: JWK = world.idp.signingKey): Promise<string> {
    return new SignJWT({ ...decodeJwt(real), ...change })
      .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: key.kid! })
      .sign(await importJWK(key, 'RS256'))
  }

  it('answers §2.2.1 fields for a valid subject token, and invalid_request for one that differs in any way that matters', async () => {
    const { jar } = await login(world.bff.url, { username: 'erin' })
    const real = (await sessionOf(world.bff, jar))!.data.accessToken

    const ok = await exchange({ subject_token: real, scope: 'b.read' })
    expect(ok.status).toBe(200)
    expect(ok.body).toMatchObject({ issued_token_type: ACCESS_TOKEN_TYPE, token_type: 'Bearer', expires_in: 60, scope: 'b.read' })
    expect(decodeJwt(String(ok.body.access_token))).toMatchObject({ aud: API_B, sub: 'erin', iss: world.idp.issuer, client_id: CLIENT_ID })
    // Re-signing with the IdP's key keeps a token valid: the forgeries below differ in exactly one way.
    expect((await exchange({ subject_token: await forge(real, {}) })).status).toBe(200)

    const other = {
      ...(await exportJWK((await generateKeyPair('RS256', { extractable: true })).privateKey)),
      kid: world.idp.signingKey.kid,
    }
    const [head, , sig] = real.split('.')
    const refusals: Record<string, string> = {
      expired: await forge(real, { exp: Math.floor(Date.now() / 1000) - 5 }),
      'another issuer': await forge(real, { iss: 'https://evil.example' }),
      'another client': await forge(real, { client_id: 'someone-else' }),
      'another key': await forge(real, {}, other),
      tampered: `${head}.${Buffer.from(JSON.stringify({ ...decodeJwt(real), sub: 'mallory' })).toString('base64url')}.${sig}`,
      'unknown opaque': 'not-a-token-the-idp-issued',
    }
    for (const [why, subject] of Object.entries(refusals)) {
      const r = await exchange({ subject_token: subject })
      expect({ why, status: r.status, error: r.body.error }).toEqual({ why, status: 400, error: 'invalid_request' })
    }
    expect(await exchange({ subject_token: real, subject_token_type: 'urn:ietf:params:oauth:token-type:id_token' })).toMatchObject({
      status: 400,
      body: { error: 'invalid_request' },
    })
    // §2.2.2: invalid_target for an audience the IdP does not serve; invalid_scope beyond what it grants there.
    expect(await exchange({ subject_token: real, audience: UNKNOWN })).toMatchObject({ status: 400, body: { error: 'invalid_target' } })
    expect(await exchange({ subject_token: real, scope: 'b.admin' })).toMatchObject({ status: 400, body: { error: 'invalid_scope' } })
    // The client authenticates as for any token request.
    expect(await exchange({ subject_token: real }, 'wrong-secret')).toMatchObject({ status: 401, body: { error: 'invalid_client' } })
  })

  it('is opt-in: a dev IdP without tokenExchange neither advertises nor accepts the grant', async () => {
    const meta = (await (await fetch(`${world.idp.issuer}/.well-known/openid-configuration`)).json()) as { grant_types_supported: string[] }
    expect(meta.grant_types_supported).toContain(TOKEN_EXCHANGE_GRANT)
    const plain = await startDevIdp({
      clients: [{ client_id: 'c', client_secret: 'secret-secret-secret', redirect_uris: ['http://127.0.0.1:1/cb'] }],
    })
    try {
      const m = (await (await fetch(`${plain.issuer}/.well-known/openid-configuration`)).json()) as { grant_types_supported: string[] }
      expect(m.grant_types_supported).not.toContain(TOKEN_EXCHANGE_GRANT)
      const res = await fetch(plain.provider.urlFor('token'), {
        method: 'POST',
        headers: {
          authorization: `Basic ${Buffer.from('c:secret-secret-secret').toString('base64')}`,
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: new URLSearchParams({ grant_type: TOKEN_EXCHANGE_GRANT, subject_token: 'x', subject_token_type: ACCESS_TOKEN_TYPE }),
      })
      expect(res.status).toBe(400)
      expect(((await res.json()) as { error: string }).error).toBe('unsupported_grant_type')
    } finally {
      await plain.close()
    }
  })
})
