// Microsoft Entra ID's multi-tenant endpoints (docs/providers.md, security
// model S79), reproduced with the dev IdP: tokenward is configured with the
// real `https://login.microsoftonline.com/common/v2.0`, and a fetch routes
// that discovery to the dev IdP and answers the `{tenantid}` issuer template
// as Entra ID does. The dev IdP signs as one tenant
// (`https://login.microsoftonline.com/<tid>/v2.0`, with `tid` in its ID
// tokens), so openid-client takes its real Entra ID path.
import { randomUUID } from 'node:crypto'
import { importJWK, SignJWT } from 'jose'
import type { CustomFetch } from 'openid-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { DevIdpOptions } from '../../demo/idp.js'
import { CLAIMS } from '../../demo/idp/accounts.js'
import { configProblems, testEnv } from '../helpers/env.js'
import { completeAtIdp, CookieJar, login, startLogin } from '../helpers/login.js'
import { expireAccessToken, sessionOf, spaFetch } from '../helpers/session.js'
import { CLIENT_ID, startWorld, type World } from '../helpers/world.js'

const ENTRA = 'https://login.microsoftonline.com'
const COMMON = `${ENTRA}/common/v2.0`
const TEMPLATE = `${ENTRA}/{tenantid}/v2.0`

/** The dev IdP's tenant, another tenant, and the `tid` its ID tokens carry (a test may change it). */
const TENANT_A = randomUUID()
const TENANT_B = randomUUID()
const tid = { value: TENANT_A }

/** The dev IdP as one Entra ID tenant: its issuer, and `tid` in the ID token (Core §5.4 scope claims). */
const tenantIdp: Omit<DevIdpOptions, 'clients'> = {
  issuer: `${ENTRA}/${TENANT_A}/v2.0`,
  configure(c) {
    c.claims = { ...CLAIMS, openid: ['sub', 'tid'] }
    const findAccount = c.findAccount!
    c.findAccount = async (ctx, sub, token) => {
      const account = await findAccount(ctx, sub, token)
      if (!account) return account
      return { ...account, claims: async (...args) => ({ ...(await account.claims(...args)), tid: tid.value }) }
    }
  },
}

/**
 * Entra ID's discovery at `common` for tokenward, the rest of the dev IdP as
 * it is; any other request for login.microsoftonline.com fails the test.
 */
function entraFetch(idp: () => string): CustomFetch {
  return async (url, options) => {
    const target = new URL(url)
    if (target.origin !== ENTRA) return fetch(url, options as RequestInit)
    if (target.pathname !== '/common/v2.0/.well-known/openid-configuration') throw new Error(`unexpected request for ${url}`)
    const res = await fetch(`${idp()}/.well-known/openid-configuration`, options as RequestInit)
    const metadata = (await res.json()) as Record<string, unknown>
    // As Entra ID's multi-tenant discovery: the template, and no RFC 9207 support advertised.
    metadata.issuer = TEMPLATE
    delete metadata.authorization_response_iss_parameter_supported
    return Response.json(metadata)
  }
}

async function startEntraWorld(tenants: string): Promise<World> {
  let idpUrl = ''
  const world = await startWorld({
    idp: tenantIdp,
    env: { BFF_ISSUER: COMMON, BFF_ISSUER_TENANTS: tenants, BFF_PAR: 'never' },
    oidc: { customFetch: entraFetch(() => idpUrl) },
  })
  idpUrl = `http://127.0.0.1:${world.idp.port}`
  return world
}

/** Walks a login to the callback URL, lets `edit` change it, and requests it. */
async function callback(world: World, edit: (url: URL) => void = () => {}): Promise<{ res: Response; jar: CookieJar }> {
  const jar = new CookieJar()
  const authorizationUrl = await startLogin(world.bff.url, jar)
  const url = new URL(await completeAtIdp(authorizationUrl, jar))
  edit(url)
  const res = await fetch(url, { headers: { cookie: jar.header(url) }, redirect: 'manual' })
  jar.store(url, res.headers)
  return { res, jar }
}

