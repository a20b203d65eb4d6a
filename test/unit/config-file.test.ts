import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { frontendsFromText, hostKeys, keyOf, loadFrontends, pathsOverlap, variableOf } from '../../src/config-file.js'
import { ConfigError } from '../../src/errors.js'
import { testEnv } from '../helpers/env.js'

/** Process-wide variables only: each frontend brings its own settings. */
function baseEnv(extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    BFF_ALLOW_HTTP: 'true',
    BFF_LOG_LEVEL: 'silent',
    BFF_REDIS_PREFIX: 'tw:',
    SHOP_SECRET: randomBytes(24).toString('base64url'),
    SHOP_COOKIE: randomBytes(32).toString('base64url'),
    SHOP_KEYS: `k1:${randomBytes(32).toString('base64')}`,
    ...extra,
  }
}

const shop = `
  - name: shop
    publicUrl: http://shop.localhost:3000
    issuer: http://127.0.0.1:4000
    clientId: shop-bff
    clientSecret: \${SHOP_SECRET}
    cookieSecret: \${SHOP_COOKIE}
    encryptionKeys: \${SHOP_KEYS}
    sessionIdleTimeout: 600
    cookieSameSite: lax
    dpop: true
    authParams: { prompt: login, acr_values: "urn:a urn:b" }
    routes:
      - { prefix: /api, upstream: http://127.0.0.1:5000/v1, token: user }
`
const admin = `
  - name: admin
    publicUrl: http://admin.localhost:3000
    issuer: http://127.0.0.1:4001
    clientId: admin-bff
    clientSecret: admin-secret-value
    cookieSecret: \${SHOP_COOKIE}
    encryptionKeys: \${SHOP_KEYS}
    routes: '[{"prefix":"/admin-api","upstream":"http://127.0.0.1:5001","token":"user"}]'
`

function problems(text: string, env = baseEnv()): string[] {
  try {
    frontendsFromText(text, env)
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems]
    throw err
  }
  return []
}

