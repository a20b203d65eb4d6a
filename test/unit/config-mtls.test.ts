import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.js'
import { configProblems, testEnv } from '../helpers/env.js'
import { createPki, type Issued, type Pki } from '../helpers/pki.js'

// RFC 8705 configuration: the certificate files are checked once at startup
// (and by check-config, which runs the same loadConfig), security model S80-S81.
let pki: Pki
let good: Issued
let other: Issued
const mtlsRoute = (extra: Record<string, unknown> = {}) =>
  JSON.stringify([{ prefix: '/api', upstream: 'https://127.0.0.1:5000/v1', token: 'user', mtls: true, ...extra }])

beforeAll(() => {
  pki = createPki()
  good = pki.client('good', '/CN=tokenward')
  other = pki.client('other', '/CN=tokenward')
})
afterAll(() => pki?.close())

function env(overrides: Record<string, string | undefined> = {}) {
  return testEnv({
    BFF_CLIENT_AUTH: 'tls_client_auth',
    BFF_CLIENT_SECRET: undefined,
    BFF_TLS_CLIENT_CERT: good.certFile,
    BFF_TLS_CLIENT_KEY: good.keyFile,
    BFF_ROUTES: mtlsRoute(),
    ...overrides,
  })
}

describe('BFF_CLIENT_AUTH=tls_client_auth / self_signed_tls_client_auth with BFF_TLS_CLIENT_CERT and BFF_TLS_CLIENT_KEY', () => {
  it('accepts a valid pair without a client secret, and keeps only the file paths', () => {
    for (const method of ['tls_client_auth', 'self_signed_tls_client_auth']) {
      const config = loadConfig(env({ BFF_CLIENT_AUTH: method, BFF_TLS_CA: pki.ca.certFile }))
      expect(config.clientAuth).toBe(method)
      expect(config.tls).toEqual({ certFile: good.certFile, keyFile: good.keyFile, caFile: pki.ca.certFile })
      expect(JSON.stringify(config)).not.toContain('PRIVATE KEY')
      expect(config.routes[0]!.mtls).toBe(true)
    }
  })

  it.each([
    [
      'the certificate and key are missing',
      { BFF_TLS_CLIENT_CERT: undefined, BFF_TLS_CLIENT_KEY: undefined, BFF_ROUTES: undefined },
      /BFF_TLS_CLIENT_CERT and BFF_TLS_CLIENT_KEY are required when BFF_CLIENT_AUTH=tls_client_auth/,
    ],
    ['only the certificate is set', { BFF_TLS_CLIENT_KEY: undefined }, /BFF_TLS_CLIENT_CERT and BFF_TLS_CLIENT_KEY must be set together/],
    [
      'a file cannot be read',
      { BFF_TLS_CLIENT_CERT: '/nonexistent/cert.pem' },
      /BFF_TLS_CLIENT_CERT \/nonexistent\/cert.pem cannot be read \(ENOENT\)/,
    ],
    [
      'the key belongs to another certificate',
      { BFF_TLS_CLIENT_KEY: '<other>' },
      /BFF_TLS_CLIENT_KEY .*other.key does not belong to the certificate/,
    ],
    ['the certificate file holds a key', { BFF_TLS_CLIENT_CERT: '<key>' }, /BFF_TLS_CLIENT_CERT .* is not a PEM certificate/],
    ['the CA bundle holds no certificate', { BFF_TLS_CA: '<key>' }, /BFF_TLS_CA .* holds no PEM certificate/],
  ])('refuses the configuration when %s', (_name, overrides, expected) => {
    const o: Record<string, string | undefined> = { ...overrides }
    for (const [k, v] of Object.entries(o)) {
      if (v === '<other>') o[k] = other.keyFile
      if (v === '<key>') o[k] = good.keyFile
    }
    if ('BFF_ROUTES' in overrides) o.BFF_ROUTES = JSON.stringify([{ prefix: '/api', upstream: 'https://127.0.0.1:5000/v1', token: 'user' }])
    expect(configProblems(env(o)).join('\n')).toMatch(expected)
  })

  it('refuses an expired certificate and one not valid yet, naming the dates', () => {
    const expired = pki.client('expired', '/CN=tokenward', { expired: true })
    expect(configProblems(env({ BFF_TLS_CLIENT_CERT: expired.certFile, BFF_TLS_CLIENT_KEY: expired.keyFile }))).toContain(
      `BFF_TLS_CLIENT_CERT ${expired.certFile} expired on 2020-01-02T00:00:00.000Z`,
    )
    const future = pki.client('future', '/CN=tokenward', { notYetValid: true })
    expect(configProblems(env({ BFF_TLS_CLIENT_CERT: future.certFile, BFF_TLS_CLIENT_KEY: future.keyFile }))).toContain(
      `BFF_TLS_CLIENT_CERT ${future.certFile} is not valid before 2099-12-31T00:00:00.000Z`,
    )
  })

  it('refuses a key file that is not a key, without echoing its content', () => {
    const bogus = join(pki.dir, 'bogus.key')
    writeFileSync(bogus, 'secret-looking-content\n')
    const problems = configProblems(env({ BFF_TLS_CLIENT_KEY: bogus })).join('\n')
    expect(problems).toMatch(/BFF_TLS_CLIENT_KEY .*bogus.key is not a PEM private key/)
    expect(problems).not.toContain('secret-looking-content')
  })
})

