// The login policy (src/oidc/login-policy.ts): BFF_AUTH_PARAMS is a floor a
// login request can only tighten, and the callback holds the ID token to what
// was asked. The same rules are attacked end to end in
// test/integration/login-policy.test.ts.
import { describe, expect, it } from 'vitest'
import { BffError } from '../../src/errors.js'
import {
  AUTH_TIME_SKEW_SECONDS,
  authParamsProblems,
  authenticationShortfall,
  effectiveAuthParams,
  type EffectiveAuthParams,
} from '../../src/oidc/login-policy.js'

const FLOOR: Array<[string, string]> = [
  ['acr_values', 'urn:example:mfa urn:example:hwk'],
  ['max_age', '0'],
  ['prompt', 'login'],
  ['ui_locales', 'de'],
]

function ok(r: EffectiveAuthParams | BffError): EffectiveAuthParams {
  if (r instanceof BffError) throw new Error(`refused: ${r.message}`)
  return r
}

function refused(r: EffectiveAuthParams | BffError): BffError {
  expect(r).toBeInstanceOf(BffError)
  const e = r as BffError
  expect(e.status).toBe(400)
  expect(e.code).toBe('invalid_request')
  return e
}

const asObject = (r: EffectiveAuthParams) => Object.fromEntries(r.params)

describe('effectiveAuthParams: configured values are a floor', () => {
  it('without a request, the configured values are sent as they are', () => {
    const r = ok(effectiveAuthParams(FLOOR, {}))
    expect(asObject(r)).toEqual({ acr_values: 'urn:example:mfa urn:example:hwk', max_age: '0', prompt: 'login', ui_locales: 'de' })
    expect(r.asked).toEqual({ acrValues: ['urn:example:mfa', 'urn:example:hwk'], maxAge: 0 })
    expect(r.silent).toBe(false)
  })

  it('the attack of the review: weaker acr_values, a longer max_age and prompt=none are refused or ignored', () => {
    refused(effectiveAuthParams(FLOOR, { acr_values: 'urn:example:pwd' }))
    expect(asObject(ok(effectiveAuthParams(FLOOR, { max_age: '999999' }))).max_age).toBe('0')
    refused(effectiveAuthParams(FLOOR, { prompt: 'none' }))
  })

  it('max_age: the smaller of configured and requested', () => {
    const conf: Array<[string, string]> = [['max_age', '600']]
    expect(ok(effectiveAuthParams(conf, { max_age: '60' })).asked.maxAge).toBe(60)
    expect(ok(effectiveAuthParams(conf, { max_age: '6000' })).asked.maxAge).toBe(600)
    expect(ok(effectiveAuthParams([], { max_age: '300' })).asked.maxAge).toBe(300)
    expect(ok(effectiveAuthParams([], {})).asked.maxAge).toBeUndefined()
    expect(asObject(ok(effectiveAuthParams([], {}))).max_age).toBeUndefined()
  })

  it('acr_values: a non-empty subset of the configured list narrows it; anything else is refused', () => {
    expect(ok(effectiveAuthParams(FLOOR, { acr_values: 'urn:example:hwk' })).asked.acrValues).toEqual(['urn:example:hwk'])
    expect(ok(effectiveAuthParams(FLOOR, { acr_values: 'urn:example:hwk urn:example:mfa' })).asked.acrValues).toEqual([
      'urn:example:hwk',
      'urn:example:mfa',
    ])
    refused(effectiveAuthParams(FLOOR, { acr_values: 'urn:example:mfa urn:example:pwd' }))
    refused(effectiveAuthParams(FLOOR, { acr_values: '' }))
    // Nothing configured: the request's values, as a step-up asks them.
    expect(ok(effectiveAuthParams([], { acr_values: 'urn:example:pwd' })).asked.acrValues).toEqual(['urn:example:pwd'])
  })

  it('prompt with a configured login: always contains login, requests may add values, none is refused', () => {
    expect(asObject(ok(effectiveAuthParams(FLOOR, {}))).prompt).toBe('login')
    expect(asObject(ok(effectiveAuthParams(FLOOR, { prompt: 'consent' }))).prompt).toBe('login consent')
    expect(asObject(ok(effectiveAuthParams(FLOOR, { prompt: 'select_account login' }))).prompt).toBe('login select_account')
    expect(refused(effectiveAuthParams(FLOOR, { prompt: 'none' })).message).toMatch(/prompt=none/)
    expect(refused(effectiveAuthParams([['prompt', 'login consent']], { prompt: 'none' })).message).toMatch(/prompt=none/)
  })

  it('prompt with another configured value (consent): the request replaces it, so silent logins still work', () => {
    const conf: Array<[string, string]> = [['prompt', 'consent']]
    expect(asObject(ok(effectiveAuthParams(conf, {}))).prompt).toBe('consent')
    const silent = ok(effectiveAuthParams(conf, { prompt: 'none' }))
    expect(asObject(silent).prompt).toBe('none')
    expect(silent.silent).toBe(true)
    expect(asObject(ok(effectiveAuthParams(conf, { prompt: 'login' }))).prompt).toBe('login')
  })

  it('malformed request values are refused', () => {
    for (const bad of [
      { prompt: 'bogus' },
      { prompt: 'none login' },
      { prompt: 'login login' },
      { max_age: '-1' },
      { max_age: '1e3' },
      { acr_values: '"quoted"' },
      { acr_values: 'a'.repeat(600) },
    ]) {
      refused(effectiveAuthParams([], bad))
    }
  })

  it('other configured parameters pass through; the result never holds two of a policy parameter', () => {
    const r = ok(effectiveAuthParams(FLOOR, { prompt: 'consent', acr_values: 'urn:example:mfa', max_age: '10' }))
    expect(r.params.filter(([k]) => k === 'ui_locales')).toEqual([['ui_locales', 'de']])
    for (const k of ['prompt', 'acr_values', 'max_age']) expect(r.params.filter(([p]) => p === k)).toHaveLength(1)
  })
})

