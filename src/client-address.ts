import { BlockList, isIP } from 'node:net'
import type { IncomingHttpHeaders } from 'node:http'
import { nodeHeader } from './http/headers.js'

/**
 * Who the client is, when tokenward runs behind proxies it trusts
 * (BFF_TRUSTED_PROXIES). Forwarding headers are client-writable, so they are
 * read only when the socket peer is a trusted proxy, and then right to left:
 * each trusted proxy appends the address it saw, so the first address from the
 * right that is not a trusted proxy is the client, and anything to its left was
 * written by the client itself and means nothing (RFC 7239 §7.4 on trusting
 * forwarded information; MDN's X-Forwarded-For "selecting an IP address").
 */
export interface ClientAddress {
  /** The client's address: what rate limits, audit records and logs use. */
  readonly client: string | undefined
  /**
   * The outbound `X-Forwarded-For`: from the client through the trusted hops to
   * the peer, or just the peer when the peer is not trusted.
   */
  readonly forwardedFor: string | undefined
}

export type ClientAddressResolver = (peer: string | undefined, headers: IncomingHttpHeaders) => ClientAddress

/** `::ffff:192.0.2.1` (an IPv4 peer on a dual-stack socket) as the IPv4 address it is. */
export function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address
}

/**
 * Parses BFF_TRUSTED_PROXIES (addresses and CIDRs, IPv4 and IPv6, comma
 * separated); problems go to `problems`, naming the variable and the entry.
 */
export function parseTrustedProxies(raw: string | undefined, problems: string[]): string[] {
  const entries = (raw ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  for (const entry of entries) {
    if (!toBlockList([entry]))
      problems.push(`BFF_TRUSTED_PROXIES entry "${entry.slice(0, 64)}" must be an IPv4 or IPv6 address or CIDR (e.g. 10.0.0.0/8, fd00::/8)`)
  }
  return entries
}

/** A BlockList of the entries, or undefined when one is not an address or CIDR. */
function toBlockList(entries: readonly string[]): BlockList | undefined {
  const list = new BlockList()
  for (const entry of entries) {
    const slash = entry.indexOf('/')
    const address = plainAddress(slash < 0 ? entry : entry.slice(0, slash))
    const family = isIP(address)
    if (family === 0) return undefined
    const type = family === 4 ? 'ipv4' : 'ipv6'
    if (slash < 0) {
      list.addAddress(address, type)
      continue
    }
    const bits = entry.slice(slash + 1)
    if (!/^\d{1,3}$/.test(bits) || Number(bits) > (family === 4 ? 32 : 128)) return undefined
    list.addSubnet(address, Number(bits), type)
  }
  return list
}

/** The `for=` addresses of an RFC 7239 `Forwarded` field, left to right (§4, §6: quoted, bracketed IPv6, ports). */
function forwardedFor(value: string): string[] {
  const out: string[] = []
  for (const element of value.split(',')) {
    for (const pair of element.split(';')) {
      const eq = pair.indexOf('=')
      if (eq < 0 || pair.slice(0, eq).trim().toLowerCase() !== 'for') continue
      let v = pair.slice(eq + 1).trim()
      if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) v = v.slice(1, -1)
      // `[2001:db8::1]:4711` or `192.0.2.1:4711`: the node without its port.
      const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(v)
      if (bracketed) v = bracketed[1]!
      else if (/^[\d.]+:\d+$/.test(v)) v = v.slice(0, v.indexOf(':'))
      out.push(v)
    }
  }
  return out
}

/**
 * The resolver for a list of trusted proxies. With none (the default), the
 * socket peer is the client and no header is read. `X-Forwarded-For` is read
 * when present, else `Forwarded`: the proxy in front must overwrite (or strip)
 * the one it does not set, as nginx, Envoy and the common cloud balancers do
 * with `X-Forwarded-For`.
 */
export function clientAddressResolver(trusted: readonly string[]): ClientAddressResolver {
  const list = trusted.length > 0 ? toBlockList(trusted) : undefined
  const isTrusted = (address: string): boolean => {
    const family = isIP(address)
    return family !== 0 && list!.check(address, family === 4 ? 'ipv4' : 'ipv6')
  }
  return (rawPeer, headers) => {
    const peer = rawPeer === undefined ? undefined : plainAddress(rawPeer)
    if (!list || peer === undefined || !isTrusted(peer)) return { client: peer, forwardedFor: peer }
    const xff = nodeHeader(headers, 'x-forwarded-for')
    const fwd = xff === undefined ? nodeHeader(headers, 'forwarded') : undefined
    const hops = xff !== undefined ? xff.split(',').map((s) => s.trim()) : fwd !== undefined ? forwardedFor(fwd) : []
    // Right to left from the peer: skip trusted hops; the first other address is the client.
    const chain = [peer]
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = plainAddress(hops[i]!)
      // A hop that is no address (`unknown`, an obfuscated RFC 7239 §6.3 name,
      // garbage) cannot be counted or traced: the nearest trusted hop stands in.
      if (isIP(hop) === 0) break
      chain.unshift(hop)
      if (!isTrusted(hop)) break
    }
    return { client: chain[0], forwardedFor: chain.join(', ') }
  }
}
