import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { answerError, countRequest, noteSpan, openRequest, type RequestContext } from '../http/context.js'
import { logRequestError, socketError } from '../http/error-response.js'
import { serverSpan, tracingEnabled } from '../tracing.js'
import type { Deps } from '../types.js'
import { createProxyHandler } from './handler.js'
import { mapRequest } from './paths.js'
import { proxyWebSocket } from './websocket.js'

/**
 * The one entry for proxied traffic, straight on Node's request (no Hono app on
 * the hot path): every API call on a configured route and every WebSocket
 * handshake. It opens the request context (http/context.ts), and when tracing
 * is on, the server span around the whole request; the handler opens the
 * upstream span. Everything else is the Hono app's.
 */
export interface ProxyEntry {
  /** Serves a request on a configured route; false for any other request, which the app then serves. */
  request(incoming: IncomingMessage, outgoing: ServerResponse): boolean
  /** Serves an upgrade request (Node's `upgrade` event): a WebSocket handshake on a route, or a refusal. */
  upgrade(incoming: IncomingMessage, socket: Duplex, head: Buffer): void
}

export function createProxyEntry(deps: Deps): ProxyEntry {
  const proxy = createProxyHandler(deps)
  const { routes } = deps.config

  /**
   * Runs `serve` (which answers, refusals included) in the request's server
   * span when tracing is on, then counts the request with its `status`.
   */
  const served = (
    incoming: IncomingMessage,
    rc: RequestContext,
    route: string,
    serve: () => Promise<void>,
    status: () => number,
  ): Promise<void> => {
    const method = incoming.method ?? 'GET'
    const answered = tracingEnabled()
      ? serverSpan(incoming.headers, method, route, rc.requestId, serve, () => {
          noteSpan(rc)
          return { route, status: status() }
        })
      : serve()
    // Counted however serving ended, so the in-flight gauge comes back down.
    return answered.finally(() => countRequest(deps, rc, route, method, status()))
  }

  return {
    request(incoming, outgoing) {
      const match = mapRequest(routes, incoming.url ?? '/')
      // Paths that are no route, or refused ones, are the app's: it serves its
      // own endpoints first and refuses what is left (app.ts).
      if (match.kind !== 'route') return false
      const rc = openRequest(deps, incoming.headers, incoming.socket.remoteAddress, incoming.url)
      served(
        incoming,
        rc,
        match.route.prefix,
        () => proxy(incoming, outgoing, match, rc).catch((err: unknown) => answerError(rc, incoming, outgoing, err)),
        () => outgoing.statusCode,
      ).catch((err: unknown) => {
        // Answering failed too (the socket is gone): nothing left to tell anyone.
        rc.log.warn({ reason: err instanceof Error ? err.message : String(err) }, 'could not answer a proxied request')
        outgoing.destroy()
      })
      return true
    },

    upgrade(incoming, socket, head) {
      socket.on('error', () => socket.destroy())
      const match = mapRequest(routes, incoming.url ?? '/')
      const rc = openRequest(deps, incoming.headers, incoming.socket.remoteAddress, incoming.url)
      let status = 0
      served(
        incoming,
        rc,
        match.kind === 'route' ? match.route.prefix : 'other',
        () =>
          proxyWebSocket(deps, incoming, socket, head, match, rc).then(
            (s) => void (status = s),
            (err: unknown) => {
              logRequestError(rc.log, err, (incoming.url ?? '/').split('?')[0]!)
              status = socketError(socket, err, { 'x-request-id': rc.requestId })
            },
          ),
        () => status,
      ).catch(() => socket.destroy())
    },
  }
}
