import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
// undici: Node's own HTTP/1.1 client (the engine under its fetch), used
// directly through its dispatcher API, which streams both ways with
// backpressure at a fraction of http.request's per-request cost (the steady
// benchmark measured about 20 µs less CPU per proxied call; bench/README.md).
import { Pool } from 'undici'
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

/** Response fields that must not reach the browser (SECURITY-CHECKLIST #53). */
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
  return new Set(v.toLowerCase().split(',').map((s) => s.trim()).filter(Boolean))
}

/**
 * One connection pool per upstream origin. Idle connections are dropped after
 * 4 s (or sooner when the upstream's Keep-Alive header says so), before common
 * server keep-alive timeouts (Node's 5 s) close them under a reused request.
 * Certificates are always verified (SECURITY-CHECKLIST #55): no
 * rejectUnauthorized override. Timeouts are per request (headersTimeout);
 * bodies may stream for as long as they last (event streams, downloads).
 */
const pools = new Map<string, Pool>()

function poolFor(upstream: URL): Pool {
  let pool = pools.get(upstream.origin)
  if (!pool) {
    pool = new Pool(upstream.origin, { connections: 512, keepAliveTimeout: 4000, keepAliveMaxTimeout: 4000, bodyTimeout: 0, headersTimeout: 0 })
    pools.set(upstream.origin, pool)
  }
  return pool
}

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

/** The upstream's response headers as they may reach the browser; `all` is every field of `raw`, by lower-case name. */
function inboundFrom(raw: string[], all: OutgoingHttpHeaders): OutgoingHttpHeaders {
  const listed = connectionListed(all)
  return copyHeaders(raw, (name) => dropResponseHeader(name) || listed.has(name), Object.create(null) as OutgoingHttpHeaders)
}

/**
 * The upstream's answer once its headers arrived. Its body waits (the
 * connection is paused) until the caller either streams it to the browser or
 * discards it (a retry), so nothing is buffered beyond what the socket holds.
 */
export interface UpstreamResponse {
  readonly statusCode: number
  /** Lower-cased names; repeated fields as arrays (for reading challenges). */
  readonly headers: Readonly<Record<string, string | string[]>>
  /** Streams the body to the browser with the upstream's headers (minus ours) and `extraHeaders`. */
  pipe(outgoing: ServerResponse, extraHeaders: OutgoingHttpHeaders): void
  /** Reads and drops the body (the connection goes back to the pool). */
  discard(): void
}

/** Methods a client may send again after a broken connection (RFC 9110 §9.2.2). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'DELETE'])

/**
 * Sends the request upstream (see send). A bodyless idempotent request whose
 * connection broke before an answer (typically a keep-alive connection the
 * upstream closed just as it was reused) is sent once more on a fresh one
 * (RFC 9110 §9.2.2 allows it; §9.3.1: nothing else is retried).
 */
export async function sendUpstream(o: ForwardOptions): Promise<UpstreamResponse> {
  try {
    return await send(o)
  } catch (err) {
    const cause = err instanceof BffError ? (err.cause as { code?: string } | undefined) : undefined
    const broken = cause?.code === 'UND_ERR_SOCKET' || cause?.code === 'ECONNRESET' || cause?.code === 'EPIPE'
    if (broken && !o.hasBody && IDEMPOTENT.has(o.method)) return send(o)
    throw err
  }
}

/** Declared bodies up to this size are read whole first: cheaper to send than a stream. */
const SMALL_BODY = 64 * 1024

/** A small body of declared length, read whole (the memory is bounded by SMALL_BODY). */
function readBody(incoming: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    const cut = () => reject(new BffError('invalid_request', 'The request body was cut short.', { logDetail: 'client aborted' }))
    incoming.on('data', (c: Buffer) => chunks.push(c))
    incoming.once('end', () => (incoming.complete ? resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)) : cut()))
    incoming.once('error', cut)
    incoming.once('close', () => incoming.complete || cut())
  })
}

function send(o: ForwardOptions): Promise<UpstreamResponse> {
  const declared = o.hasBody && o.incoming.headers['transfer-encoding'] === undefined
  if (declared && Number(o.incoming.headers['content-length']) <= SMALL_BODY) return readBody(o.incoming).then((body) => dispatch(o, body))
  return dispatch(o, undefined)
}

/**
 * The request and response, through undici's dispatcher handler interface:
 * the request body streams from the browser's request (bounded while it
 * streams, so chunked uploads are bounded too), the response body to the
 * browser's response, each side's backpressure pausing the other.
 */
