import type { IncomingMessage } from 'node:http'
import { Readable } from 'node:stream'
import { BffError, RequestTimeoutError } from '../errors.js'
import { cutShort } from '../http/body.js'
import { ConcurrencyLimit } from '../middleware/rate-limit.js'
import type { ForwardOptions } from './forward.js'
import { POOL_CONNECTIONS } from './pool.js'

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
const streamsByClient = new ConcurrencyLimit(STREAMS_PER_CLIENT)
const streamsByUpstream = new ConcurrencyLimit(STREAMS_PER_UPSTREAM)

/**
 * How long a streaming body may send nothing: 10 s, or a third of the route's
 * timeout when that is shorter, so that a stalled body is cut (and says so)
 * well before the route's timeout would answer 504 for it.
 */
function idleMs(timeoutMs: number): number {
  return Math.min(STREAM_IDLE_MS, Math.ceil(timeoutMs / 3))
}

const tooLarge = (max: number) =>
  new BffError('payload_too_large', 'The request body is too large for this route.', { logDetail: `over ${max} bytes` })

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
export class UploadBody extends Readable {
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
    incoming
      .removeListener('data', this.#onData)
      .removeListener('end', this.#onEnd)
      .removeListener('error', this.#onBroken)
      .removeListener('close', this.#onBroken)
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

/** A streaming body for `o`, or a 429 when its client or its upstream has too many under way. */
function streamedBody(o: ForwardOptions): UploadBody {
  const client = o.client ?? ''
  const origin = o.upstream.origin
  if (streamsByClient.full(client) || streamsByUpstream.full(origin)) {
    // RFC 6585 §4: too many requests, with how long to wait.
    throw new BffError('rate_limited', 'Too many uploads are under way; try again shortly.', {
      retryAfter: STREAM_RETRY_AFTER,
      logDetail: streamsByClient.full(client)
        ? `over ${STREAMS_PER_CLIENT} streaming uploads from ${client}`
        : `over ${STREAMS_PER_UPSTREAM} streaming uploads to ${origin}`,
    })
  }
  const releaseClient = streamsByClient.take(client)
  const releaseUpstream = streamsByUpstream.take(origin)
  return new UploadBody(o.incoming, o.maxBodyBytes, idleMs(o.timeoutMs), () => {
    releaseClient()
    releaseUpstream()
  })
}

/**
 * Sends `o` with its body, as `dispatch` takes it: none, a buffer received
 * whole within the route's timeout (its bytes reserved until the upstream
 * answered), or a bounded stream (see above).
 */
export function withBody<T>(o: ForwardOptions, dispatch: (body: Buffer | UploadBody | null) => Promise<T>): Promise<T> {
  if (!o.hasBody) return dispatch(null)
  const declared = o.incoming.headers['transfer-encoding'] === undefined ? Number(o.incoming.headers['content-length']) : Infinity
  if (declared <= Math.min(BUFFER_MAX, o.maxBodyBytes) && buffered + declared <= BUFFER_BUDGET) {
    buffered += declared
    const settled = () => void (buffered -= declared)
    const answered = readBody(o.incoming, declared, o.timeoutMs).then((body) => dispatch(body))
    answered.then(settled, settled)
    return answered
  }
  try {
    return dispatch(streamedBody(o))
  } catch (err) {
    // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- dispatch's own throw, passed on unchanged as an async function would
    return Promise.reject(err)
  }
}
