import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
// undici: Node's own HTTP/1.1 client (the engine under its fetch), used
// directly through its dispatcher API, which streams both ways with
// backpressure at a fraction of http.request's per-request cost (the steady
// benchmark measured about 20 µs less CPU per proxied call; bench/README.md).
import { Pool } from 'undici'
import { BffError, RequestTimeoutError } from '../errors.js'

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
  return new Set(v.toLowerCase().split(',').map((s) => s.trim()).filter(Boolean))
}

/**
 * One connection pool per upstream origin. Idle connections are dropped after
 * 4 s (or sooner when the upstream's Keep-Alive header says so), before common
 * server keep-alive timeouts (Node's 5 s) close them under a reused request.
 * Certificates are always verified (security model S47): no
 * rejectUnauthorized override. Timeouts are per request (headersTimeout);
 * bodies may stream for as long as they last (event streams, downloads).
 */
const pools = new Map<string, Pool>()
const POOL_CONNECTIONS = 512

function poolFor(upstream: URL): Pool {
  let pool = pools.get(upstream.origin)
  if (!pool) {
    pool = new Pool(upstream.origin, { connections: POOL_CONNECTIONS, keepAliveTimeout: 4000, keepAliveMaxTimeout: 4000, bodyTimeout: 0, headersTimeout: 0 })
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
  /** The client's address (through trusted proxies): what streaming uploads are counted against. */
  client: string | undefined
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

/*
 * Request bodies and the upstream's connections. A pooled upstream connection
 * is taken when a request is dispatched and held until the upstream answered,
 * so a body that arrives slowly would hold one for as long as it trickles: a
 * few hundred slow clients could take every connection of a pool and stall
 * every other user of that upstream (slowloris against the pool). Hence:
 *
 * - A body of declared length up to BUFFER_MAX (never above the route's
 *   maxBodyBytes) is received whole before a connection is taken, within the
 *   route's timeoutMs (else 408, connection closed). The bytes held this way,
 *   process-wide, are bounded by BUFFER_BUDGET (counted by declared length,
 *   from the first byte read until the upstream answered).
 * - Any other body (larger, chunked, or one that does not fit in the budget)
 *   streams. At most STREAMS_PER_CLIENT of them per client address and
 *   STREAMS_PER_UPSTREAM per upstream origin (a quarter of its pool, so the
 *   rest always serves requests whose bodies are in hand) are under way at
 *   once; beyond that, 429 with Retry-After. A streaming body that sends
 *   nothing for idleMs() is cut (408, connection closed), and the upstream
 *   never receives it complete.
 *
 * Over the budget a body streams rather than being refused: it then competes
 * for the bounded streaming share, so memory stays bounded, the pool's other
 * three quarters stay free, and an upload still goes through while an attacker
 * holds the budget.
 */
const BUFFER_MAX = 1024 * 1024
const BUFFER_BUDGET = 32 * 1024 * 1024
const STREAMS_PER_CLIENT = 8
const STREAMS_PER_UPSTREAM = POOL_CONNECTIONS / 4
const STREAM_IDLE_MS = 10_000
/** Seconds a refused upload is told to wait: about the time a stalled stream is cut after. */
const STREAM_RETRY_AFTER = 10

/** Bytes reserved (by declared length) by bodies being received whole or waiting for the upstream. */
let buffered = 0
const streamsByClient = new Map<string, number>()
const streamsByUpstream = new Map<string, number>()

/**
 * How long a streaming body may send nothing: 10 s, or a third of the route's
 * timeout when that is shorter, so that a stalled body is cut (and says so)
 * well before the route's timeout would answer 504 for it.
 */
function idleMs(timeoutMs: number): number {
  return Math.min(STREAM_IDLE_MS, Math.ceil(timeoutMs / 3))
}

const cutShort = () => new BffError('invalid_request', 'The request body was cut short.', { logDetail: 'client aborted' })
const tooLarge = (max: number) => new BffError('payload_too_large', 'The request body is too large for this route.', { logDetail: `over ${max} bytes` })

/**
 * A body of declared length received whole, within `deadlineMs`. Node's parser
 * delivers exactly the declared length (RFC 9112 §6.2), which the caller
 * bounded; the bytes go into one buffer of that length, so however finely the
 * client splits them, the memory held is the length it declared.
 */
function readBody(incoming: IncomingMessage, length: number, deadlineMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let body: Buffer | undefined
    let received = 0
    const onData = (c: Buffer) => {
      if (received === 0 && c.length === length) {
        // Usually the whole body is one chunk: kept as it is, not copied.
        body = c
        received = length
      } else {
        body ??= Buffer.allocUnsafe(length)
        received += c.copy(body, received)
      }
    }
    // Usually the whole body came with the headers: then there is nothing to wait for.
    const timer = incoming.complete
      ? undefined
      : setTimeout(() => {
          // Stop reading: the answer closes the connection rather than drain the rest.
          incoming.pause()
          incoming.removeListener('data', onData)
          reject(new RequestTimeoutError(undefined, { logDetail: `body not received within ${deadlineMs} ms` }))
        }, deadlineMs)
    const cut = () => {
      clearTimeout(timer)
      reject(cutShort())
    }
    incoming.on('data', onData)
    incoming.once('end', () => {
      clearTimeout(timer)
      if (incoming.complete && received === length) resolve(body!)
      else cut()
    })
    incoming.once('error', cut)
    incoming.once('close', () => incoming.complete || cut())
  })
}