function dispatch(o: ForwardOptions, whole: Buffer | undefined): Promise<UpstreamResponse> {
  return new Promise((resolve, reject) => {
    const headers = outboundHeaders(o)
    // undici frames a body of unknown length (chunked) itself and refuses the
    // header; Expect was answered by tokenward's own server already.
    delete headers['transfer-encoding']
    delete headers.expect
    let abort: ((err?: Error) => void) | undefined
    let resume: (() => void) | undefined
    /** Where the body goes: the browser's response, null to discard it, undefined while undecided. */
    let sink: ServerResponse | null | undefined
    let settled = false
    let tooLarge = false
    let clientGone = false
    /** How the body ended before a sink was chosen (an empty body ends at once). */
    let ended: 'complete' | 'broken' | undefined
    const pending: Buffer[] = []
    const fail = (err: BffError) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      reject(err)
    }
    const timer = setTimeout(() => {
      fail(new BffError('upstream_timeout', 'The upstream API did not answer in time.', { logDetail: `timeout after ${o.timeoutMs} ms` }))
      abort?.()
    }, o.timeoutMs)

    let body: Readable | Buffer | null = null
    if (whole) body = whole
    else if (o.hasBody && o.incoming.headers['transfer-encoding'] === undefined) {
      // A declared length: Node's parser delivers exactly that many bytes (and
      // the route's limit was checked against it), so the request streams as it is.
      body = o.incoming
    } else if (o.hasBody) {
      const incoming = o.incoming
      const max = o.maxBodyBytes
      body = Readable.from(async function* limited() {
        let bytes = 0
        for await (const chunk of incoming as AsyncIterable<Buffer>) {
          bytes += chunk.length
          if (bytes > max) {
            tooLarge = true
            throw new BffError('payload_too_large', 'The request body is too large for this route.', { logDetail: `over ${max} bytes` })
          }
          yield chunk
        }
        // A body cut short (the browser went away) must not reach the upstream as complete.
        if (!incoming.complete) throw new BffError('invalid_request', 'The request body was cut short.', { logDetail: 'client aborted' })
      }(), { objectMode: false })
    }

    const startSink = (out: ServerResponse | null) => {
      sink = out
      const held = pending.splice(0)
      if (out) {
        out.on('drain', () => resume?.())
        out.on('close', () => {
          if (!out.writableFinished) {
            clientGone = true
            abort?.()
          }
        })
        for (const chunk of held) out.write(chunk)
      }
      if (ended === 'complete') out?.end()
      else if (ended === 'broken') out?.destroy()
      else resume?.()
    }

    poolFor(o.upstream).dispatch(
      { origin: o.upstream.origin, path: o.path, method: o.method, headers: headers as Record<string, string | string[]>, body, blocking: false },
      {
        onConnect(abortRequest: (err?: Error) => void) {
          abort = abortRequest
          if (settled) abortRequest()
        },
        onHeaders(statusCode: number, rawHeaders: Buffer[], resumeResponse: () => void): boolean {
          if (statusCode < 200) return true // 1xx: informational, the real answer follows
          resume = resumeResponse
          clearTimeout(timer)
          if (settled) return false
          settled = true
          const raw = rawHeaders.map((b) => b.toString('latin1'))
          const view = copyHeaders(raw, () => false, Object.create(null) as OutgoingHttpHeaders) as Record<string, string | string[]>
          resolve({
            statusCode,
            headers: view,
            pipe(outgoing, extraHeaders) {
              outgoing.writeHead(statusCode, { ...inboundFrom(raw, view), ...extraHeaders })
              // Event streams arrive event by event: send the headers now, not with the first event.
              if (/event-stream/.test(String(view['content-type']))) outgoing.flushHeaders()
              startSink(outgoing)
            },
            discard() {
              startSink(null)
            },
          })
          // Paused until the caller chose where the body goes.
          return false
        },
        onData(chunk: Buffer): boolean {
          if (sink === undefined) {
            pending.push(chunk)
            return false
          }
          return sink === null || sink.write(chunk)
        },
        onComplete() {
          if (sink === undefined) ended = 'complete'
          else sink?.end()
        },
        onError(err: Error) {
          clearTimeout(timer)
          if (!settled) {
            if (tooLarge || err instanceof BffError) return fail(err instanceof BffError ? err : new BffError('payload_too_large', 'The request body is too large for this route.'))
            return fail(new BffError('upstream_unavailable', 'The upstream API could not be reached.', { cause: err, logDetail: err.message }))
          }
          // The body broke off midway (or the browser left): the browser must not
          // take a truncated body for a complete one.
          if (sink === undefined) ended = 'broken'
          else if (sink && !clientGone) sink.destroy()
        },
      },
    )
  })
}
