// Property tests for reading a refresh token's lifetime from a token response
// (src/tokens/refresh-lifetime.ts, security model S77): whatever an IdP sends,
// the planned end is after the moment of receipt and never past the latest end,
// and reading never throws.
// Replay a failure with FC_SEED=<seed> FC_PATH=<path> npx vitest run test/property.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { readRefreshLifetime, refreshTokenExpiry } from '../../src/tokens/refresh-lifetime.js'
import { runs } from '../helpers/fast-check.js'

const replay = {
  ...(process.env.FC_SEED ? { seed: Number(process.env.FC_SEED) } : {}),
  ...(process.env.FC_PATH ? { path: process.env.FC_PATH } : {}),
}

const b64 = (value: string) => Buffer.from(value).toString('base64url')

/** Values an IdP (or a broken one) might put in a lifetime field. */
const lifetimeValue = fc.oneof(
  fc.integer({ min: -1e6, max: 1e9 }),
  fc.double(),
  fc.string(),
  fc.constantFrom(null, true, {}, [], '0', '3600', 0),
)

/** Refresh tokens: opaque, JWT-shaped with any payload, or garbage with dots. */
const refreshToken = fc.oneof(
  fc.string(),
  fc.base64String(),
  fc
    .record({ exp: fc.oneof(fc.integer(), fc.double(), fc.string(), fc.constant(undefined)), other: fc.json() })
    .map((p) => `${b64('{"alg":"HS256"}')}.${b64(JSON.stringify(p))}.sig`),
  fc.tuple(fc.string(), fc.string(), fc.string()).map((parts) => parts.join('.')),
)

const response = fc.record(
  {
    refresh_token: refreshToken,
    refresh_token_expires_in: lifetimeValue,
    refresh_expires_in: lifetimeValue,
  },
  { requiredKeys: [] },
)

describe('refresh-token lifetime', () => {
  it('never throws, and an expiry is always after receipt and never past the latest end', () => {
    fc.assert(
      fc.property(
        response,
        fc.integer({ min: 0, max: 4_000_000_000_000 }),
        fc.integer({ min: 1, max: 365 * 86_400_000 }),
        (r, now, maxAgeMs) => {
          const latest = now + maxAgeMs
          const expiry = refreshTokenExpiry(readRefreshLifetime(r), { now, latest })
          if (expiry !== undefined) {
            expect(Number.isSafeInteger(expiry)).toBe(true)
            expect(expiry).toBeGreaterThan(now)
            expect(expiry).toBeLessThanOrEqual(latest)
          }
        },
      ),
      { numRuns: runs(2000), ...replay },
    )
  })

  it('a positive number of seconds in the first field wins over anything else the response says', () => {
    fc.assert(
      fc.property(response, fc.integer({ min: 1, max: 1e9 }), (r, seconds) => {
        expect(readRefreshLifetime({ ...r, refresh_token_expires_in: seconds })).toEqual({ source: 'refresh_token_expires_in', seconds })
      }),
      { numRuns: runs(1000), ...replay },
    )
  })
})
