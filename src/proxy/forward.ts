import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import { BffError } from '../errors.js'
import { cutShort } from '../http/body.js'
import { REPLAYABLE_METHODS } from '../protocol.js'
import { copyHeaders, inboundFrom, outboundHeaders } from './headers.js'
import { poolFor } from './pool.js'
import type { UpstreamTls } from '../tls/client-tls.js'
import { UploadBody, withBody } from './upload.js'

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
  /** TLS material for the upstream connection: the client certificate on an `mtls` route (RFC 8705), the CA bundle. */
  tls?: UpstreamTls | undefined
  /** W3C trace context of tokenward's upstream span; replaces the browser's when tracing is on. */
  traceHeaders?: Record<string, string> | undefined
  /** tokenward's id for this request (the browser's when well-formed), so logs correlate end to end. */
  requestId: string
  timeoutMs: number
  maxBodyBytes: number
  /** Whether the request body should be streamed (false for bodyless requests). */
  hasBody: boolean
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
    if (broken && !o.hasBody && REPLAYABLE_METHODS.has(o.method)) return send(o)
    throw err
  }
}

function send(o: ForwardOptions): Promise<UpstreamResponse> {
  return withBody(o, (body) => dispatch(o, body))
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

    poolFor(o.upstream, o.tls).dispatch(
      {
        origin: o.upstream.origin,
        path: o.path,
        method: o.method,
        headers: headers as Record<string, string | string[]>,
        body,
        blocking: false,
      },
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
            return fail(
              problem ??
                new BffError('upstream_unavailable', 'The upstream API could not be reached.', { cause: err, logDetail: err.message }),
            )
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
