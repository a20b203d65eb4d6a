// The refresh token's lifetime as token responses state it (src/tokens/refresh-lifetime.ts,
// security model S77). The property tests are in test/property/refresh-lifetime.test.ts.
import { describe, expect, it } from 'vitest'
import { jwtExp, readRefreshLifetime, refreshTokenExpiry } from '../../src/tokens/refresh-lifetime.js'

const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')
const jwt = (payload: unknown, header: unknown = { alg: 'HS256', typ: 'JWT' }) => `${b64(header)}.${b64(payload)}.c2lnbmF0dXJl`

describe('readRefreshLifetime', () => {
  it('reads refresh_token_expires_in, then Keycloak’s refresh_expires_in, then the JWT’s exp, in that order', () => {
    const token = jwt({ exp: 2_000_000_000 })
    expect(readRefreshLifetime({ refresh_token: token, refresh_token_expires_in: 100, refresh_expires_in: 200 })).toEqual({
      source: 'refresh_token_expires_in',
      seconds: 100,
    })
    expect(readRefreshLifetime({ refresh_token: token, refresh_expires_in: 200 })).toEqual({ source: 'refresh_expires_in', seconds: 200 })
    expect(readRefreshLifetime({ refresh_token: token })).toEqual({ source: 'jwt_exp', exp: 2_000_000_000 })
    expect(readRefreshLifetime({ refresh_token: 'opaque-value' })).toBeUndefined()
    expect(readRefreshLifetime({})).toBeUndefined()
  })

  it('Keycloak’s 0 (an offline token without a fixed expiry) means "not said": the next source is asked', () => {
    expect(readRefreshLifetime({ refresh_token: 'opaque', refresh_expires_in: 0 })).toBeUndefined()
    expect(readRefreshLifetime({ refresh_token: jwt({ exp: 2_000_000_000 }), refresh_expires_in: 0 })).toEqual({
      source: 'jwt_exp',
      exp: 2_000_000_000,
    })
    // An offline token JWT without exp: nothing is known.
    expect(readRefreshLifetime({ refresh_token: jwt({ typ: 'Offline' }), refresh_expires_in: 0 })).toBeUndefined()
  })

  it.each([[0], [-5], [Number.NaN], [Number.POSITIVE_INFINITY], ['abc'], ['-3'], ['1e3'], [''], [null], [true], [{}], [[60]]])(
    'ignores a nonsense refresh_token_expires_in of %j',
    (value) => {
      expect(readRefreshLifetime({ refresh_token: 'opaque', refresh_token_expires_in: value })).toBeUndefined()
    },
  )

  it('accepts a decimal string of seconds, as some IdPs send expires_in', () => {
    expect(readRefreshLifetime({ refresh_token: 'opaque', refresh_token_expires_in: '3600' })).toEqual({
      source: 'refresh_token_expires_in',
      seconds: 3600,
    })
  })
})

describe('jwtExp', () => {
  it('reads exp from a JWS compact serialisation, signed or unsecured, without verifying it', () => {
    expect(jwtExp(jwt({ exp: 1_900_000_000, sub: 'x' }))).toBe(1_900_000_000)
    expect(jwtExp(`${b64({ alg: 'none' })}.${b64({ exp: 1_900_000_000 })}.`)).toBe(1_900_000_000)
  })

  it.each([
    ['an opaque token', 'abcDEF123_-'],
    ['two segments', `${b64({ alg: 'HS256' })}.${b64({ exp: 1 })}`],
    ['a JWE (five segments)', 'a.b.c.d.e'],
    ['a header that is not JSON', `${b64('not json')}.${b64({ exp: 1_900_000_000 })}.sig`],
    ['a header that is an array', jwt({ exp: 1_900_000_000 }, [1])],
    ['a payload that is not JSON', `${b64({ alg: 'HS256' })}.${b64('{"exp":')}.sig`],
    ['a payload without exp', jwt({ sub: 'x' })],
    ['a string exp', jwt({ exp: '1900000000' })],
    ['a negative exp', jwt({ exp: -1 })],
    ['characters outside base64url', `${b64({ alg: 'HS256' })}.${b64({ exp: 1_900_000_000 })}+.sig`],
    ['a huge token', jwt({ exp: 1_900_000_000, pad: 'x'.repeat(20_000) })],
  ])('is undefined for %s', (_name, token) => {
    expect(jwtExp(token)).toBeUndefined()
  })
})

describe('refreshTokenExpiry', () => {
  const now = 1_800_000_000_000
  const latest = now + 8 * 3_600_000

  it('seconds count from the moment the response arrived; exp is absolute', () => {
    expect(refreshTokenExpiry({ source: 'refresh_expires_in', seconds: 1800 }, { now, latest })).toBe(now + 1_800_000)
    expect(refreshTokenExpiry({ source: 'jwt_exp', exp: now / 1000 + 60 }, { now, latest })).toBe(now + 60_000)
  })

  it('is capped at the latest end (login + BFF_SESSION_MAX_AGE)', () => {
    expect(refreshTokenExpiry({ source: 'refresh_token_expires_in', seconds: 90 * 86_400 }, { now, latest })).toBe(latest)
    expect(refreshTokenExpiry({ source: 'refresh_token_expires_in', seconds: 1e300 }, { now, latest })).toBe(latest)
    // An exp written in milliseconds by mistake lies far in the future: capped too.
    expect(refreshTokenExpiry({ source: 'jwt_exp', exp: now }, { now, latest })).toBe(latest)
  })

  it('an expiry in the past or now is ignored (a clock far off, a stale token), as is nothing', () => {
    expect(refreshTokenExpiry({ source: 'jwt_exp', exp: now / 1000 - 1 }, { now, latest })).toBeUndefined()
    expect(refreshTokenExpiry({ source: 'jwt_exp', exp: now / 1000 }, { now, latest })).toBeUndefined()
    expect(refreshTokenExpiry(undefined, { now, latest })).toBeUndefined()
  })
})
