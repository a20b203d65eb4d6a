// Property tests for configuration parsing (docs/configuration.md: validated
// once, every problem reported at once, naming the variable). fast-check prints
// the seed and path of a failing run; replay it with FC_SEED=<seed>
// FC_PATH=<path> npx vitest run test/property.
import { randomBytes } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { loadConfig, type Config } from '../../src/config.js'
import { ConfigError } from '../../src/errors.js'
import { runs } from '../helpers/fast-check.js'
import { REQUIRED_VARIABLES } from '../helpers/env.js'

const replay = {
  ...(process.env.FC_SEED ? { seed: Number(process.env.FC_SEED) } : {}),
  ...(process.env.FC_PATH ? { path: process.env.FC_PATH } : {}),
}

const key = () => randomBytes(32).toString('base64')
const COOKIE_SECRET = randomBytes(32).toString('base64url')
const CLIENT_SECRET = randomBytes(24).toString('base64url')
const KEY_MATERIAL = key()

/**
 * Values near the valid ones for each variable (so that some environments are
 * accepted and the checks after the schema run too), next to arbitrary text.
 */
const NEAR: Record<string, readonly string[]> = {
  BFF_PUBLIC_URL: [
    'http://localhost:3000',
    'https://app.example.com',
    'https://app.example.com/',
    'https://app.example.com/x',
    'http://10.0.0.1',
    'https://[::1]:8443',
    'ftp://x',
    'localhost:3000',
    'https://app.example.com?x#y',
    'http://a b',
  ],
  BFF_ISSUER: ['https://idp.example.com', 'http://127.0.0.1:4000', 'https://idp.example.com/realms/x', 'idp', 'javascript:alert(1)'],
  BFF_CLIENT_ID: ['tokenward', 'x', ' '],
  BFF_CLIENT_SECRET: [CLIENT_SECRET, 'x'],
  BFF_CLIENT_AUTH: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'client_secret_jwt', 'none'],
  BFF_CLIENT_PRIVATE_KEY: ['{"kty":"EC"}', '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n-----END PRIVATE KEY-----'],
  BFF_SCOPES: ['openid', 'openid profile email offline_access', 'profile', '  openid  ', 'openid\topenid'],
  BFF_AUTH_PARAMS: [
    'prompt=consent',
    'acr_values=a b&ui_locales=de',
    'state=x',
    'redirect_uri=https://evil.com',
    '&&=&',
    '%zz=1',
    'scope=admin',
  ],
  BFF_PAR: ['auto', 'always', 'never', 'sometimes'],
  BFF_DPOP: ['false', 'true', 'maybe'],
  BFF_DPOP_KEY: ['{"kty":"EC","crv":"P-256"}', 'not a key'],
  BFF_ROUTES: [
    '[{"prefix":"/api","upstream":"https://api.internal/v1","token":"user"}]',
    '[{"prefix":"/api","upstream":"http://127.0.0.1:5000","token":"none","methods":["GET"],"timeoutMs":1000,"maxBodyBytes":0}]',
    '[{"prefix":"/api/","upstream":"https://a","token":"client","scopes":["x"],"resource":"https://a"}]',
    '[{"prefix":"/a","upstream":"https://a","token":"user"},{"prefix":"/a","upstream":"https://b","token":"user"}]',
    '[{"prefix":"/auth/x","upstream":"https://a","token":"user"}]',
    '[{"prefix":"/","upstream":"https://a","token":"user"}]',
    '[{"prefix":"api","upstream":"ftp://a","token":"bogus","extra":1}]',
    '[{"prefix":"/a/../b","upstream":"https://u:p@a/?q#f","token":"user"}]',
    '[{"prefix":"/a","upstream":"https://a","token":"user","timeoutMs":-1,"maxBodyBytes":1.5,"methods":[]}]',
    '[]',
    '{}',
    'null',
    '"x"',
    '[1]',
    '[null]',
    '[{"__proto__":{"prefix":"/x"}}]',
    '[',
    'not json',
    '1e999',
    '[{"prefix":"/a","upstream":"https://a","token":"user","websocket":"yes"}]',
  ],
  BFF_COOKIE_SECRET: [COOKIE_SECRET, `${COOKIE_SECRET},${'o'.repeat(32)}`, 'short', ',', ` ${COOKIE_SECRET} , `, `${COOKIE_SECRET},short`],
  BFF_ENCRYPTION_KEYS: [
    `k1:${KEY_MATERIAL}`,
    `k1:${key()},k2:${key()}`,
    `k1:${key()},k1:${key()}`,
    'k1:AAAA',
    `k1:${randomBytes(32).toString('base64url')}`,
    ':',
    ',',
    'k 1:x',
    `${'k'.repeat(40)}:${key()}`,
  ],
  BFF_REDIS_URL: ['redis://127.0.0.1:6379', 'rediss://r.internal:6380/2', 'http://redis', 'redis://', 'redis://a b'],
  BFF_REDIS_PREFIX: ['tokenward:', '', '*', '\u0000'],
  BFF_REDIS_MODE: ['standalone', 'sentinel', 'cluster', 'Cluster'],
  BFF_REDIS_NODES: ['a:1,b:2', 'a', ':1', 'a:99999', '[::1]:6379', 'a:1,,b:2', ' , '],
  BFF_REDIS_SENTINEL_NAME: ['mymaster', ''],
  BFF_SESSION_IDLE_TIMEOUT: ['1800', '0', '1', '-1', '1.5', '1e3', ' 60', '9'.repeat(400), 'ten'],
  BFF_SESSION_MAX_AGE: ['28800', '0', '1', '9'.repeat(400), '0x10'],
  BFF_REFRESH_SKEW: ['30', '0', '-5', '9'.repeat(30)],
  BFF_ID_TOKEN_MAX_AGE: ['300', '0', '1'],
  BFF_ALLOW_HTTP: ['true', 'false', '1', '0', 'yes', 'no', 'TRUE', 'maybe'],
  BFF_HOST: ['0.0.0.0', '::', '127.0.0.1', 'localhost', ' '],
  BFF_PORT: ['3000', '0', '65535', '65536', '-1', '3000.5', '99999', 'http'],
  PORT: ['8080', '65536', 'x', '0'],
  BFF_POST_LOGOUT_REDIRECT: ['https://app.example.com/bye', 'javascript:alert(1)', '/bye', '//evil.com'],
  BFF_LOGOUT_ID_TOKEN_HINT: ['true', 'false', 'maybe'],
  BFF_COOKIE_SAMESITE: ['strict', 'lax', 'Strict', 'Lax', 'none', 'None'],
  BFF_STATIC_DIR: ['./public', '/srv/www', 'a\u0000b'],
  BFF_LOG_LEVEL: ['info', 'debug', 'silent', 'verbose'],
}

