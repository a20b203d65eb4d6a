import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.js'
import { CookieSealer } from '../../src/session/cookie.js'
import { DeviceBinding } from '../../src/session/dbsc.js'
import type { Session } from '../../src/session/sessions.js'
import { MemoryStore } from '../../src/store/memory/store.js'
import { testEnv } from '../helpers/env.js'

// When registration is offered, and what the bound cookie must be (security model S84, S86).
function setup(env: Record<string, string> = {}) {
  let now = 1_800_000_000_000
  const config = loadConfig(testEnv({ BFF_PUBLIC_URL: 'https://app.example', ...env }))
  const cookies = new CookieSealer([randomBytes(32).toString('base64url')])
  const binding = new DeviceBinding({ config, cookies, challenges: new MemoryStore().transactions, now: () => now })
  const session = (createdAt: number, bound = false): Session =>
    ({
      sid: `sid-${createdAt}-${bound}`,
      version: 1,
      absExp: now + 3_600_000,
      idleExp: now + 1_800_000,
      data: {
        createdAt,
        ...(bound
          ? { dbsc: { alg: 'ES256', jwk: { kty: 'EC', crv: 'P-256', x: 'x', y: 'y' }, thumbprint: 'tp', boundAt: now, rejections: 0 } }
          : {}),
      },
    }) as unknown as Session
  return { binding, session, config, advance: (ms: number) => void (now += ms), now: () => now }
}

describe('registration offer', () => {
  it('is made to a new unbound session, once a minute per instance', async () => {
    const t = setup()
    const s = t.session(t.now())
    expect(await t.binding.offerFor(s)).toMatch(
      /^\(ES256 RS256\);path="\/auth\/dbsc\/register";challenge="[\w-]{43}";authorization="[\w-]{32}"$/,
    )
    expect(await t.binding.offerFor(s)).toBeUndefined()
  })

  it('is never made to a bound session, or one older than 5 minutes (a cookie stolen later cannot bind it to the thief)', async () => {
    const t = setup()
    expect(await t.binding.offerFor(t.session(t.now(), true))).toBeUndefined()
    expect(await t.binding.offerFor(t.session(t.now() - 301_000))).toBeUndefined()
    expect(await t.binding.offerFor(t.session(t.now() - 299_000))).toBeDefined()
  })

  it('is never made with BFF_DBSC=off', async () => {
    const t = setup({ BFF_DBSC: 'off' })
    expect(await t.binding.offerFor(t.session(t.now()))).toBeUndefined()
  })
})

describe('bound cookie', () => {
  it('holds for its session and key until its sealed expiry (+5 s), then not', async () => {
    const t = setup({ BFF_DBSC_COOKIE_TTL: '600' })
    const s = t.session(t.now(), true)
    const line = await t.binding.issueCookie(s)
    expect(line).toMatch(/^__Host-tokenward-bound=Fe26\.2\*[^;]+; Max-Age=600; Path=\/; HttpOnly; Secure; SameSite=Strict$/)
    const cookie = line.slice(0, line.indexOf(';'))
    expect(await t.binding.cookieProblem(cookie, s)).toBeUndefined()
    expect(await t.binding.cookieProblem(undefined, s)).toBe('missing')
    expect(await t.binding.cookieProblem(cookie, { ...s, sid: 'another' } as Session)).toBe('invalid')
    expect(
      await t.binding.cookieProblem(cookie, { ...s, data: { ...s.data, dbsc: { ...s.data.dbsc!, thumbprint: 'other' } } } as Session),
    ).toBe('invalid')
    t.advance(604_000)
    expect(await t.binding.cookieProblem(cookie, s)).toBeUndefined()
    t.advance(2_000)
    expect(await t.binding.cookieProblem(cookie, s)).toBe('expired')
  })
})