/**
 * A streaming request body as undici reads it: the browser's body, counted
 * against the route's bound while it streams, cut when it stalls, and never
 * complete for the upstream unless it was complete from the browser. Reading
 * starts when undici first reads (the connection is there), and backpressure
 * passes through: the browser's socket is paused while the upstream's is full.
 * Destroying it (the request failed, or ended) releases its streaming slot.
 */
class UploadBody extends Readable {
  /** Why tokenward cut the body, when it did. */
  problem: BffError | undefined
  readonly #incoming: IncomingMessage
  readonly #max: number
  readonly #idleMs: number
  readonly #release: () => void
  #bytes = 0
  #idle: NodeJS.Timeout | undefined
  /** Paused by backpressure from the upstream: waiting on it, not on the browser. */
  #paused = false

  constructor(incoming: IncomingMessage, max: number, idleAfterMs: number, release: () => void) {
    super()
    this.#incoming = incoming
    this.#max = max
    this.#idleMs = idleAfterMs
    this.#release = release
    // A browser that leaves while its request waits for a connection frees its slot at once.
    incoming.on('end', this.#onEnd).on('error', this.#onBroken).on('close', this.#onBroken)
    if (incoming.destroyed) this.#onBroken()
  }

  override _read(): void {
    this.#paused = false
    if (this.#idle) {
      this.#idle.refresh()
    } else {
      // The first read: the upstream connection is there; the browser's body flows from now.
      this.#idle = setTimeout(this.#onIdle, this.#idleMs).unref()
      this.#incoming.on('data', this.#onData)
    }
    this.#incoming.resume()
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    clearTimeout(this.#idle)
    const incoming = this.#incoming
    incoming.removeListener('data', this.#onData).removeListener('end', this.#onEnd).removeListener('error', this.#onBroken).removeListener('close', this.#onBroken)
    // A body tokenward cut is not read further (the answer closes the
    // connection); otherwise what is left is read and dropped, as Node itself
    // does with a body nobody read, so the connection stays usable.
    if (this.problem && !incoming.complete) incoming.pause()
    else incoming.resume()
    this.#release()
    callback(err)
  }

  #cut(err: BffError): void {
    this.problem ??= err
    this.destroy(err)
  }

  readonly #onData = (chunk: Buffer): void => {
    this.#bytes += chunk.length
    if (this.#bytes > this.#max) return this.#cut(tooLarge(this.#max))
    this.#idle!.refresh()
    if (!this.push(chunk)) {
      this.#paused = true
      this.#incoming.pause()
    }
  }

  readonly #onEnd = (): void => {
    clearTimeout(this.#idle)
    // A body cut short (the browser went away) must not reach the upstream as complete.
    if (this.#incoming.complete) this.push(null)
    else this.#cut(cutShort())
  }

  readonly #onBroken = (): void => {
    if (!this.#incoming.complete) this.#cut(cutShort())
  }

  readonly #onIdle = (): void => {
    if (this.#paused) return void this.#idle!.refresh()
    this.#cut(new RequestTimeoutError(undefined, { logDetail: `request body idle for ${this.#idleMs} ms` }))
  }
}

function count(map: Map<string, number>, key: string, by: 1 | -1): void {
  const n = (map.get(key) ?? 0) + by
  if (n > 0) map.set(key, n)
  else map.delete(key)
}

/** A streaming body for `o`, or a 429 when its client or its upstream has too many under way. */
function streamedBody(o: ForwardOptions): UploadBody {
  const client = o.client ?? ''
  const origin = o.upstream.origin
  if ((streamsByClient.get(client) ?? 0) >= STREAMS_PER_CLIENT || (streamsByUpstream.get(origin) ?? 0) >= STREAMS_PER_UPSTREAM) {
    // RFC 6585 §4: too many requests, with how long to wait.
    throw new BffError('rate_limited', 'Too many uploads are under way; try again shortly.', {
      retryAfter: STREAM_RETRY_AFTER,
      logDetail: (streamsByClient.get(client) ?? 0) >= STREAMS_PER_CLIENT ? `over ${STREAMS_PER_CLIENT} streaming uploads from ${client}` : `over ${STREAMS_PER_UPSTREAM} streaming uploads to ${origin}`,
    })
  }
  count(streamsByClient, client, 1)
  count(streamsByUpstream, origin, 1)
  return new UploadBody(o.incoming, o.maxBodyBytes, idleMs(o.timeoutMs), () => {
    count(streamsByClient, client, -1)
    count(streamsByUpstream, origin, -1)
  })
}

function send(o: ForwardOptions): Promise<UpstreamResponse> {
  if (!o.hasBody) return dispatch(o, null)
  const declared = o.incoming.headers['transfer-encoding'] === undefined ? Number(o.incoming.headers['content-length']) : Infinity
  if (declared <= Math.min(BUFFER_MAX, o.maxBodyBytes) && buffered + declared <= BUFFER_BUDGET) {
    buffered += declared
    const settled = () => void (buffered -= declared)
    const answered = readBody(o.incoming, declared, o.timeoutMs).then((body) => dispatch(o, body))
    answered.then(settled, settled)
    return answered
  }
  try {
    return dispatch(o, streamedBody(o))
  } catch (err) {
    return Promise.reject(err)
  }
}

/**
 * The request and response, through undici's dispatcher handler interface:
 * the request body is a buffer received whole, or streams from the browser's
 * request (an UploadBody), the response body to the browser's response, each
 * side's backpressure pausing the other.
 */
function dispatch(o: ForwardOptions, body: Buffer | UploadBody | null): Promise<UpstreamResponse> {
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
    let clientGone = false
    /** How the body ended before a sink was chosen (an empty body ends at once). */
    let ended: 'complete' | 'broken' | undefined
    const pending: Buffer[] = []
    const upload = body instanceof UploadBody ? body : undefined
    const fail = (err: BffError) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      // Never read (queued) or cut midway: its streaming slot is free again.
      upload?.destroy()
      reject(err)
    }
    const timer = setTimeout(() => {
      fail(new BffError('upstream_timeout', 'The upstream API did not answer in time.', { logDetail: `timeout after ${o.timeoutMs} ms` }))
      abort?.()
    }, o.timeoutMs)
    // A body cut before the upstream answered (too large, stalled, the browser
    // gone), also while the request still waits for a connection: the request
    // ends with the body's reason and the upstream never gets it complete.
    upload?.on('error', (err) => {
      if (settled) return
      fail(upload.problem ?? (err instanceof BffError ? err : cutShort()))
      abort?.()
    })

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
          // An upstream that answered before it read all of the body gets no more of it.
          upload?.destroy()
          if (sink === undefined) ended = 'complete'
          else sink?.end()
        },
        onError(err: Error) {
          clearTimeout(timer)
          upload?.destroy()
          if (!settled) {
            // The body's own problem (too large, stalled, cut short) whatever undici made of it.
            const problem = upload?.problem ?? (err instanceof BffError ? err : undefined)
            return fail(problem ?? new BffError('upstream_unavailable', 'The upstream API could not be reached.', { cause: err, logDetail: err.message }))
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
