import type { IncomingHttpHeaders } from 'node:http'
import type { Context } from 'hono'
import type { AppEnv } from '../types.js'

/** One request header from Node's parsed headers, repeated fields joined. */
export function nodeHeader(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name]
  return Array.isArray(v) ? v.join(', ') : v
}

/**
 * A request header. Under @hono/node-server, Node's already-parsed headers are
 * read directly: `c.req.header()` would build a WHATWG Headers object first,
 * a cost that showed in profiles of the proxy path.
 */
export function header(c: Context<AppEnv>, name: string): string | undefined {
  const incoming = c.env?.incoming
  return incoming ? nodeHeader(incoming.headers, name) : c.req.header(name)
}

/** The request's headers as Node parsed them (or, under app.request() in tests, from the Fetch request). */
export function requestHeaders(c: Context<AppEnv>): IncomingHttpHeaders {
  return c.env?.incoming?.headers ?? Object.fromEntries(c.req.raw.headers)
}

/**
 * One cookie's value from the Cookie header. Parsing only the one we need is
 * measurably cheaper on the proxy path than parsing them all; the first
 * occurrence wins, as with hono's parser (`__Host-` cookies cannot be planted
 * by other hosts, RFC 6265bis §4.1.3.2).
 */
export function readCookie(c: Context<AppEnv>, name: string): string | undefined {
  return cookieValue(header(c, 'cookie'), name)
}

/** One cookie's value from a Cookie header value (see readCookie). */
export function cookieValue(cookies: string | undefined, name: string): string | undefined {
  if (!cookies) return undefined
  let i = 0
  while (i < cookies.length) {
    while (cookies.charCodeAt(i) === 32) i++
    const end = cookies.indexOf(';', i)
    const stop = end < 0 ? cookies.length : end
    if (cookies.startsWith(name, i) && cookies.charCodeAt(i + name.length) === 61 /* = */) {
      let value = cookies.slice(i + name.length + 1, stop).trim()
      if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1)
      return value
    }
    i = stop + 1
  }
  return undefined
}

/** Whether the caller is a person's browser navigating (HTML) rather than the SPA's fetch (JSON). */
export function wantsHtml(c: Context<AppEnv>): boolean {
  const accept = c.req.header('accept') ?? ''
  return accept.includes('text/html') && !accept.startsWith('application/json')
}

/** Answers that name a user or a session are never stored by any cache (RFC 9111 §5.2.2.5). */
export function noStore(c: Context<AppEnv>): void {
  c.header('cache-control', 'no-store')
  c.header('pragma', 'no-cache')
}