const VARIABLES = Object.keys(NEAR)

const arbitraryText = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({
    unit: fc.constantFrom('[', ']', '{', '}', '"', ':', ',', '/', 'a', '1', '%', '\\', ' ', 'https://', 'redis://', 'k1'),
    maxLength: 30,
  }),
)

function valueFor(name: string): fc.Arbitrary<string | undefined> {
  return fc.oneof(
    { weight: 3, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary: fc.constant('') },
    { weight: 6, arbitrary: fc.constantFrom(...NEAR[name]!) },
    { weight: 2, arbitrary: arbitraryText },
  )
}

/** Each variable independently unset, empty, near-valid or arbitrary: almost always refused. */
const environment = fc.record(
  Object.fromEntries(VARIABLES.map((name) => [name, valueFor(name)])) as Record<string, fc.Arbitrary<string | undefined>>,
)

const REQUIRED = REQUIRED_VARIABLES

/**
 * A valid environment (required variables set, optional ones set to their first,
 * valid value or left unset) with up to four variables perturbed, so that
 * acceptance is common enough to test what is accepted, and each refusal has
 * few causes.
 */
const likelyValid = fc
  .tuple(
    fc.record(
      Object.fromEntries(
        VARIABLES.map((name) => [name, REQUIRED.includes(name) ? fc.constant(NEAR[name]![0]) : fc.constantFrom(undefined, NEAR[name]![0])]),
      ) as Record<string, fc.Arbitrary<string | undefined>>,
    ),
    fc.subarray(VARIABLES, { maxLength: 4 }).chain((names) => fc.tuple(fc.constant(names), fc.tuple(...names.map(valueFor)))),
  )
  .map(([base, [names, values]]) => {
    const env = { ...base }
    names.forEach((n, i) => (env[n] = values[i]))
    return env
  })

const anyEnvironment = fc.oneof(environment, likelyValid)

type Outcome = { config: Config } | { error: unknown }

function load(env: Record<string, string | undefined>): Outcome {
  try {
    return { config: loadConfig(env) }
  } catch (error) {
    return { error }
  }
}

const NAMED = /^(BFF_[A-Z_]+|PORT)\b/

