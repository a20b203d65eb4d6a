import { randomUUID } from 'node:crypto'
import { generateKeyPair, importJWK, SignJWT, type JWTPayload } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { auditEvents } from '../helpers/bff.js'
import { login, type CookieJar } from '../helpers/login.js'
import { sessionOf, spaFetch } from '../helpers/session.js'
import { CLIENT_ID, startWorld, type World } from '../helpers/world.js'

let world: World

beforeAll(async () => {
  world = await startWorld()
})
afterAll(() => world?.close())

const EVENT = { 'http://schemas.openid.net/event/backchannel-logout': {} }

async function status(jar: CookieJar): Promise<number> {
  return (await spaFetch(world.bff, jar, '/auth/session')).status
}

/** A logout token signed with the IdP's real key, different from a valid one only where `change` says. */
async function forge(claims: JWTPayload, header: Record<string, unknown> = {}, key?: Parameters<SignJWT['sign']>[0]): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  const signingKey = key ?? (await importJWK(world.idp.signingKey, 'RS256'))
  // The overrides come last, so each case differs from a valid token in exactly one way.
  const payload = { iss: world.idp.issuer, aud: CLIENT_ID, iat: now, exp: now + 120, events: EVENT, jti: randomUUID(), ...claims }
  return new SignJWT(payload)
    .setProtectedHeader({ alg: 'RS256', typ: 'logout+jwt', kid: world.idp.signingKey.kid, ...header })
    .sign(signingKey)
}

async function post(body: string, contentType = 'application/x-www-form-urlencoded'): Promise<Response> {
  return fetch(`${world.bff.url}/auth/backchannel-logout`, { method: 'POST', headers: { 'content-type': contentType }, body })
}

const postToken = (token: string) => post(new URLSearchParams({ logout_token: token }).toString())