describe('authParamsProblems: a malformed floor is a configuration error', () => {
  it('accepts well-formed values and ignores other parameters', () => {
    expect(authParamsProblems(FLOOR)).toEqual([])
    expect(authParamsProblems([['claims', '{"x":1}']])).toEqual([])
  })
  it('refuses malformed or repeated policy parameters', () => {
    expect(authParamsProblems([['max_age', 'soon']])).toHaveLength(1)
    expect(authParamsProblems([['prompt', 'login none']])).toHaveLength(1)
    expect(authParamsProblems([['acr_values', '']])).toHaveLength(1)
    expect(
      authParamsProblems([
        ['max_age', '1'],
        ['max_age', '2'],
      ]),
    ).toHaveLength(1)
  })
})

describe('authenticationShortfall: the ID token must show what was asked', () => {
  const now = 1_900_000_000
  it('acr: one of the asked values, or absent (a voluntary claim)', () => {
    const asked = { acrValues: ['urn:example:mfa'] }
    expect(authenticationShortfall(asked, { acr: 'urn:example:mfa' }, now)).toBeUndefined()
    expect(authenticationShortfall(asked, {}, now)).toBeUndefined()
    expect(authenticationShortfall(asked, { acr: 'urn:example:pwd' }, now)).toMatch(/acr/)
    expect(authenticationShortfall(asked, { acr: 3 }, now)).toMatch(/acr/)
    // Nothing asked: nothing checked.
    expect(authenticationShortfall({}, { acr: 'anything' }, now)).toBeUndefined()
  })

  it('max_age: auth_time required and recent enough, within the skew', () => {
    const asked = { maxAge: 300 }
    expect(authenticationShortfall(asked, {}, now)).toMatch(/no auth_time/)
    expect(authenticationShortfall(asked, { auth_time: now - 300 - AUTH_TIME_SKEW_SECONDS }, now)).toBeUndefined()
    expect(authenticationShortfall(asked, { auth_time: now - 301 - AUTH_TIME_SKEW_SECONDS }, now)).toMatch(/max_age=300/)
    expect(authenticationShortfall(asked, { auth_time: now + AUTH_TIME_SKEW_SECONDS + 1 }, now)).toMatch(/future/)
    // max_age=0 is met by an authentication during this login.
    expect(authenticationShortfall({ maxAge: 0 }, { auth_time: now - 5 }, now)).toBeUndefined()
    expect(authenticationShortfall({ maxAge: 0 }, { auth_time: now - 3600 }, now)).toMatch(/max_age=0/)
  })
})