describe('loadConfig over arbitrary environments', () => {
  it('returns a frozen config or throws a ConfigError whose every problem names a variable', () => {
    const RUNS = runs(10_000)
    let accepted = 0
    let refused = 0
    fc.assert(
      fc.property(anyEnvironment, (env) => {
        const outcome = load(env)
        if ('config' in outcome) {
          accepted++
          expect(Object.isFrozen(outcome.config)).toBe(true)
          return
        }
        refused++
        expect(outcome.error).toBeInstanceOf(ConfigError)
        const problems = (outcome.error as ConfigError).problems
        expect(problems.length).toBeGreaterThan(0)
        for (const p of problems) expect(p).toMatch(NAMED)
      }),
      { numRuns: RUNS, ...replay },
    )
    expect(accepted).toBeGreaterThan(RUNS / 50)
    expect(refused).toBeGreaterThan(RUNS / 5)
  })

  it('never echoes a secret in a problem (they reach logs and terminals)', () => {
    fc.assert(
      fc.property(anyEnvironment, (env) => {
        const outcome = load(env)
        if (!('error' in outcome) || !(outcome.error instanceof ConfigError)) return
        const text = outcome.error.problems.join('\n') + outcome.error.message
        for (const secret of [COOKIE_SECRET, CLIENT_SECRET, KEY_MATERIAL]) expect(text).not.toContain(secret)
      }),
      { numRuns: runs(5_000), ...replay },
    )
  })

  it('what it accepts keeps the contract: routes, secrets, keys, redis URL and port', () => {
    fc.assert(
      fc.property(likelyValid, (env) => {
        const outcome = load(env)
        if (!('config' in outcome)) return
        const c = outcome.config
        expect(c.routes.length).toBeGreaterThan(0)
        for (const r of c.routes) {
          expect(r.prefix).toMatch(/^\/[^/]/)
          expect(r.prefix.endsWith('/')).toBe(false)
          expect(['http:', 'https:']).toContain(r.upstream.protocol)
          if (!c.allowHttp) expect(r.upstream.protocol).toBe('https:')
        }
        expect(c.cookieSecrets.length).toBeGreaterThan(0)
        for (const s of c.cookieSecrets) expect(s.length).toBeGreaterThanOrEqual(32)
        expect(c.encryptionKeys.length).toBeGreaterThan(0)
        for (const k of c.encryptionKeys) expect(k.key.length).toBe(32)
        expect(c.redis.url).toMatch(/^rediss?:\/\//)
        expect(c.scopes).toContain('openid')
        expect(Number.isInteger(c.port) && c.port >= 0 && c.port <= 65535).toBe(true)
        if (c.clientAuth !== 'private_key_jwt') expect(c.clientSecret).toBeTruthy()
      }),
      { numRuns: runs(5_000), ...replay },
    )
  })

  // Regression (was a bug): numbers the schema accepts are not bounded. A duration of
  // 400 digits is "a whole number of seconds" and becomes Infinity (BFF_SESSION_*,
  // BFF_REFRESH_SKEW, BFF_ID_TOKEN_MAX_AGE), and BFF_REDIS_NODES takes any 1-5
  // digit port (`a:99999`). Each is accepted at startup and fails later, against
  // "validated once at startup; every problem is reported at once".
  it('every number it accepts is a finite, usable value', () => {
    fc.assert(
      fc.property(likelyValid, (env) => {
        const outcome = load(env)
        if (!('config' in outcome)) return
        const c = outcome.config
        for (const n of [c.session.idleTimeout, c.session.maxAge, c.refreshSkew, c.idTokenMaxAge])
          expect(Number.isSafeInteger(n), String(n)).toBe(true)
        for (const node of c.redis.nodes) expect(node.port, `${node.host}:${node.port}`).toBeLessThanOrEqual(65535)
      }),
      {
        numRuns: runs(5_000),
        ...replay,
        examples: [
          [{ ...likelyValidExample(), BFF_SESSION_MAX_AGE: '9'.repeat(400) }],
          [{ ...likelyValidExample(), BFF_REDIS_MODE: 'cluster', BFF_REDIS_NODES: 'a:99999' }],
        ],
      },
    )
  })
})

function likelyValidExample(): Record<string, string | undefined> {
  return {
    BFF_PUBLIC_URL: 'http://localhost:3000',
    BFF_ISSUER: 'https://idp.example.com',
    BFF_CLIENT_ID: 'tokenward',
    BFF_CLIENT_SECRET: CLIENT_SECRET,
    BFF_ROUTES: NEAR.BFF_ROUTES![0]!,
    BFF_COOKIE_SECRET: COOKIE_SECRET,
    BFF_ENCRYPTION_KEYS: `k1:${KEY_MATERIAL}`,
  }
}