describe('BFF_CONFIG_FILE (docs/configuration.md "Several frontends")', () => {
  it('maps lowerCamelCase keys to the variables, with the special cases', () => {
    expect(variableOf('publicUrl')).toBe('BFF_PUBLIC_URL')
    expect(variableOf('sessionIdleTimeout')).toBe('BFF_SESSION_IDLE_TIMEOUT')
    expect(variableOf('cookieSameSite')).toBe('BFF_COOKIE_SAMESITE')
    expect(variableOf('dbscCookieTtl')).toBe('BFF_DBSC_COOKIE_TTL')
    expect(variableOf('tlsCa')).toBe('BFF_TLS_CA')
    expect(keyOf('BFF_ID_TOKEN_MAX_AGE')).toBe('idTokenMaxAge')
    expect(variableOf('nope')).toBeUndefined()
  })

  it('reads two frontends: values, ${ENV}, lists, maps, derived Redis prefix', () => {
    const env = baseEnv()
    const [a, b] = frontendsFromText(`frontends:${shop}${admin}`, env)
    expect(a!.name).toBe('shop')
    expect(a!.host).toBe('shop.localhost:3000')
    expect(a!.config.clientSecret).toBe(env.SHOP_SECRET)
    expect(a!.config.session.idleTimeout).toBe(600)
    expect(a!.config.cookie.sameSite).toBe('Lax')
    expect(a!.config.dpop.enabled).toBe(true)
    expect(a!.config.authParams).toEqual([
      ['prompt', 'login'],
      ['acr_values', 'urn:a urn:b'],
    ])
    expect(a!.config.routes.map((r) => r.prefix)).toEqual(['/api'])
    expect(a!.config.redis.prefix).toBe('tw:shop:')
    expect(b!.config.redis.prefix).toBe('tw:admin:')
    expect(b!.config.routes.map((r) => r.prefix)).toEqual(['/admin-api'])
    expect(b!.config.clientId).toBe('admin-bff')
  })

  it('inherits other BFF_* variables of the environment as defaults', () => {
    const [a, b] = frontendsFromText(`frontends:${shop}${admin}`, baseEnv({ BFF_SESSION_MAX_AGE: '7200', BFF_SESSION_IDLE_TIMEOUT: '900' }))
    expect(a!.config.session).toMatchObject({ maxAge: 7200, idleTimeout: 600 })
    expect(b!.config.session).toMatchObject({ maxAge: 7200, idleTimeout: 900 })
  })

  it('reports every problem of every frontend at once, each prefixed', () => {
    const bad = `frontends:
  - name: shop
    publicUrl: http://shop.localhost:3000
    issuer: http://127.0.0.1:4000
    clientId: shop-bff
    clientSecret: \${NOT_SET_ANYWHERE}
    cookieSecret: \${SHOP_COOKIE}
    encryptionKeys: \${SHOP_KEYS}
    routes: []
    sesionIdleTimeout: 5
  - name: admin
    publicUrl: http://admin.localhost:3000
    clientId: admin-bff
    clientSecret: x
    cookieSecret: short
    encryptionKeys: \${SHOP_KEYS}
    routes: [{ prefix: /a, upstream: http://127.0.0.1:1, token: user }]
    redisUrl: redis://elsewhere:6379
    port: 8080
`
    const p = problems(bad)
    expect(p).toContain('frontends[0] (shop): clientSecret refers to ${NOT_SET_ANYWHERE}, which is not set in the environment')
    expect(p).toContain('frontends[0] (shop): sesionIdleTimeout is not a tokenward setting (did you mean sessionIdleTimeout?)')
    expect(p).toContain('frontends[1] (admin): redisUrl (BFF_REDIS_URL) is process-wide: set it in the environment, not per frontend')
    expect(p).toContain('frontends[1] (admin): port (BFF_PORT) is process-wide: set it in the environment, not per frontend')
    // Errors of loadConfig itself, for a frontend without key errors:
    const q = problems(bad.replace(/\n {4}(redisUrl|port):.*/g, ''))
    expect(q.some((l) => l.startsWith('frontends[1] (admin): BFF_ISSUER'))).toBe(true)
    expect(q).toContain('frontends[1] (admin): BFF_COOKIE_SECRET entry 1 must be at least 32 characters')
    expect(q.some((l) => l.startsWith('frontends[0] (shop):'))).toBe(true)
  })

  it('refuses duplicate names and duplicate public hosts', () => {
    const p = problems(`frontends:${shop}${shop}${admin.replace('admin.localhost', 'SHOP.localhost')}`)
    expect(p).toContain('frontends[1] (shop): name "shop" is already used by frontends[0]')
    expect(p).toContain('frontends[2] (admin): publicUrl host shop.localhost:3000 is already served by frontend shop')
    expect(problems(`frontends:${shop.replace('name: shop', 'name: Shop!')}`)).toContain(
      'frontends[0] (Shop!): name is required: [a-z][a-z0-9-]{0,31}',
    )
  })

  it('refuses a file that is no frontends list, naming the problem', () => {
    expect(problems('frontends: []')[0]).toMatch(/"frontends" must be a non-empty list/)
    expect(problems(`frontend:${shop}`)[0]).toMatch(/unknown top-level key "frontend"/)
    expect(problems('frontends: [ {')[0]).toMatch(/not valid YAML or JSON/)
  })

  it('reads JSON as well (JSON is YAML)', () => {
    const env = baseEnv()
    const json = JSON.stringify({
      frontends: [
        {
          name: 'one',
          publicUrl: 'http://localhost:3000',
          issuer: 'http://127.0.0.1:4000',
          clientId: 'c',
          clientSecret: '${SHOP_SECRET}',
          cookieSecret: '${SHOP_COOKIE}',
          encryptionKeys: '${SHOP_KEYS}',
          sessionMaxAge: 3600,
          allowHttp: true,
          routes: [{ prefix: '/api', upstream: 'http://127.0.0.1:5000', token: 'user' }],
        },
      ],
    })
    const [one] = frontendsFromText(json, env)
    expect(one!.config.session.maxAge).toBe(3600)
    expect(one!.host).toBe('localhost:3000')
  })

  it('without BFF_CONFIG_FILE: one frontend from the environment, no Host matching, prefix unchanged', () => {
    const set = loadFrontends(testEnv({ BFF_REDIS_PREFIX: 'p:' }))
    expect(set.matchHost).toBe(false)
    expect(set.frontends.map((f) => f.name)).toEqual(['default'])
    expect(set.frontends[0]!.config.redis.prefix).toBe('p:')
  })

  it('reads the file named by BFF_CONFIG_FILE, and names an unreadable one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tw-cf-'))
    const file = join(dir, 'frontends.yaml')
    writeFileSync(file, `frontends:${shop}${admin}`)
    const set = loadFrontends(baseEnv({ BFF_CONFIG_FILE: file }))
    expect(set.matchHost).toBe(true)
    expect(set.frontends.map((f) => f.host)).toEqual(['shop.localhost:3000', 'admin.localhost:3000'])
    expect(() => loadFrontends(baseEnv({ BFF_CONFIG_FILE: join(dir, 'missing.yaml') }))).toThrow(/cannot be read \(ENOENT\)/)
  })

  it('reports a problem of the environment itself once, not per frontend', () => {
    const p = problems(`frontends:${shop}${admin}`, baseEnv({ BFF_REDIS_URI: 'redis://x' }))
    expect(p.filter((l) => l.includes('BFF_REDIS_URI'))).toEqual([
      'BFF_REDIS_URI is not a tokenward variable (did you mean BFF_REDIS_URL?)',
    ])
  })

  it('a frontend is named by its public host exactly, and by the default port when its URL has none', () => {
    const [a, b] = frontendsFromText(
      `frontends:${shop}${admin.replace('http://admin.localhost:3000', 'https://Admin.Example.com')}`,
      baseEnv(),
    )
    expect(hostKeys(a!)).toEqual(['shop.localhost:3000'])
    expect(hostKeys(b!)).toEqual(['admin.example.com', 'admin.example.com:443'])
  })

  it('warns when two frontends share a host name on different ports (browsers share their cookies)', () => {
    const [a, b] = frontendsFromText(`frontends:${shop}${admin.replace('admin.localhost:3000', 'shop.localhost:4000')}`, baseEnv())
    expect(a!.config.warnings.some((w) => w.startsWith('publicUrl shares its host name and cookie name with admin'))).toBe(true)
    expect(b!.config.warnings.some((w) => w.startsWith('publicUrl shares its host name and cookie name with shop'))).toBe(true)
    const [c] = frontendsFromText(`frontends:${shop}${admin}`, baseEnv())
    expect(c!.config.warnings.some((w) => w.includes('shares its host name'))).toBe(false)
  })

  it('distinct cookie names keep two frontends on one host name apart (no warning), each with its derived cookies', () => {
    const [a, b] = frontendsFromText(
      `frontends:${shop}    cookieName: __Host-shop\n${admin.replace('admin.localhost:3000', 'shop.localhost:4000')}    cookieName: __Host-admin\n`,
      baseEnv(),
    )
    expect(a!.config.cookie).toMatchObject({ name: '__Host-shop', transactionName: '__Host-shop-tx' })
    expect(a!.config.dbsc.cookieName).toBe('__Host-shop-bound')
    expect(b!.config.cookie).toMatchObject({ name: '__Host-admin', transactionName: '__Host-admin-tx' })
    expect([...a!.config.warnings, ...b!.config.warnings].some((w) => w.includes('shares its host name'))).toBe(false)
  })

  it("checks a frontend's cookieName like BFF_COOKIE_NAME", () => {
    expect(problems(`frontends:${shop}    cookieName: "bad name"\n`)).toEqual([
      expect.stringMatching(/^frontends\[0\] \(shop\): BFF_COOKIE_NAME must be a cookie-name token/),
    ])
  })
})

