// Identity-provider quirks of docs/providers.md, each reproduced with the dev
// IdP: no revocation endpoint (Entra ID, Google, LemonLDAP::NG), no
// end-session endpoint (Google, and AWS Cognito whose logout URL is not in
// discovery), and provider-specific authorization parameters (Auth0
// `audience`, Google `access_type=offline` with `prompt=consent`).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { completeAtIdp, CookieJar, login, startLogin } from '../helpers/login.js'
import { sessionOf, spaFetch } from '../helpers/session.js'
import { CLIENT_ID, startWorld, type World } from '../helpers/world.js'

async function logoutByFetch(world: World, jar: CookieJar): Promise<{ status: number; redirectTo: string }> {
  const res = await spaFetch(world.bff, jar, '/auth/logout', { method: 'POST' })
  return { status: res.status, redirectTo: ((await res.json()) as { redirectTo: string }).redirectTo }
}

describe('an IdP without a revocation endpoint (Entra ID, Google, LemonLDAP::NG)', () => {
  let world: World
  beforeAll(async () => {
    world = await startWorld({
      idp: {
        configure(c) {
          c.features!.revocation = { enabled: false }
        },
      },
    })
  })
  afterAll(() => world?.close())

  it('logout still ends the session and sends the browser to the end-session endpoint', async () => {
    expect(world.bff.server.deps.oidc.serverMetadata?.revocation_endpoint).toBeUndefined()
    const { jar } = await login(world.bff.url)
    expect(await sessionOf(world.bff, jar)).not.toBeNull()
    const requests = world.idp.counts.revocationRequests
    const sealed = jar.get(world.bff.config.cookie.name)

    const { status, redirectTo } = await logoutByFetch(world, jar)
    expect(status).toBe(200)
    const endSession = world.bff.server.deps.oidc.serverMetadata!.end_session_endpoint!
    expect(redirectTo.startsWith(`${endSession}?`)).toBe(true)
    expect(new URL(redirectTo).searchParams.get('client_id')).toBe(CLIENT_ID)
    expect(new URL(redirectTo).searchParams.get('post_logout_redirect_uri')).toBe(`${world.bff.url}/`)
    expect(world.idp.counts.revocationRequests).toBe(requests)
    // The session is gone from the store, not only from this browser.
    const replay = new CookieJar()
    replay.set(world.bff.config.cookie.name, sealed, '127.0.0.1')
    expect((await spaFetch(world.bff, replay, '/auth/session')).status).toBe(401)
  })
})

describe('an IdP without an end-session endpoint (Google, AWS Cognito)', () => {
  let world: World
  beforeAll(async () => {
    world = await startWorld({
      idp: {
        configure(c) {
          c.features!.revocation = { enabled: false }
          c.features!.rpInitiatedLogout = { enabled: false }
        },
      },
    })
  })
  afterAll(() => world?.close())

  it('logout ends the session and redirects to BFF_POST_LOGOUT_REDIRECT, by fetch and by navigation', async () => {
    expect(world.bff.server.deps.oidc.serverMetadata?.end_session_endpoint).toBeUndefined()
    const a = await login(world.bff.url)
    expect(await logoutByFetch(world, a.jar)).toEqual({ status: 200, redirectTo: `${world.bff.url}/` })
    expect((await spaFetch(world.bff, a.jar, '/auth/session')).status).toBe(401)

    const b = await login(world.bff.url)
    const sid = (await sessionOf(world.bff, b.jar))!.sid
    const res = await fetch(`${world.bff.url}/auth/logout?sid=${encodeURIComponent(sid)}`, {
      headers: { cookie: b.jar.header(world.bff.url) },
      redirect: 'manual',
    })
    expect(res.status).toBe(302)
    expect(res.headers.get('location')).toBe(`${world.bff.url}/`)
    b.jar.store(world.bff.url, res.headers)
    expect((await spaFetch(world.bff, b.jar, '/auth/session')).status).toBe(401)
  })

  it('Cognito: BFF_POST_LOGOUT_REDIRECT set to the /logout URL (client_id, logout_uri) is where logout goes, unchanged', async () => {
    const cognitoLogout = `https://auth.example.com/logout?client_id=${CLIENT_ID}&logout_uri=${encodeURIComponent('https://app.example.com/')}`
    const cognito = await world.startInstance({ BFF_POST_LOGOUT_REDIRECT: cognitoLogout })
    const { jar } = await login(world.bff.url)
    const res = await spaFetch(cognito, jar, '/auth/logout', { method: 'POST' })
    expect(res.status).toBe(200)
    expect(((await res.json()) as { redirectTo: string }).redirectTo).toBe(cognitoLogout)
    expect((await spaFetch(world.bff, jar, '/auth/session')).status).toBe(401)
  })

  it('Auth0 audience and Google access_type=offline with prompt=consent reach the authorization request from BFF_AUTH_PARAMS', async () => {
    const params = 'audience=https%3A%2F%2Fapi.example.com&access_type=offline&prompt=consent'
    const instance = await world.startInstance({ BFF_AUTH_PARAMS: params, BFF_PAR: 'never' })
    const jar = new CookieJar()
    const authorizationUrl = new URL(await startLogin(instance.url, jar))
    expect(authorizationUrl.searchParams.get('audience')).toBe('https://api.example.com')
    expect(authorizationUrl.searchParams.get('access_type')).toBe('offline')
    expect(authorizationUrl.searchParams.get('prompt')).toBe('consent')
    expect(authorizationUrl.searchParams.get('scope')).toBe('openid profile email offline_access')
    // The IdP ignores what it does not know (RFC 6749 §3.1), and the login completes.
    const callbackUrl = await completeAtIdp(authorizationUrl.href, jar)
    const res = await fetch(callbackUrl, { headers: { cookie: jar.header(callbackUrl) }, redirect: 'manual' })
    expect(res.status).toBe(303)

    // A login request's own prompt replaces a configured prompt=consent (docs/configuration.md, the login policy).
    const own = new URL(
      (
        await fetch(`${instance.url}/auth/login?prompt=select_account`, {
          redirect: 'manual',
        })
      ).headers.get('location')!,
    )
    expect(own.searchParams.get('prompt')).toBe('select_account')
    expect(own.searchParams.get('access_type')).toBe('offline')
  })
})