describe('Entra ID multi-tenant issuer: only the tenants of BFF_ISSUER_TENANTS (security model S79)', () => {
  let allowed: World
  let other: World

  beforeAll(async () => {
    // One after the other: free ports are picked per world.
    allowed = await startEntraWorld(`${TENANT_B},${TENANT_A.toUpperCase()}`)
    other = await startEntraWorld(TENANT_B)
  })
  afterAll(() => Promise.all([allowed?.close(), other?.close()]))

  it('a user of an allowed tenant signs in; the session keeps the tenant issuer, and the API call goes through', async () => {
    tid.value = TENANT_A
    const { jar, callbackUrl } = await login(allowed.bff.url)
    // The dev IdP answers with RFC 9207 `iss`: the tenant's issuer, not the template.
    expect(new URL(callbackUrl).searchParams.get('iss')).toBe(`${ENTRA}/${TENANT_A}/v2.0`)
    const session = (await sessionOf(allowed.bff, jar))!
    expect(session.data.iss).toBe(`${ENTRA}/${TENANT_A}/v2.0`)
    expect(session.data.claims.tid).toBe(TENANT_A)
    expect((await spaFetch(allowed.bff, jar, '/auth/session')).status).toBe(200)
    expect((await spaFetch(allowed.bff, jar, '/api/me')).status).toBe(200)
  })

  it('a refresh keeps the tenant issuer: the refreshed ID token is checked against it, and the API call goes through', async () => {
    tid.value = TENANT_A
    const { jar } = await login(allowed.bff.url)
    const before = await expireAccessToken(allowed.bff, jar)
    expect(before.data.scope?.split(' ')).toContain('offline_access')
    expect((await spaFetch(allowed.bff, jar, '/api/me')).status).toBe(200)
    const after = (await sessionOf(allowed.bff, jar))!
    expect(after.data.accessToken).not.toBe(before.data.accessToken)
    expect(after.data.iss).toBe(`${ENTRA}/${TENANT_A}/v2.0`)
  })

  it('the same login without the response iss (as Entra ID answers) signs in too', async () => {
    tid.value = TENANT_A
    const { res, jar } = await callback(allowed, (url) => url.searchParams.delete('iss'))
    expect(res.status).toBe(303)
    expect((await spaFetch(allowed.bff, jar, '/auth/session')).status).toBe(200)
  })

  it("a back-channel logout token from the user's tenant ends the session", async () => {
    tid.value = TENANT_A
    const { jar } = await login(allowed.bff.url)
    const session = (await sessionOf(allowed.bff, jar))!
    // oidc-provider signs it with its issuer: the tenant's, as Entra ID would.
    const client = (await allowed.idp.provider.Client.find(CLIENT_ID)) as unknown as {
      backchannelLogout(sub: string, sid: string): Promise<void>
    }
    await client.backchannelLogout(session.data.sub, session.data.idpSid!)
    expect((await spaFetch(allowed.bff, jar, '/auth/session')).status).toBe(401)
  })

  it('a logout token signed as a tenant not in the list is refused, and ends nothing', async () => {
    tid.value = TENANT_A
    const { jar } = await login(allowed.bff.url)
    const session = (await sessionOf(allowed.bff, jar))!
    const now = Math.floor(Date.now() / 1000)
    // The IdP's real key, as Entra ID signs every tenant's tokens with the same keys.
    const token = await new SignJWT({
      iss: `${ENTRA}/${randomUUID()}/v2.0`,
      aud: CLIENT_ID,
      iat: now,
      exp: now + 120,
      jti: randomUUID(),
      sub: session.data.sub,
      events: { 'http://schemas.openid.net/event/backchannel-logout': {} },
    })
      .setProtectedHeader({ alg: 'RS256', typ: 'logout+jwt', kid: allowed.idp.signingKey.kid })
      .sign(await importJWK(allowed.idp.signingKey, 'RS256'))
    const res = await fetch(`${allowed.bff.url}/auth/backchannel-logout`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ logout_token: token }).toString(),
    })
    expect(res.status).toBe(400)
    expect((await spaFetch(allowed.bff, jar, '/auth/session')).status).toBe(200)
  })

  it('a tenant not in the list is refused at the callback (RFC 9207 iss), and no session is made', async () => {
    tid.value = TENANT_A
    const { res, jar } = await callback(other)
    expect(res.status).toBe(400)
    expect(((await res.json()) as { error: string }).error).toBe('invalid_request')
    expect(jar.get(other.bff.config.cookie.name)).toBeUndefined()
    expect((await spaFetch(other.bff, jar, '/auth/session')).status).toBe(401)
    expect(other.bff.logs.some((l) => l.includes('a mix-up (RFC 9207'))).toBe(true)
  })

  it('a tenant not in the list is refused by its ID token when the response has no iss', async () => {
    tid.value = TENANT_A
    const { res, jar } = await callback(other, (url) => url.searchParams.delete('iss'))
    expect(res.status).toBe(400)
    expect(jar.get(other.bff.config.cookie.name)).toBeUndefined()
    expect((await spaFetch(other.bff, jar, '/auth/session')).status).toBe(401)
    expect(other.bff.logs.some((l) => l.includes('BFF_ISSUER_TENANTS does not allow'))).toBe(true)
  })

  it("an ID token claiming an allowed tid under another tenant's issuer is refused", async () => {
    tid.value = TENANT_B
    try {
      const { res, jar } = await callback(other, (url) => url.searchParams.delete('iss'))
      expect(res.status).toBe(400)
      expect(jar.get(other.bff.config.cookie.name)).toBeUndefined()
      // openid-client's own check: iss must be the template filled in with the token's tid.
      expect(other.bff.logs.some((l) => l.includes('ID token validation failed') && l.includes('iss'))).toBe(true)
    } finally {
      tid.value = TENANT_A
    }
  })
})

describe('Entra ID multi-tenant configuration', () => {
  it('the common and organizations endpoints without BFF_ISSUER_TENANTS are a configuration error naming it', () => {
    for (const issuer of [COMMON, `${ENTRA}/organizations/v2.0`]) {
      const problems = configProblems(testEnv({ BFF_ISSUER: issuer }))
      expect(problems.some((p) => p.startsWith('BFF_ISSUER_TENANTS is required'))).toBe(true)
    }
  })

  it('tenant ids must be GUIDs; consumers must be named by its own issuer; a tenant list is valid with common', () => {
    expect(configProblems(testEnv({ BFF_ISSUER: COMMON, BFF_ISSUER_TENANTS: 'contoso.onmicrosoft.com' }))).toContain(
      'BFF_ISSUER_TENANTS entry "contoso.onmicrosoft.com" must be a tenant id (a GUID)',
    )
    expect(
      configProblems(testEnv({ BFF_ISSUER: `${ENTRA}/consumers/v2.0` })).some((p) => p.includes('9188040d-6c67-4c5b-b112-36a304b66dad')),
    ).toBe(true)
    expect(configProblems(testEnv({ BFF_ISSUER: COMMON, BFF_ISSUER_TENANTS: `${TENANT_A}, ${TENANT_B}` }))).toEqual([])
  })
})
