import { describe, expect, it } from 'vitest'
import { safeReturnTo } from '../../src/return-to.js'

const origin = 'http://localhost:3000'

describe('safeReturnTo', () => {
  it.each([
    ['/orders/7?x=1#top', '/orders/7?x=1#top'],
    ['/', '/'],
    ['/a/b/c', '/a/b/c'],
    ['/search?q=a%20b&page=2', '/search?q=a%20b&page=2'],
    ['/#/spa/route', '/#/spa/route'],
  ])('keeps the same-origin path, query and fragment of %j', (value, expected) => {
    const result = safeReturnTo(value, origin)
    expect(result).toBe(expected)
    expect(new URL(result, origin).origin).toBe(origin)
  })

  it('works for an https origin with a port too', () => {
    const o = 'https://app.example.com:8443'
    expect(safeReturnTo('/orders/7?x=1#top', o)).toBe('/orders/7?x=1#top')
    expect(safeReturnTo('https://app.example.com:8443/x', o)).toBe('/')
    expect(safeReturnTo('//app.example.com:8443/x', o)).toBe('/')
  })

  // security model S7: open-redirect vectors (oauth2-proxy redirect validator
  // tests, Duende non-local returnUrl tests). Each falls back to `/`.
  const vectors: Array<[string, string | undefined]> = [
    ['protocol-relative', '//evil.com'],
    ['protocol-relative with path', '//evil.com/x?y=1'],
    ['slash backslash', '/\\evil.com'],
    ['slash tab slash', '/\t/evil.com'],
    ['slash vertical tab slash', '/\v/evil.com'],
    ['slash newline slash', '/\n/evil.com'],
    ['slash carriage return slash', '/\r/evil.com'],
    ['dot segment then backslash', '/./\\evil.com'],
    ['absolute https URL', 'https://evil.com'],
    ['absolute http URL', 'http://evil.com/'],
    ['scheme-less host', 'evil.com/x'],
    ['encoded double slash', '/%2f%2fevil.com'],
    ['encoded double slash, upper case', '/%2F%2Fevil.com'],
    ['javascript: URL', 'javascript:alert(1)'],
    ['encoded backslash', '/%5cevil.com'],
    ['encoded backslash, upper case', '/%5Cevil.com'],
    ['double backslash', '\\\\evil.com'],
    ['encoded tab', '/%09/evil.com'],
    ['NUL byte', '/\u0000/evil.com'],
    ['empty', ''],
    ['undefined', undefined],
    ['a 3000-char path', `/${'a'.repeat(2999)}`],
    ['invalid percent-encoding', '/%E0%A4%A'],
    ['lone percent', '/%'],
    ['data: URL', 'data:text/html,<script>alert(1)</script>'],
  ]

  it.each(vectors)('security model S7: %s (%j) falls back to /', (_name, value) => {
    const result = safeReturnTo(value, origin)
    expect(result).toBe('/')
    expect(new URL(result, origin).origin).toBe(origin)
  })

  it('returns / for null', () => {
    expect(safeReturnTo(null, origin)).toBe('/')
  })

  it('accepts a long path up to the limit and refuses one beyond it', () => {
    const ok = `/${'a'.repeat(2000)}`
    expect(safeReturnTo(ok, origin)).toBe(ok)
    expect(safeReturnTo(`/${'a'.repeat(2048)}`, origin)).toBe('/')
  })

  it('resolves harmless dot segments to a same-origin path', () => {
    const result = safeReturnTo('/a/../b', origin)
    expect(result).toBe('/b')
    expect(new URL(result, origin).origin).toBe(origin)
  })

  // Regression: dot-segment removal turned `/.//evil.com` into `//evil.com`
  // after the input checks had passed (a protocol-relative open redirect).
  it.each(['/.//evil.com', '/%2e//evil.com', '/%2E//evil.com', '/a/..//evil.com', '/x/%2e%2e//evil.com', '/.///evil.com'])(
    'security model S7: dot segment before a double slash (%j) never yields an off-origin target',
    (value) => {
      const result = safeReturnTo(value, origin)
      expect(new URL(result, origin).origin).toBe(origin)
      expect(result.startsWith('//')).toBe(false)
    },
  )
})

describe('safeReturnTo at a path base (security model S92)', () => {
  const origin = 'https://apps.example.com'
  it('keeps a destination at or under the base, on a segment boundary', () => {
    for (const ok of ['/shop', '/shop/', '/shop/orders?x=1#top', '/shop?x=1']) expect(safeReturnTo(ok, origin, '/shop'), ok).toBe(ok)
  })
  it("replaces anything else, including another frontend's paths and dot-segment escapes, with the base's root", () => {
    for (const bad of [
      undefined,
      '',
      '/',
      '/admin',
      '/shopping',
      '/shop/../admin',
      '/shop/%2e%2e/admin',
      '//evil.example',
      'https://evil.example/shop',
    ]) {
      expect(safeReturnTo(bad, origin, '/shop'), String(bad)).toBe('/shop/')
    }
  })
  it('is unchanged without a base', () => {
    expect(safeReturnTo('/admin', origin)).toBe('/admin')
    expect(safeReturnTo('//evil.example', origin)).toBe('/')
  })
})
