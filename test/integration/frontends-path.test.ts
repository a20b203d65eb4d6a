import { randomBytes, randomUUID } from 'node:crypto'
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { inject } from 'vitest'
import { loadFrontends } from '../../src/config-file.js'
import { createLogger } from '../../src/log.js'
import { startServer, type RunningServer } from '../../src/server.js'
import { CookieJar, login } from '../helpers/login.js'
import { hostRequest, startFrontendIdp, type RawAnswer } from '../helpers/frontends.js'
import { freePort } from '../helpers/ports.js'
import { handshakeHead } from '../helpers/websocket.js'
import type { TestIdp } from '../helpers/test-idp.js'
import type { EchoUpstream } from '../helpers/upstream.js'

// Two frontends on the SAME host, http://localhost:<port>, at the path bases
// /shop and /admin (docs/configuration.md "Several frontends"; security model
// S92), each at its own dev IdP with its own upstream, sharing the cookie
// secret and encryption keys. shop keeps the default cookie name of a
// path-based frontend, admin sets its own.

const SHOP_API = 'https://shop-api.example'
const ADMIN_API = 'https://admin-api.example'

interface Side {
  name: string
  /** The public URL with its base, no trailing slash. */
  url: string
  base: string
  cookie: string
  idp: TestIdp
  upstream: EchoUpstream
}

let port: number
let shop: Side
let admin: Side
let server: RunningServer

async function side(name: string, base: string, cookie: string, resource: string): Promise<Side> {
  const url = `http://localhost:${port}${base}`
  const { idp, upstream } = await startFrontendIdp(name, url, resource)
  return { name, url, base, cookie, idp, upstream }
}

function frontendYaml(s: Side, extra = ''): string {
  return `
  - name: ${s.name}
    publicUrl: ${s.url}
    issuer: ${s.idp.issuer}
    clientId: ${s.name}-bff
    clientSecret: ${s.name}-secret-${'x'.repeat(24)}
    cookieSecret: \${COOKIE_SECRET}
    encryptionKeys: \${ENCRYPTION_KEYS}
    routes:
      - { prefix: /api, upstream: "${s.upstream.url}", token: user }
      - { prefix: /ws, upstream: "${s.upstream.url}/socket", token: user, websocket: true }
${extra}`
}

/** A request with the exact path and Host given. */
function raw(path: string, host = `localhost:${port}`, headers: Record<string, string> = {}): Promise<RawAnswer> {
  return hostRequest(port, path, host, headers)
}

/** A call as the SPA makes it, with the cookies the browser would send to that URL. */
function call(url: string, jar: CookieJar, method = 'GET'): Promise<Response> {
  return fetch(url, { method, headers: { cookie: jar.header(url), 'x-csrf': '1' }, redirect: 'manual' })
}

beforeAll(async () => {
  port = await freePort()
  ;[shop, admin] = await Promise.all([
    side('shop', '/shop', '__Secure-tokenward', SHOP_API),
    side('admin', '/admin', '__Secure-admin', ADMIN_API),
  ])
  const dir = mkdtempSync(join(tmpdir(), 'tw-frontends-path-'))
  const file = join(dir, 'frontends.yaml')
  const statics = join(dir, 'admin-static')
  mkdirSync(statics)
  writeFileSync(join(statics, 'index.html'), '<!doctype html><title>admin app</title>')
  writeFileSync(join(statics, 'app.js'), 'console.log("admin")')
  writeFileSync(
    file,
    `frontends:${frontendYaml(shop)}${frontendYaml(admin, `    cookieName: __Secure-admin\n    staticDir: ${statics}\n`)}`,
  )
  const env = {
    BFF_CONFIG_FILE: file,
    BFF_REDIS_URL: inject('redisUrl'),
    BFF_REDIS_PREFIX: `tokenward-test:${randomUUID()}:`,
    BFF_ALLOW_HTTP: 'true',
    BFF_HOST: '127.0.0.1',
    BFF_PORT: String(port),
    BFF_LOG_LEVEL: 'silent',
    COOKIE_SECRET: randomBytes(32).toString('base64url'),
    ENCRYPTION_KEYS: `k1:${randomBytes(32).toString('base64')}`,
  }
  server = await startServer(loadFrontends(env), { logger: createLogger('silent'), store: 'redis', port })
})

