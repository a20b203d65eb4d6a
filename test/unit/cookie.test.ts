import { randomBytes } from 'node:crypto'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { loadConfig } from '../../src/config.js'
import { clearCookie, CookieSealer, serializeCookie } from '../../src/session/cookie.js'
import { testEnv } from '../helpers/env.js'

function secret(): string {
  return randomBytes(32).toString('base64url')
}

const TTL = 600

describe('CookieSealer', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  it('round-trips a payload', async () => {
    const sealer = new CookieSealer([secret()])
    const sealed = await sealer.seal({ t: 'handle-123', n: 7 }, TTL)
    expect(sealed.startsWith('Fe26.2*')).toBe(true)
    expect(sealed).not.toContain('handle-123')
    expect(await sealer.unseal(sealed, TTL)).toEqual({ t: 'handle-123', n: 7 })
  })

  it('security model S89: a seal of one frontend is nothing at another, even with the same secret', async () => {
    const shared = secret()
    const shop = new CookieSealer([shared], 'shop')
    const sealed = await shop.seal({ h: 'handle-123' }, TTL)
    expect(await shop.unseal(sealed, TTL)).toEqual({ h: 'handle-123', fe: 'shop' })
    expect(await new CookieSealer([shared], 'admin').unseal(sealed, TTL)).toBeNull()
    // Nor is it one of a process without BFF_CONFIG_FILE, and the other way round.
    expect(await new CookieSealer([shared]).unseal(sealed, TTL)).toBeNull()
    expect(await shop.unseal(await new CookieSealer([shared]).seal({ h: 'handle-123' }, TTL), TTL)).toBeNull()
  })

  it('refuses to build without a secret', () => {
    expect(() => new CookieSealer([])).toThrow()
  })

  it('security model S18: tampered seals give null, never throw', async () => {
    const sealer = new CookieSealer([secret()])
    const sealed = await sealer.seal({ t: 'handle-123' }, TTL)
    const tampered: string[] = []
    // Change one character in each part of the seal (password id, salts, iv, ciphertext, expiry, hmac).
    for (let i = 'Fe26.2*'.length; i < sealed.length; i += 7) {
      const c = sealed[i]!
      if (c === '*' || c === '~') continue
      tampered.push(`${sealed.slice(0, i)}${c === 'A' ? 'B' : 'A'}${sealed.slice(i + 1)}`)
    }
    // `<iron seal>~<iron-session format version>`; the version suffix is not
    // authenticated (iron-session parses it with parseInt), so only a different
    // version number is a meaningful change there.
    const [iron, version] = sealed.split('~') as [string, string]
    expect(version).toBe('2')
    const parts = iron.split('*')
    tampered.push(
      `${parts.slice(0, -1).join('*')}~2`, // missing hmac
      `${[...parts, 'extra'].join('*')}~2`, // extra component
      `${parts.slice(0, 5).join('*')}*9999999999999*${parts.slice(6).join('*')}~2`, // edited expiry
      `${parts.slice(0, 5).join('*')}**${parts.slice(6).join('*')}~2`, // expiry removed
      `${iron}~1`, // other iron-session format version
      `${iron}~3`,
      iron, // version removed
      `${iron.slice(0, -1)}~2`,
    )
    expect(tampered.length).toBeGreaterThan(20)
    for (const t of tampered) {
      expect(t).not.toBe(sealed)
      await expect(sealer.unseal(t, TTL), t).resolves.toBeNull()
    }
  })

  it('security model S18: a seal under a foreign secret gives null', async () => {
    const foreign = await new CookieSealer([secret()]).seal({ t: 'handle-123' }, TTL)
    await expect(new CookieSealer([secret()]).unseal(foreign, TTL)).resolves.toBeNull()
  })

  it.each([
    ['undefined', undefined],
    ['empty', ''],
    ['plain text', 'hello'],
    ['an iron prefix only', 'Fe26.2*'],
    ['a fake iron seal', 'Fe26.2*1*a*b*c*d*e*f~2'],
    ['an iron seal of another version', 'Fe26.1**a*b*c*d*e*f'],
    ['a JSON object', '{"t":"handle"}'],
    ['a 5000-char value', `Fe26.2*${'A'.repeat(4993)}`],
    ['a 5000-char non-iron value', 'x'.repeat(5000)],
  ])('security model S18: %s gives null', async (_name, value) => {
    const sealer = new CookieSealer([secret()])
    await expect(sealer.unseal(value, TTL)).resolves.toBeNull()
  })

  it('rotation: a seal made with A unseals with [B, A], and new seals use B', async () => {
    const a = secret()
    const b = secret()
    const onlyA = new CookieSealer([a])
    const rotated = new CookieSealer([b, a])
    const sealedWithA = await onlyA.seal({ t: 'old' }, TTL)
    expect(await rotated.unseal(sealedWithA, TTL)).toEqual({ t: 'old' })

    const sealedWithB = await rotated.seal({ t: 'new' }, TTL)
    expect(await rotated.unseal(sealedWithB, TTL)).toEqual({ t: 'new' })
    expect(await new CookieSealer([b]).unseal(sealedWithB, TTL)).toEqual({ t: 'new' })
    expect(await onlyA.unseal(sealedWithB, TTL)).toBeNull()
    // Retiring A: its seals no longer open.
    expect(await new CookieSealer([b]).unseal(sealedWithA, TTL)).toBeNull()
  })

  it('an expired seal gives null (ttl 1 s, clock moved past the 60 s iron skew)', async () => {
    // iron accepts a seal up to 60 s (timestampSkewSec) past its expiry; a
    // seal sealed with a ttl that has passed by more than that is refused.
    const sealer = new CookieSealer([secret()])
    const start = Date.now()
    vi.useFakeTimers({ toFake: ['Date'], now: start })
    const sealed = await sealer.seal({ t: 'handle-123' }, 1)
    expect(await sealer.unseal(sealed, 1)).toEqual({ t: 'handle-123' })
    vi.setSystemTime(start + 62_000)
    expect(await sealer.unseal(sealed, 1)).toBeNull()
    vi.setSystemTime(start + 3_600_000)
    expect(await sealer.unseal(sealed, 1)).toBeNull()
  })

  it('a seal within its ttl stays valid', async () => {
    const sealer = new CookieSealer([secret()])
    const start = Date.now()
    vi.useFakeTimers({ toFake: ['Date'], now: start })
    const sealed = await sealer.seal({ t: 'handle-123' }, TTL)
    vi.setSystemTime(start + (TTL - 1) * 1000)
    expect(await sealer.unseal(sealed, TTL)).toEqual({ t: 'handle-123' })
    vi.setSystemTime(start + (TTL + 120) * 1000)
    expect(await sealer.unseal(sealed, TTL)).toBeNull()
  })
})

