import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { envSchema, KNOWN_VARIABLES, levenshtein, suggestVariable } from '../../src/config-env.js'
import { configProblems, testEnv } from '../helpers/env.js'
import { runs } from '../helpers/fast-check.js'

const problems = configProblems

describe('unknown BFF_* variables', () => {
  it('the known names are the schema names', () => {
    expect(KNOWN_VARIABLES).toEqual(Object.keys(envSchema.shape))
    expect(KNOWN_VARIABLES).toContain('BFF_REDIS_URL')
  })

  it('a misspelt BFF_REDIS_URI is refused, naming it, with a suggestion of BFF_REDIS_URL', () => {
    const p = problems(testEnv({ BFF_REDIS_URI: 'redis://redis.internal:6379' }))
    expect(p).toEqual(['BFF_REDIS_URI is not a tokenward variable (did you mean BFF_REDIS_URL?)'])
  })

  it('a name far from every known one is refused without a suggestion; other prefixes are left alone', () => {
    expect(problems(testEnv({ BFF_FROBNICATE: '1' }))).toEqual(['BFF_FROBNICATE is not a tokenward variable'])
    expect(problems(testEnv({ OTEL_SERVICE_NAME: 'x', PATH: '/bin', BFFX: '1' }))).toEqual([])
  })

  it('every known name with one letter changed is refused, with a suggestion one edit away', () => {
    const letter = fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZ_')
    fc.assert(
      fc.property(fc.constantFrom(...KNOWN_VARIABLES.filter((k) => k.startsWith('BFF_'))), fc.nat(), letter, (known, pos, c) => {
        const i = 4 + (pos % (known.length - 4))
        const typo = known.slice(0, i) + c + known.slice(i + 1)
        fc.pre(!KNOWN_VARIABLES.includes(typo))
        const p = problems(testEnv({ [typo]: 'x' }))
        expect(p).toHaveLength(1)
        expect(p[0]).toContain(typo)
        const suggested = suggestVariable(typo)
        expect(suggested).toBeDefined()
        expect(levenshtein(typo, suggested!)).toBeLessThanOrEqual(1)
      }),
      { numRuns: runs(200) },
    )
  })
})

describe('every problem in one pass', () => {
  it('sentinel-mode problems are reported together with unrelated ones and unknown variables', () => {
    const p = problems(testEnv({ BFF_REDIS_MODE: 'sentinel', BFF_PUBLIC_URL: 'nope', BFF_CLIENT_ID: undefined, BFF_SESION_MAX_AGE: '60' }))
    expect(p.some((l) => l.startsWith('BFF_PUBLIC_URL'))).toBe(true)
    expect(p.some((l) => l.startsWith('BFF_CLIENT_ID'))).toBe(true)
    expect(p).toContain('BFF_REDIS_NODES is required when BFF_REDIS_MODE=sentinel')
    expect(p).toContain('BFF_REDIS_SENTINEL_NAME is required when BFF_REDIS_MODE=sentinel')
    expect(p).toContain('BFF_SESION_MAX_AGE is not a tokenward variable (did you mean BFF_SESSION_MAX_AGE?)')
  })

  it('a plain-http public URL is refused even when another variable is also wrong', () => {
    const p = problems(
      testEnv({
        BFF_ALLOW_HTTP: undefined,
        BFF_PUBLIC_URL: 'http://app.example.com',
        BFF_ISSUER: 'https://idp.example.com',
        BFF_ROUTES: '[]x',
        BFF_LOG_LEVEL: 'loud',
      }),
    )
    expect(p.some((l) => l.startsWith('BFF_PUBLIC_URL must be https://'))).toBe(true)
    expect(p.some((l) => l.startsWith('BFF_ROUTES'))).toBe(true)
    expect(p.some((l) => l.startsWith('BFF_LOG_LEVEL'))).toBe(true)
  })
})
