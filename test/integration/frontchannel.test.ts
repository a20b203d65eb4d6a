import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { auditEvents } from '../helpers/bff.js'
import { login, send, type CookieJar } from '../helpers/login.js'
import { sessionOf, spaFetch } from '../helpers/session.js'
import { openEvents } from '../helpers/sse.js'
import { startWorld, type World } from '../helpers/world.js'

let world: World

beforeAll(async () => {
  world = await startWorld({
    idp: { frontchannelLogout: true },
    // Front-channel only: no back-channel logout could end the sessions first.
    clientMetadata: {
      backchannel_logout_uri: undefined,
      backchannel_logout_session_required: undefined,
      frontchannel_logout_uri: '{publicUrl}/auth/frontchannel-logout',
      frontchannel_logout_session_required: true,
    },
  })
})
afterAll(() => world?.close())

async function status(jar: CookieJar): Promise<number> {
  return (await spaFetch(world.bff, jar, '/auth/session')).status
}

/** The IdP session id (the ID token's `sid`) behind a tokenward session. */
async function idpSid(jar: CookieJar): Promise<string> {
  const sid = (await sessionOf(world.bff, jar))?.data.idpSid
  expect(sid).toBeTruthy()
  return sid!
}

/** A front-channel logout request as the IdP's iframe makes it: no cookie, no X-CSRF. */
function frontchannel(query: Record<string, string> | string): Promise<Response> {
  const search = typeof query === 'string' ? query : new URLSearchParams(query).toString()
  return fetch(`${world.bff.url}/auth/frontchannel-logout?${search}`, { headers: { accept: 'text/html' } })
}

describe('front-channel logout (OpenID Connect Front-Channel Logout 1.0, security model S75, S76)', () => {
  it('the right iss and sid end that IdP session’s tokenward session, and only it; audited; the open event stream hears it', async () => {
    const a = await login(world.bff.url, { username: 'alice' })
    const b = await login(world.bff.url, { username: 'bob' })
    const s = (await sessionOf(world.bff, a.jar))!
    const stream = await openEvents(world.bff, a.jar)
    try {
      const revocations = world.idp.counts.revocations
      const res = await frontchannel({ iss: world.idp.issuer, sid: await idpSid(a.jar) })
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toMatch(/^text\/html/)
      expect(res.headers.get('cache-control')).toContain('no-store')
      // Framable by the IdP's origin only; nothing to run.
      const csp = res.headers.get('content-security-policy')!
      expect(csp).toContain(`frame-ancestors ${new URL(world.idp.issuer).origin}`)
      expect(csp).toContain("default-src 'none'")
      expect(res.headers.get('x-frame-options')).toBeNull()
      expect(await res.text()).not.toContain('<script')
      expect(await status(a.jar)).toBe(401)
      expect(await status(b.jar)).toBe(200)
      expect(world.idp.counts.revocations).toBe(revocations + 1)
      expect(JSON.parse((await stream.waitFor('session_ended', 2000)).data)).toEqual({ reason: 'frontchannel_logout' })
      const audit = auditEvents(world.bff.logs).filter((e) => e.event === 'frontchannel_logout')
      expect(audit).toHaveLength(1)
      expect(audit[0]).toMatchObject({ sid: s.sid, sub: 'alice', outcome: 'success' })
      expect(auditEvents(world.bff.logs).some((e) => e.event === 'backchannel_logout' && e.sid === s.sid)).toBe(false)
    } finally {
      stream.close()
    }
  })

  it('an unknown sid: the same 200 page, and nothing ends', async () => {
    const c = await login(world.bff.url, { username: 'carol' })
    const known = await frontchannel({ iss: world.idp.issuer, sid: 'no-such-idp-session' })
    expect(known.status).toBe(200)
    expect(await known.text()).toContain('Signed out')
    expect(await status(c.jar)).toBe(200)
  })

  it('a wrong, missing or repeated iss, or a missing or ill-formed sid: 400 invalid_request, and the session lives on', async () => {
    const d = await login(world.bff.url, { username: 'dave' })
    const sid = await idpSid(d.jar)
    const cases: Array<Record<string, string> | string> = [
      { iss: 'https://evil.example', sid },
      { iss: `${world.idp.issuer}/`, sid },
      { sid },
      { iss: world.idp.issuer },
      { iss: world.idp.issuer, sid: '' },
      { iss: world.idp.issuer, sid: `${sid} ` },
      { iss: world.idp.issuer, sid: 'x'.repeat(300) },
      `iss=${encodeURIComponent(world.idp.issuer)}&iss=${encodeURIComponent('https://evil.example')}&sid=${encodeURIComponent(sid)}`,
    ]
    for (const query of cases) {
      const res = await frontchannel(query)
      expect(res.status, JSON.stringify(query)).toBe(400)
      expect(res.headers.get('cache-control')).toContain('no-store')
      expect(await res.json()).toMatchObject({ error: 'invalid_request' })
    }
    expect(await status(d.jar)).toBe(200)
  })

  it('the dev IdP frames the endpoint with iss and sid after a logout at the IdP, and loading that frame ends the session', async () => {
    const e = await login(world.bff.url, { username: 'erin' })
    const f = await login(world.bff.url, { username: 'frank' })
    const sid = await idpSid(e.jar)
    const endSession = `${world.idp.issuer}${world.idp.provider.pathFor('end_session')}`
    // The IdP's confirmation page (its cookies are in the login's jar) and "Yes, sign me out".
    const confirm = await send(e.jar, 'GET', endSession, undefined, undefined)
    expect(confirm.status).toBe(200)
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(confirm.body)?.[1]
    expect(xsrf).toBeTruthy()
    const confirmed = await send(e.jar, 'POST', `${endSession}/confirm`, new URLSearchParams({ xsrf: xsrf!, logout: 'yes' }), undefined)
    expect(confirmed.status).toBe(303)
    const done = await send(e.jar, 'GET', new URL(confirmed.headers.get('location')!, endSession).href, undefined, undefined)
    expect(done.status).toBe(200)
    expect(done.headers.get('content-security-policy')).toContain(`frame-src ${new URL(world.bff.url).origin}`)
    const src = /<iframe src="([^"]+)"/.exec(done.body)?.[1]?.replace(/&#38;/g, '&')
    expect(src).toBeTruthy()
    const url = new URL(src!)
    expect(`${url.origin}${url.pathname}`).toBe(`${world.bff.url}/auth/frontchannel-logout`)
    expect(url.searchParams.get('iss')).toBe(world.idp.issuer)
    expect(url.searchParams.get('sid')).toBe(sid)
    // The IdP session is over, but nothing told tokenward yet: the frame does.
    expect(await status(e.jar)).toBe(200)
    expect((await fetch(url)).status).toBe(200)
    expect(await status(e.jar)).toBe(401)
    expect(await status(f.jar)).toBe(200)
  })

  it('is rate-limited per client address like the other anonymous endpoints (429 with Retry-After)', async () => {
    const results = await Promise.all(Array.from({ length: 320 }, () => frontchannel({ iss: world.idp.issuer, sid: 'guess' })))
    const limited = results.filter((r) => r.status === 429)
    expect(limited.length).toBeGreaterThan(0)
    expect(limited[0]!.headers.get('retry-after')).toBeTruthy()
    expect(await limited[0]!.json()).toMatchObject({ error: 'rate_limited' })
  })
})
