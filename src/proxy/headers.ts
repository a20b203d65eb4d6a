import type { OutgoingHttpHeaders } from 'node:http'
import type { ForwardOptions } from './forward.js'

/*
 * Header rules of the proxy: which fields pass from the browser to the
 * upstream and back, and which tokenward sets itself.
 */

/**
 * Hop-by-hop fields (RFC 9110 §7.6.1) plus fields tokenward owns: never copied
 * from the browser to the upstream or back.
 */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
])

/** Request fields tokenward sets or must never forward (BBA §6.1.1, security model S42). */
const REQUEST_DROP = new Set([
  ...HOP_BY_HOP,
  'host',
  'cookie',
  'authorization',
  'x-csrf',
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-port',
  'x-real-ip',
  'x-request-id',
  'dpop',
  // Method and URL overrides: frameworks that honour them (Express's
  // method-override, Symfony, Laravel, Rails, IIS URL Rewrite, Zend) would turn
  // a GET into a DELETE or serve another path than the one the route's
  // `methods` and prefix were checked against. They have no meaning in responses.
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
  'x-original-url',
  'x-rewrite-url',
])

/** Response fields that must not reach the browser (security model S44). */
function dropResponseHeader(name: string): boolean {
  return HOP_BY_HOP.has(name) || name === 'set-cookie' || name === 'set-cookie2' || name.startsWith('access-control-')
}

/** Field names listed in `Connection` are hop-by-hop too (RFC 9110 §7.6.1). */
const NONE = new Set<string>()

function connectionListed(headers: { connection?: string | string[] | number | undefined }): Set<string> {
  const field = headers.connection
  // Several Connection fields (kept apart by copyHeaders) name headers alike.
  const v = Array.isArray(field) ? field.join(',') : field === undefined ? undefined : String(field)
  // The common values name no other header: skip the split.
  if (!v || v === 'keep-alive' || v === 'close' || v === 'Keep-Alive') return NONE
  return new Set(
    v
      .toLowerCase()
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  )
}

/** Copies raw header lines into a prototype-free object (a field named `__proto__` or `constructor` is just a field). */
export function copyHeaders(raw: string[], skip: (name: string) => boolean, into: OutgoingHttpHeaders): OutgoingHttpHeaders {
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase()
    if (skip(name)) continue
    const prev = Object.hasOwn(into, name) ? into[name] : undefined
    into[name] = prev === undefined ? raw[i + 1]! : Array.isArray(prev) ? [...prev, raw[i + 1]!] : [String(prev), raw[i + 1]!]
  }
  return into
}

/** The request's fields for the upstream: tokenward's own, then the browser's that may pass. */
export function outboundHeaders(o: ForwardOptions): OutgoingHttpHeaders {
  const listed = connectionListed(o.incoming.headers)
  // tokenward's own fields first: a server that keeps only the first N header
  // lines must never lose them to the browser's.
  const out = Object.create(null) as OutgoingHttpHeaders
  out.host = o.upstream.host
  if (o.authorization) out.authorization = o.authorization
  // Set, never appended: the browser's own X-Forwarded-* would be spoofable.
  if (o.forwarded.for) out['x-forwarded-for'] = o.forwarded.for
  out['x-forwarded-proto'] = o.forwarded.proto
  out['x-forwarded-host'] = o.forwarded.host
  out['x-request-id'] = o.requestId
  if (o.dpopProof) out.dpop = o.dpopProof
  if (o.traceHeaders) Object.assign(out, o.traceHeaders)
  const ours = new Set(Object.keys(out))
  copyHeaders(
    o.incoming.rawHeaders,
    (name) =>
      REQUEST_DROP.has(name) ||
      name.startsWith('proxy') ||
      listed.has(name) ||
      ours.has(name) ||
      (o.traceHeaders !== undefined && (name === 'traceparent' || name === 'tracestate')),
    out,
  )
  if (!o.hasBody) delete out['content-length']
  // A body without a length (the browser sent it chunked) must be framed for the
  // upstream too: Node adds no framing for GET, DELETE or OPTIONS by itself, and
  // the raw bytes would be read as a second request (request smuggling,
  // RFC 9112 §6.3, §11.2).
  else if (out['content-length'] === undefined) out['transfer-encoding'] = 'chunked'
  return out
}

/** The upstream's response headers as they may reach the browser; `all` is every field of `raw`, by lower-case name. */
export function inboundFrom(raw: string[], all: OutgoingHttpHeaders): OutgoingHttpHeaders {
  const listed = connectionListed(all)
  return copyHeaders(raw, (name) => dropResponseHeader(name) || listed.has(name), Object.create(null) as OutgoingHttpHeaders)
}