describe('routes and certificate-bound tokens (security model S81)', () => {
  it('mtls: true needs an https upstream, even with BFF_ALLOW_HTTP', () => {
    expect(
      configProblems(
        env({ BFF_ROUTES: JSON.stringify([{ prefix: '/api', upstream: 'http://127.0.0.1:5000', token: 'user', mtls: true }]) }),
      ),
    ).toContain('BFF_ROUTES[0].mtls needs an https:// upstream')
  })

  it('mtls: true needs the certificate and key', () => {
    const problems = configProblems(testEnv({ BFF_ROUTES: mtlsRoute() }))
    expect(problems).toContain('BFF_ROUTES route /api has "mtls": true but BFF_TLS_CLIENT_CERT and BFF_TLS_CLIENT_KEY are not set')
  })

  it('once a certificate is presented to the IdP, a token route presents it to its https upstream unless it says "mtls": false', () => {
    const routes = [
      { prefix: '/user', upstream: 'https://127.0.0.1:5000', token: 'user' },
      { prefix: '/optional', upstream: 'https://127.0.0.1:5000', token: 'optional' },
      { prefix: '/client', upstream: 'https://127.0.0.1:5000', token: 'client' },
      { prefix: '/public', upstream: 'https://127.0.0.1:5000', token: 'none' },
      { prefix: '/said-no', upstream: 'https://127.0.0.1:5000', token: 'user', mtls: false },
    ]
    const config = loadConfig(env({ BFF_ROUTES: JSON.stringify(routes) }))
    expect(Object.fromEntries(config.routes.map((r) => [r.prefix, r.mtls]))).toEqual({
      '/user': true,
      '/optional': true,
      '/client': true,
      '/public': undefined,
      '/said-no': false,
    })
  })

  it('a token route to a plain-http upstream cannot be given the certificate, so it must say "mtls": false', () => {
    const routes = [
      { prefix: '/user', upstream: 'http://127.0.0.1:5000', token: 'user' },
      { prefix: '/public', upstream: 'http://127.0.0.1:5000', token: 'none' },
      { prefix: '/said-no', upstream: 'http://127.0.0.1:5000', token: 'user', mtls: false },
    ]
    const problems = configProblems(env({ BFF_ROUTES: JSON.stringify(routes) })).filter((p) => p.includes('may bind'))
    expect(problems.map((p) => /route (\S+)/.exec(p)?.[1])).toEqual(['/user'])
  })

  it('the same rule holds for a certificate used only for binding (private_key_jwt or a secret at the token endpoint)', () => {
    const e = env({
      BFF_CLIENT_AUTH: 'client_secret_basic',
      BFF_CLIENT_SECRET: 'secret',
      BFF_ROUTES: JSON.stringify([{ prefix: '/api', upstream: 'https://a.example', token: 'user' }]),
    })
    expect(loadConfig(e).routes[0]!.mtls).toBe(true)
    const http = { ...e, BFF_ROUTES: JSON.stringify([{ prefix: '/api', upstream: 'http://a.example', token: 'user' }]) }
    expect(configProblems(http).join('\n')).toMatch(/route \/api sends access tokens that the IdP may bind/)
    expect(configProblems({ ...e, BFF_ROUTES: mtlsRoute() })).toEqual([])
  })
})