afterAll(async () => {
  await server?.close()
  for (const s of [shop, admin]) {
    await s?.upstream.close()
    await s?.idp.close()
  }
})

describe('frontends at path bases on one host (security model S92)', () => {
  it('each logs in under its base, with its cookies at Path=<base>, and proxies to its own upstream with its own token', async () => {
    const [a, b] = await Promise.all([login(shop.url, { username: 'alice' }), login(admin.url, { username: 'bob' })])
    for (const [s, r] of [
      [shop, a],
      [admin, b],
    ] as const) {
      const loginExchange = r.exchanges.find((e) => e.url.startsWith(`${s.url}/auth/login`))!
      expect(loginExchange.headers.getSetCookie()).toEqual([expect.stringMatching(new RegExp(`^${s.cookie}-tx=[^;]+; Path=${s.base}; `))])
      // The IdP redirects only to a registered redirect URI: the one under the base.
      expect(r.callbackUrl.startsWith(`${s.url}/auth/callback?`)).toBe(true)
      const callback = r.exchanges.find((e) => e.url.startsWith(`${s.url}/auth/callback`))!
      const session = callback.headers.getSetCookie().find((l) => l.startsWith(`${s.cookie}=`))!
      expect(session).toMatch(new RegExp(`; Path=${s.base}; .*HttpOnly; Secure; SameSite=Strict$`))
      expect(session).not.toContain('Domain')
      // The default returnTo is the base's root.
      expect(r.location).toBe(`${s.base}/`)
    }
    expect(shop.cookie).not.toBe(admin.cookie)

    const before = { shop: shop.upstream.requests.length, admin: admin.upstream.requests.length }
    // The upstreams verify issuer, signature and audience: the other IdP's token would be 401.
    expect((await call(`${shop.url}/api/echo`, a.jar)).status).toBe(200)
    expect((await call(`${admin.url}/api/echo`, b.jar)).status).toBe(200)
    expect(shop.upstream.requests.length).toBe(before.shop + 1)
    expect(admin.upstream.requests.length).toBe(before.admin + 1)
    const me = async (url: string, jar: CookieJar) => (await (await call(`${url}/auth/session`, jar)).json()) as { sub?: string }
    expect(await me(shop.url, a.jar)).toMatchObject({ sub: 'alice' })
    expect(await me(admin.url, b.jar)).toMatchObject({ sub: 'bob' })

    // One browser holding both sessions: each base gets its own cookie only.
    const both = new CookieJar()
    both.set(shop.cookie, a.jar.get(shop.cookie)!, 'localhost', '/shop')
    both.set(admin.cookie, b.jar.get(admin.cookie)!, 'localhost', '/admin')
    expect(await me(shop.url, both)).toMatchObject({ sub: 'alice' })
    expect(await me(admin.url, both)).toMatchObject({ sub: 'bob' })

    // Logout: the post-logout default and the cleared cookie are under the base.
    const out = await call(`${shop.url}/auth/logout`, a.jar, 'POST')
    expect(out.status).toBe(200)
    const { redirectTo } = (await out.json()) as { redirectTo: string }
    expect(new URL(redirectTo).searchParams.get('post_logout_redirect_uri')).toBe(`${shop.url}/`)
    expect(out.headers.getSetCookie()).toContainEqual(expect.stringMatching(/^__Secure-tokenward=; Path=\/shop; Max-Age=0/))
    expect((await call(`${admin.url}/api/echo`, b.jar)).status).toBe(200)
  })

  it("a cookie of one replayed at the other (under the other's name, or planted at Path=/) is no session: 401", async () => {
    const a = await login(shop.url, { username: 'carol' })
    const value = a.jar.get(shop.cookie)!
    for (const [name, path] of [
      [admin.cookie, '/admin'],
      [shop.cookie, '/'],
    ] as const) {
      const stolen = new CookieJar()
      stolen.set(name, value, 'localhost', path)
      const res = await call(`${admin.url}/api/echo`, stolen)
      expect(res.status, `${name} at ${path}`).toBe(401)
      expect(await res.json()).toMatchObject({ error: 'login_required' })
    }
    expect((await call(`${shop.url}/api/echo`, a.jar)).status).toBe(200)
  })

  it('matches the base on a segment boundary: /shopping is not shop; an unserved path is 404, an unknown Host 421; health at the root', async () => {
    const a = await login(shop.url, { username: 'dave' })
    const sent = shop.upstream.requests.length
    const cookie = `${shop.cookie}=${a.jar.get(shop.cookie)!}`
    // /shopapi/echo would become /api/echo if the base were matched as a bare prefix.
    for (const path of ['/shopping/api/echo', '/shopapi/echo', '/api/echo', '/', '/auth/session', '/other/api/echo']) {
      const res = await raw(path, `localhost:${port}`, { cookie })
      expect(res.status, path).toBe(404)
      expect(JSON.parse(res.body), path).toMatchObject({ error: 'not_found' })
    }
    expect(shop.upstream.requests.length).toBe(sent)
    // The base itself and its query form are the frontend's.
    expect((await raw('/shop/api/echo', `localhost:${port}`, { cookie })).status).toBe(200)
    expect((await raw('/shop?x=1', `localhost:${port}`)).status).toBe(404) // no static files: the frontend's own 404
    expect(JSON.parse((await raw('/shop/auth/session', `localhost:${port}`, { cookie })).body)).toMatchObject({ sub: 'dave' })
    const unknown = await raw('/shop/api/echo', `example.com:${port}`)
    expect(unknown.status).toBe(421)
    expect(JSON.parse(unknown.body)).toMatchObject({ error: 'misdirected_request' })
    // admin's static files are served under its base, and only there.
    const page = await raw('/admin/', `localhost:${port}`, { accept: 'text/html' })
    expect(page.status).toBe(200)
    expect(page.body).toContain('admin app')
    expect((await raw('/admin/app.js', `localhost:${port}`)).body).toContain('console.log')
    expect((await raw('/app.js', `localhost:${port}`)).status).toBe(404)
    expect((await raw('/admin/deep/link', `localhost:${port}`, { accept: 'text/html' })).body).toContain('admin app')
    expect((await raw('/healthz', `localhost:${port}`)).status).toBe(200)
    expect((await raw('/readyz', `10.0.0.1:${port}`)).status).toBe(200)
  })

  it('a returnTo outside the base is replaced by the base’s root; one under it is kept', async () => {
    expect((await login(shop.url, { username: 'erin', returnTo: '/admin/users' })).location).toBe('/shop/')
    expect((await login(shop.url, { username: 'erin', returnTo: '/shopping' })).location).toBe('/shop/')
    expect((await login(shop.url, { username: 'erin', returnTo: '/shop/../admin' })).location).toBe('/shop/')
    expect((await login(shop.url, { username: 'erin', returnTo: '/shop/orders?id=7' })).location).toBe('/shop/orders?id=7')
  })

  it("the IdP's back-channel logout reaches the frontend's endpoint under its base and ends that frontend's session only", async () => {
    const a = await login(shop.url, { username: 'frank' })
    const b = await login(admin.url, { username: 'frank' })
    const s = (await server.frontends().get('shop')!.sessions.list('sub', 'frank'))[0]!
    const client = (await shop.idp.provider.Client.find('shop-bff')) as unknown as {
      backchannelLogout(sub: string, sid: string): Promise<void>
    }
    // oidc-provider POSTs the logout token to http://localhost:<port>/shop/auth/backchannel-logout.
    await client.backchannelLogout('frank', s.data.idpSid!)
    expect((await call(`${shop.url}/api/echo`, a.jar)).status).toBe(401)
    expect((await call(`${admin.url}/api/echo`, b.jar)).status).toBe(200)
  })

  it('a WebSocket handshake is dispatched by base like any request: /shop/ws reaches shop’s upstream, /shopws does not', async () => {
    const a = await login(shop.url, { username: 'gina' })
    const handshake = (path: string) =>
      handshakeHead(port, path, {
        Host: `localhost:${port}`,
        Origin: `http://localhost:${port}`,
        Cookie: a.jar.header(`${shop.url}/ws/chat`),
      })
    expect(await handshake('/shop/ws/chat?room=1')).toMatch(/^HTTP\/1\.1 101 /)
    expect(shop.upstream.requests.at(-1)!.url).toBe('/socket/chat?room=1')
    const sent = shop.upstream.requests.length
    for (const path of ['/shopws/chat', '/ws/chat']) expect(await handshake(path), path).toMatch(/^HTTP\/1\.1 404 /)
    expect(shop.upstream.requests.length).toBe(sent)
  })
})
