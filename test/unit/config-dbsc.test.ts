import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.js'
import { configProblems, testEnv } from '../helpers/env.js'

// BFF_DBSC, BFF_DBSC_COOKIE_TTL, BFF_DBSC_MAX_REJECTIONS (docs/configuration.md; security model S84).
describe('device-bound session configuration', () => {
  it('defaults: auto, on for an https public URL, 600 s bound cookie, 3 rejections', () => {
    const c = loadConfig(testEnv({ BFF_PUBLIC_URL: 'https://app.example' }))
    expect(c.dbsc).toEqual({ enabled: true, cookieTtl: 600, maxRejections: 3, cookieName: '__Host-tokenward-bound' })
    expect(c.warnings.join('\n')).not.toContain('device-bound')
  })

  it('is off with BFF_DBSC=off', () => {
    expect(loadConfig(testEnv({ BFF_PUBLIC_URL: 'https://app.example', BFF_DBSC: 'off' })).dbsc.enabled).toBe(false)
  })

  it('is off, with a startup warning, on a plain-http public URL (browsers need a secure origin)', () => {
    const c = loadConfig(testEnv({ BFF_PUBLIC_URL: 'http://localhost:3000' }))
    expect(c.dbsc.enabled).toBe(false)
    expect(c.warnings).toContain('BFF_DBSC=auto but BFF_PUBLIC_URL is not https: device-bound sessions are off')
    expect(loadConfig(testEnv({ BFF_PUBLIC_URL: 'http://localhost:3000', BFF_DBSC: 'off' })).warnings.join()).not.toContain('BFF_DBSC')
  })

  it('the bound cookie drops the __Host- prefix with the session cookie', () => {
    const c = loadConfig(testEnv({ BFF_PUBLIC_URL: 'http://app.internal:8080' }))
    expect(c.dbsc.cookieName).toBe('tokenward-bound')
  })

  it('refuses a bound cookie shorter than 130 s (browsers refresh about 120 s ahead) unless a test lowers the floor', () => {
    expect(configProblems(testEnv({ BFF_DBSC_COOKIE_TTL: '129' }))).toEqual([
      'BFF_DBSC_COOKIE_TTL must be at least 130 (browsers refresh a bound cookie about 120 s before it expires)',
    ])
    expect(configProblems(testEnv({ BFF_DBSC_COOKIE_TTL: '130' }))).toEqual([])
    expect(loadConfig(testEnv({ BFF_DBSC_COOKIE_TTL: '3' }), { dbscMinCookieTtl: 1 }).dbsc.cookieTtl).toBe(3)
  })

  it('refuses malformed values', () => {
    const p = configProblems(testEnv({ BFF_DBSC: 'on', BFF_DBSC_MAX_REJECTIONS: '0', BFF_DBSC_COOKIE_TTL: 'ten' }))
    expect(p.some((m) => m.startsWith('BFF_DBSC '))).toBe(true)
    expect(p.some((m) => m.startsWith('BFF_DBSC_MAX_REJECTIONS'))).toBe(true)
    expect(p.some((m) => m.startsWith('BFF_DBSC_COOKIE_TTL'))).toBe(true)
  })
})
