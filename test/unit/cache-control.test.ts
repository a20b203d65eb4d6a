import { describe, expect, it } from 'vitest'
import { privateCacheControl } from '../../src/proxy/cache-control.js'

describe('privateCacheControl (RFC 9111 §5.2.2.7: never storable by a shared cache)', () => {
  it.each([
    [undefined, 'no-store'],
    ['', 'no-store'],
    ['  ', 'no-store'],
    ['public, max-age=600', 'max-age=600, private'],
    ['PUBLIC, Max-Age=600', 'Max-Age=600, private'],
    ['max-age=60, s-maxage=600', 'max-age=60, private'],
    ['public', 'private'],
    ['no-cache', 'no-cache, private'],
    ['private', 'private'],
    ['private, max-age=60', 'private, max-age=60'],
    ['no-store', 'no-store'],
    ['no-cache, no-store, must-revalidate', 'no-cache, no-store, must-revalidate'],
    ['public, no-store', 'no-store'],
    ['private="set-cookie", max-age=60', 'max-age=60, private'],
    ['private="a, b", public', 'private'],
    ['no-cache="x, private, y", max-age=5', 'no-cache="x, private, y", max-age=5, private'],
    ['no-cache="a\\", public", max-age=5', 'no-cache="a\\", public", max-age=5, private'],
    ['no-cache="unterminated, max-age=5', 'no-store'],
    ['x-public-ish, max-age=5', 'x-public-ish, max-age=5, private'],
    [',, max-age=5 ,', 'max-age=5, private'],
    [['public', 'max-age=600'], 'max-age=600, private'],
    [['max-age=600', 'private'], 'max-age=600, private'],
  ])('%j becomes %j', (upstream, expected) => {
    expect(privateCacheControl(upstream)).toBe(expected)
  })
})
