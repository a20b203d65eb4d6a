import * as http from 'node:http'
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import * as https from 'node:https'
import { BffError } from '../errors.js'

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

/** Request fields tokenward sets or must never forward (BBA §6.1.1, SECURITY-CHECKLIST #52). */
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
])

/** Response fields that must not reach the browser (SECURITY-CHECKLIST #53). */
function dropResponseHeader(name: string): boolean {
  return HOP_BY_HOP.has(name) || name === 'set-cookie' || name === 'set-cookie2' || name.startsWith('access-control-')
}

/** Field names listed in `Connection` are hop-by-hop too (RFC 9110 §7.6.1). */
const NONE = new Set<string>()

function connectionListed(headers: IncomingHttpHeaders): Set<string> {
  const v = headers.connection
  // The common values name no other header: skip the split.
  if (!v || v === 'keep-alive' || v === 'close' || v === 'Keep-Alive') return NONE
  return new Set(v.toLowerCase().split(',').map((s) => s.trim()).filter(Boolean))
}

// Idle upstream connections are dropped after 4 s, before common server
// keep-alive timeouts (Node's 5 s) close them under a reused request.
const AGENT = { keepAlive: true, maxSockets: 512, maxFreeSockets: 64, scheduling: 'lifo', timeout: 4000 } as const
const agents = { http: new http.Agent(AGENT), https: new https.Agent(AGENT) }

export interface ForwardOptions {
  /** The route's upstream; only its origin is used. */
  upstream: URL
  /** Path and query on the upstream (from mapRequest). */
  path: string
  method: string
  incoming: IncomingMessage
  authorization: string | undefined
  forwarded: { for: string | undefined; proto: string; host: string }
  /** tokenward's DPoP proof for this request (RFC 9449 §7.1), when the token is DPoP-bound. */
  dpopProof?: string | undefined
  /** W3C trace context of tokenward's upstream span; replaces the browser's when tracing is on. */
  traceHeaders?: Record<string, string> | undefined
  /** tokenward's id for this request (the browser's when well-formed), so logs correlate end to end. */
  requestId: string
  timeoutMs: number
  maxBodyBytes: number
  /** Whether the request body should be streamed (false for bodyless requests). */
  hasBody: boolean
}

/** Copies raw header lines into a prototype-free object (a field named `__proto__` or `constructor` is just a field). */
function copyHeaders(raw: string[], skip: (name: string) => boolean, into: OutgoingHttpHeaders): OutgoingHttpHeaders {
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase()
    if (skip(name)) continue
    const prev = Object.hasOwn(into, name) ? into[name] : undefined
    into[name] = prev === undefined ? raw[i + 1]! : Array.isArray(prev) ? [...prev, raw[i + 1]!] : [String(prev), raw[i + 1]!]
  }
  return into
}

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
    (name) => REQUEST_DROP.has(name) || name.startsWith('proxy') || listed.has(name) || ours.has(name) || (o.traceHeaders !== undefined && (name === 'traceparent' || name === 'tracestate')),
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

export function inboundHeaders(res: IncomingMessage): OutgoingHttpHeaders {
  const listed = connectionListed(res.headers)
  return copyHeaders(res.rawHeaders, (name) => dropResponseHeader(name) || listed.has(name), Object.create(null) as OutgoingHttpHeaders)
}

/**
 * Sends the request upstream and resolves with the upstream response once its
 * headers arrived. The body streams with backpressure (bounded memory); the byte
 * limit is enforced while streaming, so chunked uploads are bounded too.
 */
/**
 * Sends the request upstream (see send). A bodyless request that failed on a
 * reused keep-alive connection the upstream had just closed is sent once more
 * on a fresh one: it never reached the upstream's application.
 */
export async function sendUpstream(o: ForwardOptions): Promise<IncomingMessage> {
  try {
    return await send(o)
  } catch (err) {
    const cause = err instanceof BffError ? (err.cause as (NodeJS.ErrnoException & { reusedSocket?: boolean }) | undefined) : undefined
    if (!o.hasBody && cause?.reusedSocket && (cause.code === 'ECONNRESET' || cause.code === 'EPIPE')) return send(o)
    throw err
  }
}

function send(o: ForwardOptions): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const { protocol, hostname, port } = o.upstream
    const isHttps = protocol === 'https:'
    // Plain options rather than a URL: Node would convert the URL on every call.
    const req = (isHttps ? https : http).request({
      protocol,
      // An IPv6 literal is bracketed in a URL, not in a host name.
      hostname: hostname.startsWith('[') ? hostname.slice(1, -1) : hostname,
      port,
      path: o.path,
      method: o.method,
      headers: outboundHeaders(o),
      agent: isHttps ? agents.https : agents.http,
      // Certificates are always verified (SECURITY-CHECKLIST #55): no rejectUnauthorized override.
    })
    let settled = false
    const fail = (err: BffError) => {
      if (settled) return
      settled = true
      req.destroy()
      reject(err)
    }
    const timer = setTimeout(
      () => fail(new BffError('upstream_timeout', 'The upstream API did not answer in time.', { logDetail: `timeout after ${o.timeoutMs} ms` })),
      o.timeoutMs,
    )
    req.on('response', (res) => {
      clearTimeout(timer)
      if (settled) {
        res.resume()
        return
      }
      settled = true
      resolve(res)
    })
    req.on('error', (err: NodeJS.ErrnoException & { reusedSocket?: boolean }) => {
      clearTimeout(timer)
      err.reusedSocket = req.reusedSocket
      fail(new BffError('upstream_unavailable', 'The upstream API could not be reached.', { cause: err, logDetail: err.message }))
    })

    if (!o.hasBody) {
      req.end()
      return
    }
    let bytes = 0
    o.incoming.on('data', (chunk: Buffer) => {
      bytes += chunk.length
      if (bytes > o.maxBodyBytes) {
        clearTimeout(timer)
        o.incoming.unpipe(req)
        fail(new BffError('payload_too_large', 'The request body is too large for this route.', { logDetail: `over ${o.maxBodyBytes} bytes` }))
        o.incoming.resume()
      }
    })
    o.incoming.on('aborted', () => fail(new BffError('invalid_request', 'The request body was cut short.', { logDetail: 'client aborted' })))
    o.incoming.pipe(req)
  })
}

/** Streams the upstream response to the browser, unbuffered (server-sent events arrive event by event). */
export function pipeResponse(res: IncomingMessage, outgoing: ServerResponse, extraHeaders: OutgoingHttpHeaders): void {
  outgoing.writeHead(res.statusCode ?? 502, { ...inboundHeaders(res), ...extraHeaders })
  if (typeof outgoing.flushHeaders === 'function' && /event-stream/.test(String(res.headers['content-type']))) outgoing.flushHeaders()
  res.pipe(outgoing)
  res.on('error', () => outgoing.destroy())
  res.on('aborted', () => outgoing.destroy())
  outgoing.on('close', () => {
    if (!res.complete) res.destroy()
  })
}
