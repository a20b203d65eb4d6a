import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { clientAddressResolver, parseTrustedProxies } from '../../src/client-address.js'

const TRUSTED = ['10.0.0.0/8', 'fd00::/8', '192.0.2.7']
const resolve = clientAddressResolver(TRUSTED)

const octet = fc.integer({ min: 0, max: 255 })
const trustedV4 = fc.tuple(octet, octet, octet).map(([a, b, c]) => `10.${a}.${b}.${c}`)
const trustedV6 = fc
  .array(fc.integer({ min: 0, max: 0xffff }), { minLength: 7, maxLength: 7 })
  .map((g) => `fd00:${g.map((n) => n.toString(16)).join(':')}`)
const trustedHop = fc.oneof(trustedV4, trustedV6, fc.constant('192.0.2.7'))
/** Public-looking IPv4 addresses outside every trusted range. */
const untrusted = fc.tuple(fc.integer({ min: 11, max: 99 }), octet, octet, octet).map((p) => p.join('.'))
/** Whatever a client may write into the header itself. */
const spoofed = fc.array(fc.oneof(untrusted, trustedHop, fc.constant('unknown'), fc.string({ maxLength: 20 })), { maxLength: 5 })

describe('client address behind trusted proxies (BFF_TRUSTED_PROXIES)', () => {
  it('trusts nobody by default: the peer is the client and the headers are never read', () => {
    const none = clientAddressResolver([])
    fc.assert(
      fc.property(fc.oneof(untrusted, trustedHop), spoofed, (peer, hops) => {
        const r = none(peer, { 'x-forwarded-for': hops.join(', '), forwarded: `for=${hops[0] ?? 'x'}` })
        expect(r).toEqual({ client: peer, forwardedFor: peer })
      }),
    )
  })

  it('an untrusted peer is the client whatever it claims', () => {
    fc.assert(
      fc.property(untrusted, spoofed, (peer, hops) => {
        expect(resolve(peer, { 'x-forwarded-for': hops.join(', ') })).toEqual({ client: peer, forwardedFor: peer })
      }),
    )
  })

  it('through trusted hops: the first untrusted address from the right, whatever the client wrote to its left', () => {
    fc.assert(
      fc.property(spoofed, untrusted, fc.array(trustedHop, { maxLength: 4 }), trustedHop, (prefix, client, hops, peer) => {
        const xff = [...prefix, client, ...hops].join(', ')
        const r = resolve(peer, { 'x-forwarded-for': xff })
        expect(r.client).toBe(client)
        // Outbound: the client, the trusted hops, the peer; never the client's own prefix.
        expect(r.forwardedFor).toBe([client, ...hops, peer].join(', '))
      }),
    )
  })

  it('reads RFC 7239 Forwarded when there is no X-Forwarded-For (quoted, bracketed IPv6, ports)', () => {
    const r = resolve('10.1.2.3', { forwarded: 'for=198.51.100.9:1234;proto=https, for="[fd00::1]:4711";by=10.0.0.1' })
    expect(r).toEqual({ client: '198.51.100.9', forwardedFor: '198.51.100.9, fd00::1, 10.1.2.3' })
    expect(resolve('10.1.2.3', { forwarded: 'For="[2001:db8:cafe::17]"' }).client).toBe('2001:db8:cafe::17')
  })

  it('prefers X-Forwarded-For over Forwarded, and joins repeated fields', () => {
    expect(resolve('10.0.0.1', { 'x-forwarded-for': '203.0.113.5', forwarded: 'for=198.51.100.1' }).client).toBe('203.0.113.5')
    expect(resolve('10.0.0.1', { 'x-forwarded-for': ['203.0.113.5', '10.0.0.9'] }).client).toBe('203.0.113.5')
  })

  it('a hop that is no address stops the walk at the nearest trusted hop', () => {
    expect(resolve('10.0.0.1', { 'x-forwarded-for': '203.0.113.5, unknown, 10.0.0.2' })).toEqual({
      client: '10.0.0.2',
      forwardedFor: '10.0.0.2, 10.0.0.1',
    })
    expect(resolve('10.0.0.1', {})).toEqual({ client: '10.0.0.1', forwardedFor: '10.0.0.1' })
  })

  it('IPv4-mapped IPv6 peers match IPv4 ranges', () => {
    expect(resolve('::ffff:10.0.0.1', { 'x-forwarded-for': '203.0.113.5' }).client).toBe('203.0.113.5')
    expect(resolve('::ffff:203.0.113.9', { 'x-forwarded-for': '1.2.3.4' }).client).toBe('203.0.113.9')
  })

  it('configuration: every bad entry is named', () => {
    const problems: string[] = []
    expect(parseTrustedProxies('10.0.0.0/8, ::1, 2001:db8::/32, 192.0.2.1', problems)).toHaveLength(4)
    expect(problems).toEqual([])
    parseTrustedProxies('10.0.0.0/33, nginx, 10.0.0.1/x, fd00::/129', problems)
    expect(problems).toHaveLength(4)
    expect(problems[1]).toContain('"nginx"')
  })
})