describe('frontends at a path base (security model S92)', () => {
  const at = (text: string, url: string, extra = '') => text.replace(/publicUrl: \S+/, `publicUrl: ${url}`) + extra

  it('serves two frontends on one host at distinct bases, each with its cookies under its base', () => {
    const [a, b] = frontendsFromText(
      `frontends:${at(shop, 'http://localhost:3000/shop')}${at(admin, 'http://localhost:3000/admin')}`,
      baseEnv(),
    )
    expect(a!.config.cookie).toMatchObject({ name: '__Secure-tokenward', path: '/shop' })
    expect(b!.config.cookie).toMatchObject({ name: '__Secure-tokenward', path: '/admin' })
    expect(a!.config.redirectUri).toBe('http://localhost:3000/shop/auth/callback')
    expect(hostKeys(a!)).toEqual(hostKeys(b!))
  })

  it('refuses the same host and base twice, and overlapping cookie paths with one cookie name', () => {
    expect(problems(`frontends:${at(shop, 'http://localhost:3000/shop')}${at(admin, 'http://localhost:3000/shop/')}`)).toEqual([
      'frontends[1] (admin): publicUrl localhost:3000 at /shop is already served by frontend shop',
    ])
    expect(
      problems(
        `frontends:${at(shop, 'http://localhost:3000/shop', '    cookieName: tw\n')}${at(admin, 'http://localhost:4000/shop/admin', '    cookieName: tw\n')}`,
      ),
    ).toEqual([
      "frontends[1] (admin): cookie tw at Path=/shop/admin overlaps frontend shop's (Path=/shop) on host name localhost: set a distinct cookieName",
    ])
    expect(
      problems(
        `frontends:${at(shop, 'http://localhost:3000', '    cookieName: tw\n')}${at(admin, 'http://localhost:3000/admin', '    cookieName: tw\n')}`,
      ),
    ).toEqual([
      "frontends[1] (admin): cookie tw at Path=/admin overlaps frontend shop's (Path=/) on host name localhost: set a distinct cookieName",
    ])
    // Distinct names, or paths that do not overlap (/shop and /shopping are different paths), are fine.
    expect(
      problems(
        `frontends:${at(shop, 'http://localhost:3000/shop', '    cookieName: tw\n')}${at(admin, 'http://localhost:3000/shopping', '    cookieName: tw\n')}`,
      ),
    ).toEqual([])
    expect(problems(`frontends:${at(shop, 'http://localhost:3000')}${at(admin, 'http://localhost:3000/admin')}`)).toEqual([])
  })

  it('pathsOverlap follows RFC 6265 §5.1.4 path-match', () => {
    expect(pathsOverlap('/', '/x')).toBe(true)
    expect(pathsOverlap('/shop', '/shop/a')).toBe(true)
    expect(pathsOverlap('/shop', '/shopping')).toBe(false)
    expect(pathsOverlap('/shop', '/admin')).toBe(false)
  })
})