describe('back-channel logout (OIDC Back-Channel Logout 1.0, security model S52, S53)', () => {
  it('the real IdP ends one IdP session: only the tokenward sessions of that sid end, and their refresh tokens are revoked', async () => {
    const a1 = await login(world.bff.url, { username: 'alice' })
    const a2 = await login(world.bff.url, { username: 'alice' })
    const b = await login(world.bff.url, { username: 'bob' })
    const s1 = (await sessionOf(world.bff, a1.jar))!
    expect(s1.data.idpSid).toBeTruthy()
    expect((await sessionOf(world.bff, a2.jar))!.data.idpSid).not.toBe(s1.data.idpSid)
    const revocations = world.idp.counts.revocations
    // oidc-provider signs and POSTs the logout token itself, as at the end of an IdP session.
    const client = (await world.idp.provider.Client.find(CLIENT_ID)) as unknown as {
      backchannelLogout(sub: string, sid: string): Promise<void>
    }
    await client.backchannelLogout('alice', s1.data.idpSid!)
    expect(await status(a1.jar)).toBe(401)
    expect(await status(a2.jar)).toBe(200)
    expect(await status(b.jar)).toBe(200)
    expect(world.idp.counts.revocations).toBe(revocations + 1)
    expect(auditEvents(world.bff.logs).some((e) => e.event === 'backchannel_logout' && e.sid === s1.sid)).toBe(true)
  })

  it('a bare sub ends every session of that user, and no one else’s', async () => {
    const a1 = await login(world.bff.url, { username: 'carol' })
    const a2 = await login(world.bff.url, { username: 'carol' })
    const d = await login(world.bff.url, { username: 'dave' })
    const res = await postToken(await forge({ sub: 'carol' }))
    expect(res.status).toBe(200)
    expect(res.headers.get('cache-control')).toContain('no-store')
    expect(await status(a1.jar)).toBe(401)
    expect(await status(a2.jar)).toBe(401)
    expect(await status(d.jar)).toBe(200)
  })

  it('a sid whose sessions belong to another sub ends nothing', async () => {
    const e = await login(world.bff.url, { username: 'erin' })
    const s = (await sessionOf(world.bff, e.jar))!
    expect((await postToken(await forge({ sub: 'mallory', sid: s.data.idpSid }))).status).toBe(200)
    expect(await status(e.jar)).toBe(200)
  })

  describe('every broken check: 400, and the session lives on', () => {
    let jar: CookieJar
    beforeAll(async () => {
      jar = (await login(world.bff.url, { username: 'frank' })).jar
    })

    const now = () => Math.floor(Date.now() / 1000)
    const cases: Array<[string, () => Promise<string>]> = [
      ['a signature by an unknown key', async () => forge({ sub: 'frank' }, { kid: 'other' }, (await generateKeyPair('RS256')).privateKey)],
      [
        'alg none',
        async () => {
          const t = (await forge({ sub: 'frank' })).split('.')
          const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'logout+jwt' })).toString('base64url')
          return `${header}.${t[1]}.`
        },
      ],
      [
        'HS256 signed with the client secret',
        async () => forge({ sub: 'frank' }, { alg: 'HS256' }, new TextEncoder().encode(world.clientSecret)),
      ],
      ['a wrong typ', () => forge({ sub: 'frank' }, { typ: 'JWT+id' })],
      ['a wrong iss', () => forge({ sub: 'frank', iss: 'https://evil.example' })],
      ['a wrong aud', () => forge({ sub: 'frank', aud: 'someone-else' })],
      ['an expired token', () => forge({ sub: 'frank', iat: now() - 600, exp: now() - 300 })],
      ['an iat far in the past', () => forge({ sub: 'frank', iat: now() - 3600 })],
      ['no events', () => forge({ sub: 'frank', events: undefined })],
      ['the wrong event', () => forge({ sub: 'frank', events: { 'http://schemas.openid.net/event/other': {} } })],
      ['a nonce', () => forge({ sub: 'frank', nonce: 'n' })],
      ['neither sub nor sid', () => forge({})],
      ['no jti', () => forge({ sub: 'frank', jti: undefined })],
    ]
    it.each(cases)('%s', async (_name, make) => {
      const res = await postToken(await make())
      expect(res.status).toBe(400)
      expect(res.headers.get('cache-control')).toContain('no-store')
      expect(await res.json()).toMatchObject({ error: 'invalid_request' })
      expect(await status(jar)).toBe(200)
    })

    it('a replayed token (same jti) is refused the second time', async () => {
      const other = (await login(world.bff.url, { username: 'grace' })).jar
      const token = await forge({ sub: 'grace' })
      expect((await postToken(token)).status).toBe(200)
      expect(await status(other)).toBe(401)
      const again = (await login(world.bff.url, { username: 'grace' })).jar
      expect((await postToken(token)).status).toBe(400)
      expect(await status(again)).toBe(200)
    })

    it('no token, or not a form: 400 (the endpoint is anonymous and needs no CSRF header)', async () => {
      expect((await post('')).status).toBe(400)
      expect((await post('{"logout_token":"x"}', 'application/json')).status).toBe(400)
      expect((await post('logout_token=not.a.jwt')).status).toBe(400)
      expect(await status(jar)).toBe(200)
    })
  })

  it('invalid tokens are rate-limited per client (429 with Retry-After)', async () => {
    const results = await Promise.all(Array.from({ length: 70 }, () => post('logout_token=x')))
    const limited = results.filter((r) => r.status === 429)
    expect(limited.length).toBeGreaterThan(0)
    expect(limited[0]!.headers.get('retry-after')).toBeTruthy()
    expect(await limited[0]!.json()).toMatchObject({ error: 'rate_limited' })
  })

  it('a flood of junk from the same address never stops a genuine logout (only failures count)', async () => {
    const h = (await login(world.bff.url, { username: 'heidi' })).jar
    const i = (await login(world.bff.url, { username: 'ivan' })).jar
    const junk = await Promise.all(Array.from({ length: 80 }, () => post('logout_token=x')))
    expect(junk.filter((r) => r.status === 429).length).toBeGreaterThan(0)
    // The IdP's own POST, from the same (flooded) address.
    const s = (await sessionOf(world.bff, h))!
    const client = (await world.idp.provider.Client.find(CLIENT_ID)) as unknown as {
      backchannelLogout(sub: string, sid: string): Promise<void>
    }
    await client.backchannelLogout('heidi', s.data.idpSid!)
    expect(await status(h)).toBe(401)
    // And a valid token posted directly, still during the flood.
    const res = await postToken(await forge({ sub: 'ivan' }))
    expect(res.status).toBe(200)
    expect(await status(i)).toBe(401)
  })

  it('a body over 16 KiB is refused with 413 without being read whole, and the session lives on', async () => {
    const j = (await login(world.bff.url, { username: 'judy' })).jar
    const token = await forge({ sub: 'judy' })
    const res = await post(`logout_token=${token}&pad=${'a'.repeat(20_000)}`)
    expect(res.status).toBe(413)
    expect(await res.json()).toMatchObject({ error: 'payload_too_large' })
    expect(await status(j)).toBe(200)
  })
})