describe('serializeCookie and clearCookie', () => {
  it('security model S14: the default session cookie is __Host-, HttpOnly, Secure, Path=/, SameSite=Strict, no Domain', () => {
    const config = loadConfig(testEnv())
    expect(config.cookie.name).toBe('__Host-tokenward')
    const header = serializeCookie(config, config.cookie.name, 'sealed-value', { maxAge: 1800, sameSite: config.cookie.sameSite })
    expect(header).toBe('__Host-tokenward=sealed-value; Path=/; Max-Age=1800; HttpOnly; Secure; SameSite=Strict')
    expect(header.toLowerCase()).not.toContain('domain')
  })

  it('rounds Max-Age down and never makes it negative', () => {
    const config = loadConfig(testEnv())
    expect(serializeCookie(config, 'n', 'v', { maxAge: 59.9, sameSite: 'Strict' })).toContain('; Max-Age=59;')
    expect(serializeCookie(config, 'n', 'v', { maxAge: -5, sameSite: 'Strict' })).toContain('; Max-Age=0;')
  })

  it('security model S23: clearCookie keeps the name, Path and Secure and sets Max-Age=0', () => {
    const config = loadConfig(testEnv())
    const header = clearCookie(config, config.cookie.name, 'Strict')
    expect(header).toBe('__Host-tokenward=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict')
  })

  it('BFF_COOKIE_SAMESITE=lax gives SameSite=Lax', () => {
    const config = loadConfig(testEnv({ BFF_COOKIE_SAMESITE: 'lax' }))
    expect(config.cookie.sameSite).toBe('Lax')
    const header = serializeCookie(config, config.cookie.name, 'v', { maxAge: 10, sameSite: config.cookie.sameSite })
    expect(header).toBe('__Host-tokenward=v; Path=/; Max-Age=10; HttpOnly; Secure; SameSite=Lax')
    expect(clearCookie(config, config.cookie.name, config.cookie.sameSite)).toBe(
      '__Host-tokenward=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax',
    )
  })

  it('the login-transaction cookie is SameSite=Lax and __Host- by default', () => {
    const config = loadConfig(testEnv())
    expect(config.cookie.transactionName).toBe('__Host-tokenward-tx')
    expect(serializeCookie(config, config.cookie.transactionName, 'v', { maxAge: 600, sameSite: 'Lax' })).toBe(
      '__Host-tokenward-tx=v; Path=/; Max-Age=600; HttpOnly; Secure; SameSite=Lax',
    )
  })

  it('a plain-http non-loopback public URL under BFF_ALLOW_HTTP drops Secure and the __Host- prefix', () => {
    const config = loadConfig(testEnv({ BFF_PUBLIC_URL: 'http://app.internal:3000', BFF_ALLOW_HTTP: 'true' }))
    expect(config.cookie.name).toBe('tokenward')
    expect(config.cookie.name.startsWith('__Host-')).toBe(false)
    expect(config.cookie.secure).toBe(false)
    const header = serializeCookie(config, config.cookie.name, 'v', { maxAge: 10, sameSite: 'Strict' })
    expect(header).toBe('tokenward=v; Path=/; Max-Age=10; HttpOnly; SameSite=Strict')
    expect(header).not.toContain('Secure')
    expect(clearCookie(config, config.cookie.name, 'Strict')).toBe('tokenward=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict')
  })

  it('http://localhost keeps Secure and the __Host- prefix (loopback is a secure context)', () => {
    for (const url of ['http://localhost:3000', 'http://127.0.0.1:3000']) {
      const config = loadConfig(testEnv({ BFF_PUBLIC_URL: url }))
      expect(config.cookie.name).toBe('__Host-tokenward')
      expect(config.cookie.secure).toBe(true)
    }
  })
})
