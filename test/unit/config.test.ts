import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.js'
import { configProblems, REQUIRED_VARIABLES, testEnv } from '../helpers/env.js'

const problems = configProblems

describe('loadConfig', () => {
  it('accepts a valid environment and applies the contract defaults', () => {
    const c = loadConfig(testEnv())
    expect(c.redirectUri).toBe('http://localhost:3000/auth/callback')
    expect(c.scopes).toEqual(['openid', 'profile', 'email', 'offline_access'])
    expect(c.redis).toMatchObject({ url: 'redis://127.0.0.1:6379', prefix: 'tokenward:', mode: 'standalone' })
    expect(c.session).toEqual({ idleTimeout: 1800, maxAge: 28800, cacheMs: 1000 })
    expect(c.refreshSkew).toBe(30)
    expect(c.port).toBe(3000)
    expect(c.host).toBe('0.0.0.0')
    expect(c.postLogoutRedirect).toBe('http://localhost:3000/')
    expect(c.cookie).toEqual({
      name: '__Host-tokenward',
      transactionName: '__Host-tokenward-tx',
      path: '/',
      secure: true,
      sameSite: 'Strict',
    })
    expect(c.basePath).toBe('')
    expect(c.routes[0]).toMatchObject({ prefix: '/api', token: 'user', timeoutMs: 30000 })
    expect(Object.isFrozen(c)).toBe(true)
  })

  it('reports every missing required variable at once, by name', () => {
    const p = problems({})
    for (const name of REQUIRED_VARIABLES) {
      expect(
        p.some((m) => m.startsWith(name)),
        `${name} in ${JSON.stringify(p)}`,
      ).toBe(true)
    }
  })

  it('reports malformed variables of each kind together', () => {
    const p = problems(
      testEnv({
        BFF_PUBLIC_URL: 'not a url',
        BFF_COOKIE_SECRET: 'short',
        BFF_ENCRYPTION_KEYS: 'k1:AAAA',
        BFF_ROUTES: '[{"prefix":"api","upstream":"ftp://x","token":"bogus"}]',
        BFF_SESSION_IDLE_TIMEOUT: 'ten',
        BFF_REDIS_URL: 'http://redis',
        BFF_COOKIE_SAMESITE: 'none',
        BFF_ALLOW_HTTP: 'maybe',
        BFF_PORT: '99999',
        BFF_CLIENT_AUTH: 'client_secret_jwt',
      }),
    )
    const expected = [
      'BFF_PUBLIC_URL',
      'BFF_COOKIE_SECRET',
      'BFF_ENCRYPTION_KEYS',
      'BFF_ROUTES[0].prefix',
      'BFF_ROUTES[0].upstream',
      'BFF_ROUTES[0].token',
      'BFF_SESSION_IDLE_TIMEOUT',
      'BFF_REDIS_URL',
      'BFF_COOKIE_SAMESITE',
      'BFF_ALLOW_HTTP',
      'BFF_PORT',
      'BFF_CLIENT_AUTH',
    ]
    for (const name of expected)
      expect(
        p.some((m) => m.startsWith(name)),
        `${name} in ${JSON.stringify(p)}`,
      ).toBe(true)
  })

  it('refuses plain http issuer, upstream and public origin without BFF_ALLOW_HTTP', () => {
    const p = problems(testEnv({ BFF_ALLOW_HTTP: undefined, BFF_PUBLIC_URL: 'http://app.example.com' }))
    expect(p.some((m) => m.startsWith('BFF_ISSUER must be https'))).toBe(true)
    expect(p.some((m) => m.startsWith('BFF_ROUTES[0].upstream must be https'))).toBe(true)
    expect(p.some((m) => m.startsWith('BFF_PUBLIC_URL must be https'))).toBe(true)
  })

  it('keeps __Host- cookies on http://localhost but drops the prefix for another http origin', () => {
    expect(loadConfig(testEnv({ BFF_PUBLIC_URL: 'http://127.0.0.1:8080' })).cookie.name).toBe('__Host-tokenward')
    const c = loadConfig(testEnv({ BFF_PUBLIC_URL: 'http://app.internal:8080' }))
    expect(c.cookie).toMatchObject({ name: 'tokenward', secure: false })
    expect(c.warnings.some((w) => w.includes('__Host-'))).toBe(true)
  })

  describe('BFF_COOKIE_NAME (RFC 6265 §4.1.1, RFC 6265bis §4.1.3)', () => {
    it('names the session cookie and the cookies derived from it', () => {
      const c = loadConfig(testEnv({ BFF_COOKIE_NAME: '__Host-shop' }))
      expect(c.cookie).toMatchObject({ name: '__Host-shop', transactionName: '__Host-shop-tx', secure: true })
      expect(c.dbsc.cookieName).toBe('__Host-shop-bound')
      expect(c.warnings.some((w) => w.startsWith('BFF_COOKIE_NAME'))).toBe(false)
    })

    it('keeps the defaults when unset or empty', () => {
      const c = loadConfig(testEnv({ BFF_COOKIE_NAME: '' }))
      expect(c.cookie.name).toBe('__Host-tokenward')
      expect(c.dbsc.cookieName).toBe('__Host-tokenward-bound')
      const plain = loadConfig(testEnv({ BFF_PUBLIC_URL: 'http://app.test:8080', BFF_ALLOW_HTTP: 'true' }))
      expect(plain.cookie).toMatchObject({ name: 'tokenward', transactionName: 'tokenward-tx' })
      expect(plain.dbsc.cookieName).toBe('tokenward-bound')
    })

    it('refuses a name that is no token, or too long', () => {
      for (const bad of ['a b', 'a;b', 'a=b', 'sess"ion', 'caf\u00e9', 'a,b', 'x'.repeat(65)]) {
        expect(
          problems(testEnv({ BFF_COOKIE_NAME: bad })).some((p) => p.startsWith('BFF_COOKIE_NAME must')),
          bad,
        ).toBe(true)
      }
    })

    it('refuses __Host- and __Secure- names (any letter case) where cookies cannot be Secure', () => {
      const http = { BFF_PUBLIC_URL: 'http://app.test:8080', BFF_ALLOW_HTTP: 'true' }
      for (const name of ['__Host-x', '__host-x', '__Secure-x', '__SECURE-x']) {
        expect(
          problems(testEnv({ ...http, BFF_COOKIE_NAME: name })).some((p) =>
            p.startsWith('BFF_COOKIE_NAME with a __Host- or __Secure- prefix'),
          ),
          name,
        ).toBe(true)
      }
      expect(loadConfig(testEnv({ ...http, BFF_COOKIE_NAME: 'shop' })).cookie).toMatchObject({ name: 'shop', secure: false })
    })

    it('accepts __Secure- and plain names on a secure origin, with a warning (no protection against planted cookies)', () => {
      for (const name of ['__Secure-shop', 'shop_session']) {
        const c = loadConfig(testEnv({ BFF_COOKIE_NAME: name }))
        expect(c.cookie).toMatchObject({ name, secure: true })
        expect(c.warnings.some((w) => w.startsWith('BFF_COOKIE_NAME is not __Host- prefixed'))).toBe(true)
      }
    })
  })

  describe('a publicUrl with a path base (BFF_CONFIG_FILE only; security model S92)', () => {
    it('is refused in the single-frontend environment, as before', () => {
      expect(problems(testEnv({ BFF_PUBLIC_URL: 'https://apps.example.com/shop' }))).toContain(
        'BFF_PUBLIC_URL must be an origin without path, query or fragment',
      )
      expect(problems(testEnv({ BFF_PUBLIC_URL: 'https://apps.example.com/?a=1' }))).toContain(
        'BFF_PUBLIC_URL must be an origin without path, query or fragment',
      )
    })

    it('puts the callback, the logout default and the cookies under the base, with __Secure- names and no device binding', () => {
      const c = loadConfig(testEnv({ BFF_PUBLIC_URL: 'https://apps.example.com/shop/' }), { allowPathBase: true })
      expect(c.basePath).toBe('/shop')
      expect(c.publicOrigin).toBe('https://apps.example.com')
      expect(c.redirectUri).toBe('https://apps.example.com/shop/auth/callback')
      expect(c.postLogoutRedirect).toBe('https://apps.example.com/shop/')
      expect(c.cookie).toMatchObject({ name: '__Secure-tokenward', transactionName: '__Secure-tokenward-tx', path: '/shop', secure: true })
      expect(c.dbsc.enabled).toBe(false)
      expect(c.warnings).toContain('BFF_DBSC=auto but publicUrl has a path base: device-bound sessions are off for this frontend')
      const nested = loadConfig(testEnv({ BFF_PUBLIC_URL: 'http://localhost:3000/a/b-2' }), { allowPathBase: true })
      expect(nested.cookie).toMatchObject({ name: '__Secure-tokenward', path: '/a/b-2' })
    })

    it('refuses a __Host- cookie name, odd segments and the process paths as a base', () => {
      const opt = { allowPathBase: true }
      const p = (env: Record<string, string>) => {
        try {
          loadConfig(testEnv(env), opt)
          return []
        } catch (err) {
          return (err as { problems: string[] }).problems
        }
      }
      expect(p({ BFF_PUBLIC_URL: 'https://a.example/shop', BFF_COOKIE_NAME: '__Host-shop' })).toEqual([
        expect.stringMatching(/^BFF_COOKIE_NAME with the __Host- prefix needs Path=\//),
      ])
      for (const base of ['/%73hop', '/.hidden', '/a//b', '/sh%20op']) {
        expect(p({ BFF_PUBLIC_URL: `https://a.example${base}` }), base).toEqual([
          expect.stringMatching(/^BFF_PUBLIC_URL path base must be plain segments/),
        ])
      }
      expect(p({ BFF_PUBLIC_URL: 'https://a.example/healthz' })).toEqual(['BFF_PUBLIC_URL path base /healthz is a process endpoint'])
      expect(p({ BFF_PUBLIC_URL: 'https://a.example/auth' })).toHaveLength(1)
    })
  })

  it('validates keyrings and cookie-secret lists', () => {
    const k = (n: number) => Buffer.alloc(32, n).toString('base64')
    const c = loadConfig(
      testEnv({ BFF_ENCRYPTION_KEYS: `new:${k(1)}, old:${k(2)}`, BFF_COOKIE_SECRET: `${'a'.repeat(32)},${'b'.repeat(40)}` }),
    )
    expect(c.encryptionKeys.map((e) => e.id)).toEqual(['new', 'old'])
    expect(c.cookieSecrets).toHaveLength(2)
    expect(problems(testEnv({ BFF_ENCRYPTION_KEYS: `a:${k(1)},a:${k(2)}` }))).toEqual(['BFF_ENCRYPTION_KEYS has the key id a twice'])
    expect(problems(testEnv({ BFF_COOKIE_SECRET: `${'a'.repeat(32)},short` }))).toEqual([
      'BFF_COOKIE_SECRET entry 2 must be at least 32 characters',
    ])
  })

  it('refuses routes that shadow tokenward paths or repeat, and accepts the client token mode', () => {
    const p = problems(
      testEnv({
        BFF_ROUTES: JSON.stringify([
          { prefix: '/auth/x', upstream: 'http://a', token: 'none' },
          { prefix: '/api', upstream: 'http://a', token: 'user' },
          { prefix: '/api/', upstream: 'http://b', token: 'user' },
          { prefix: '/svc', upstream: 'http://c', token: 'client' },
          { prefix: '/q', upstream: 'http://c?x=1', token: 'none' },
        ]),
      }),
    )
    expect(p).toEqual([
      "BFF_ROUTES[0].prefix /auth/x collides with tokenward's own paths",
      'BFF_ROUTES[2].prefix /api is listed twice',
      'BFF_ROUTES[4].upstream must not carry a query, fragment or credentials',
    ])
    const routes = loadConfig(
      testEnv({ BFF_ROUTES: JSON.stringify([{ prefix: '/svc', upstream: 'http://c', token: 'client', scopes: ['api:read'] }]) }),
    ).routes
    expect(routes[0]).toMatchObject({ token: 'client', scopes: ['api:read'] })
  })

  it('requires the secret for secret-based client auth and a key for private_key_jwt', () => {
    expect(problems(testEnv({ BFF_CLIENT_SECRET: undefined }))).toEqual([
      'BFF_CLIENT_SECRET is required when BFF_CLIENT_AUTH=client_secret_basic',
    ])
    expect(problems(testEnv({ BFF_CLIENT_SECRET: undefined, BFF_CLIENT_AUTH: 'private_key_jwt' }))).toEqual([
      'BFF_CLIENT_PRIVATE_KEY is required when BFF_CLIENT_AUTH=private_key_jwt',
    ])
  })

  it('refuses protocol parameters in BFF_AUTH_PARAMS and keeps the others', () => {
    expect(problems(testEnv({ BFF_AUTH_PARAMS: 'prompt=consent&state=x' }))).toEqual(['BFF_AUTH_PARAMS must not set state'])
    expect(loadConfig(testEnv({ BFF_AUTH_PARAMS: 'prompt=consent&acr_values=urn:x' })).authParams).toEqual([
      ['prompt', 'consent'],
      ['acr_values', 'urn:x'],
    ])
  })

  it('refuses malformed login-policy values in BFF_AUTH_PARAMS (they are a floor, src/oidc/login-policy.ts)', () => {
    expect(problems(testEnv({ BFF_AUTH_PARAMS: 'max_age=soon' }))).toEqual(['BFF_AUTH_PARAMS: max_age must be a number of seconds'])
    expect(problems(testEnv({ BFF_AUTH_PARAMS: 'prompt=none login' }))).toHaveLength(1)
    expect(problems(testEnv({ BFF_AUTH_PARAMS: 'prompt=login&prompt=consent' }))).toEqual(['BFF_AUTH_PARAMS must not set prompt twice'])
    expect(problems(testEnv({ BFF_AUTH_PARAMS: 'acr_values=urn:example:mfa&max_age=0&prompt=login' }))).toEqual([])
  })

  it('reads PORT when BFF_PORT is unset', () => {
    expect(loadConfig(testEnv({ PORT: '8081' })).port).toBe(8081)
    expect(loadConfig(testEnv({ PORT: '8081', BFF_PORT: '9000' })).port).toBe(9000)
  })
})

describe('keys are validated at startup, not at first use', () => {
  it('refuses a malformed BFF_CLIENT_PRIVATE_KEY or BFF_DPOP_KEY, accepts real ones', async () => {
    const { generateKeyPairSync } = await import('node:crypto')
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey
    const pem = ec.export({ format: 'pem', type: 'pkcs8' }).toString()
    const jwk = JSON.stringify(ec.export({ format: 'jwk' }))
    const base = { BFF_CLIENT_SECRET: undefined, BFF_CLIENT_AUTH: 'private_key_jwt' }
    expect(problems(testEnv({ ...base, BFF_CLIENT_PRIVATE_KEY: 'not a key' }))).toEqual([
      'BFF_CLIENT_PRIVATE_KEY must be a private RSA, P-256 or Ed25519 key (JWK or PKCS#8 PEM)',
    ])
    expect(problems(testEnv({ ...base, BFF_CLIENT_PRIVATE_KEY: pem }))).toEqual([])
    expect(problems(testEnv({ ...base, BFF_CLIENT_PRIVATE_KEY: jwk }))).toEqual([])
    expect(problems(testEnv({ BFF_DPOP: 'true', BFF_DPOP_KEY: '{"kty":"EC"}' }))).toEqual([
      'BFF_DPOP_KEY must be a private P-256 (EC) key, as a JWK or PKCS#8 PEM',
    ])
    expect(problems(testEnv({ BFF_DPOP: 'true', BFF_DPOP_KEY: rsa.export({ format: 'pem', type: 'pkcs8' }).toString() }))).toHaveLength(1)
    expect(problems(testEnv({ BFF_DPOP: 'true', BFF_DPOP_KEY: jwk }))).toEqual([])
  })
})

describe('BFF_METRICS_LISTEN', () => {
  it('is unset by default: /metrics stays on the main listener', () => {
    expect(loadConfig(testEnv()).metricsListen).toBeUndefined()
  })

  it('takes host:port, an IPv6 address in brackets, port 0-65535', () => {
    expect(loadConfig(testEnv({ BFF_METRICS_LISTEN: '0.0.0.0:9464' })).metricsListen).toEqual({ host: '0.0.0.0', port: 9464 })
    expect(loadConfig(testEnv({ BFF_METRICS_LISTEN: 'localhost:0' })).metricsListen).toEqual({ host: 'localhost', port: 0 })
    expect(loadConfig(testEnv({ BFF_METRICS_LISTEN: '[::1]:9464' })).metricsListen).toEqual({ host: '::1', port: 9464 })
  })

  it('refuses what is not host:port', () => {
    for (const bad of ['9464', ':9464', '::1:9464', '127.0.0.1:65536', '127.0.0.1:', 'http://127.0.0.1:9464', '[::1]', 'a b:1']) {
      expect(problems(testEnv({ BFF_METRICS_LISTEN: bad })), bad).toEqual([expect.stringContaining('BFF_METRICS_LISTEN must be host:port')])
    }
  })
})
