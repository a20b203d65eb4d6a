import { randomUUID } from 'node:crypto'
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import type { ClientAddress } from '../client-address.js'
import { lazyChild, traceIds, type Logger, type TraceIds } from '../log.js'
import { methodLabel, statusClass } from '../metrics.js'
import { ENDPOINTS } from '../protocol.js'
import type { Deps } from '../types.js'
import { logRequestError, writeError } from './error-response.js'

/**
 * The request context every request gets, whichever entry it came through (the
 * proxy's raw-Node entry or the Hono app): its id, a logger that names it, the
 * client's address, the request metric, and the error writer.
 */
export interface RequestContext {
  /** The caller's `X-Request-Id` when well-formed (so logs correlate end to end), else a new one. */
  readonly requestId: string
  /** A child logger bound to the request id, created on first use (most requests log nothing). */
  readonly log: Logger
  /** The client's address: the socket peer, or what trusted proxies say (client-address.ts). */
  readonly client: ClientAddress
  /** performance.now() when the request was opened, for the request-duration histogram. */
  readonly started: number
  /** The request target's path, without the query (which may carry secrets), for the access log. */
  readonly path: string
  /** The server span's ids, once known (tracing on), for the access log written after the span ended. */
  trace: TraceIds | undefined
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** The caller's `X-Request-Id` when it is well-formed, else undefined. */
export function requestIdFrom(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' && REQUEST_ID.test(value) ? value : undefined
}

/** Opens the context of one request from Node's parsed request line and headers. */
export function openRequest(
  deps: Pick<Deps, 'logger' | 'clientAddress' | 'metrics'>,
  headers: IncomingHttpHeaders,
  peer: string | undefined,
  target: string | undefined,
): RequestContext {
  const requestId = requestIdFrom(headers['x-request-id']) ?? randomUUID()
  deps.metrics.requestsInFlight.inc()
  return {
    requestId,
    log: lazyChild(deps.logger, { requestId }),
    client: deps.clientAddress(peer, headers),
    started: performance.now(),
    path: (target ?? '/').split('?')[0]!,
    trace: undefined,
  }
}

/** Called inside the request's server span: remembers its ids for the access log. */
export function noteSpan(rc: RequestContext): void {
  rc.trace = traceIds()
}

/**
 * Counts one answered request, once per openRequest: `route` is a route prefix
 * or a tokenward endpoint (routeLabel), the method one of a fixed set, so every
 * label stays bounded.
 */
export function countRequest(
  deps: Pick<Deps, 'metrics' | 'config'>,
  rc: RequestContext,
  route: string,
  method: string,
  status: number,
): void {
  const m = methodLabel(method)
  const seconds = (performance.now() - rc.started) / 1000
  deps.metrics.requestsInFlight.dec()
  deps.metrics.requests.inc({ route, method: m, status })
  deps.metrics.requestDuration.observe({ route, method: m, status_class: statusClass(status) }, seconds)
  if (deps.config.accessLog) {
    rc.log.info(
      {
        access: true,
        method,
        route,
        path: rc.path,
        status,
        duration_ms: Math.round(seconds * 1e6) / 1e3,
        client: rc.client.client,
        ...rc.trace,
      },
      'request',
    )
  }
}

/** A bounded metrics label for a request that is not proxied (the proxy labels by its route prefix). */
export function routeLabel(path: string): string {
  return ENDPOINTS.has(path) ? path : 'other'
}

/**
 * Whether an answer must close the connection: the request's body is still
 * arriving (a refusal, an endpoint that reads no body). Node would otherwise
 * read and drop the rest to keep the connection alive, however large it is
 * declared to be, spending bandwidth and CPU on a request already answered
 * (RFC 9112 §9.6, §9.3; RFC 9110 §7.6.1).
 */
export function mustClose(incoming: IncomingMessage | undefined): boolean {
  return incoming !== undefined && !incoming.complete
}

/**
 * Answers a request that failed on Node's response: logged, then the error in
 * the contract's JSON with the request id, or, when the answer had already
 * begun, the connection cut (the browser must not take a partial answer for a
 * whole one).
 */
export function answerError(rc: RequestContext, incoming: IncomingMessage, outgoing: ServerResponse, err: unknown): void {
  logRequestError(rc.log, err, (incoming.url ?? '/').split('?')[0]!)
  if (outgoing.headersSent) {
    outgoing.destroy()
    return
  }
  writeError(outgoing, err, mustClose(incoming) ? { 'x-request-id': rc.requestId, connection: 'close' } : { 'x-request-id': rc.requestId })
}
