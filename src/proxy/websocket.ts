import * as http from 'node:http'
import type { IncomingMessage } from 'node:http'
import * as https from 'node:https'
import type { Duplex } from 'node:stream'
import { BffError } from '../errors.js'
import { requester } from '../http/audit.js'
import type { RequestContext } from '../http/context.js'
import { endSocket } from '../http/error-response.js'
import { csrfProblem, refuseCsrf } from '../middleware/csrf.js'
import { routeSession } from '../middleware/session.js'
import { watchSession } from '../lifecycle/watch.js'
import { traceHeaders, tracingEnabled } from '../tracing.js'
import type { Deps } from '../types.js'
import { upstreamCredentials } from './credentials.js'
import { outboundHeaders } from './headers.js'
import type { RouteMatch } from './paths.js'

/**
 * WebSocket proxying on routes with `"websocket": true`, for one handshake the
 * proxy entry (entry.ts) received. A browser cannot send the X-CSRF header on
 * a WebSocket, so the handshake is guarded by an exact Origin match instead
 * and by Fetch Metadata (middleware/csrf.ts, rule `websocket`). The session
 * cookie authenticates it, the upstream gets the bearer token, and the
 * connection is closed when the session ends. Resolves with the status the
 * browser got (101, or the upstream's refusal); refusals before that are thrown.
 */
export async function proxyWebSocket(
  deps: Deps,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  match: RouteMatch,
  rc: RequestContext,
): Promise<number> {
  const { config } = deps
  // As for HTTP: a path that escapes its prefix or falls under another route once normalised.
  if (match.kind === 'refused') throw new BffError('invalid_request', 'The request path is not allowed.', { logDetail: match.reason })
  if (match.kind !== 'route' || !match.route.websocket || (req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
    throw new BffError('not_found', 'No WebSocket is served at this path.')
  }
  const { route, target } = match
  const csrf = csrfProblem(req.headers, config.publicOrigin, 'websocket')
  if (csrf)
    refuseCsrf(deps, rc.log, 'websocket', csrf, {
      ...requester(rc.client.client, req.headers['user-agent']),
      outcome: 'failure',
      path: route.prefix,
    })

  let session = await routeSession(deps, route.token, req.headers.cookie, rc.log, requester(rc.client.client, req.headers['user-agent']))
  const credentials = await upstreamCredentials(deps, route, session, { method: 'GET', target })
  session = credentials.session
  const { authorization, dpopProof } = credentials

  const headers = outboundHeaders({
    upstream: route.upstream,
    path: match.path,
    method: 'GET',
    incoming: req,
    authorization,
    client: rc.client.client,
    forwarded: { for: rc.client.forwardedFor, proto: config.publicUrl.protocol.slice(0, -1), host: config.publicUrl.host },
    requestId: rc.requestId,
    dpopProof,
    traceHeaders: tracingEnabled() ? traceHeaders() : undefined,
    timeoutMs: route.timeoutMs,
    maxBodyBytes: 0,
    hasBody: false,
  })
  // outboundHeaders drops hop-by-hop fields; the handshake needs these two back
  // (RFC 6455 §4.1); the Sec-WebSocket-* fields are end-to-end and pass as sent.
  headers.connection = 'Upgrade'
  headers.upgrade = 'websocket'

  const isHttps = target.protocol === 'https:'
  // On an `mtls` route the handshake presents tokenward's client certificate too (RFC 8705).
  const tls = isHttps ? deps.tls?.upstream(route.mtls === true) : undefined
  const upstreamReq = (isHttps ? https : http).request(target, {
    method: 'GET',
    headers,
    ...(tls?.cert ? { cert: tls.cert, key: tls.key } : {}),
    ...(tls?.ca ? { ca: [...tls.ca] } : {}),
  })
  const timer = setTimeout(() => upstreamReq.destroy(new Error('timeout')), route.timeoutMs)

  return new Promise<number>((resolve, reject) => {
    upstreamReq.on('error', (err) => {
      clearTimeout(timer)
      reject(new BffError('upstream_unavailable', 'The upstream API could not be reached.', { cause: err, logDetail: err.message }))
    })
    upstreamReq.on('response', (res) => {
      // The upstream refused the upgrade: its status goes back, its body does not.
      clearTimeout(timer)
      res.resume()
      const status = res.statusCode ?? 502
      endSocket(socket, status, {})
      resolve(status)
    })
    upstreamReq.on('upgrade', (res, upstream, upstreamHead) => {
      clearTimeout(timer)
      const lines = [`HTTP/1.1 101 Switching Protocols`]
      for (let i = 0; i < res.rawHeaders.length; i += 2) {
        const name = res.rawHeaders[i]!.toLowerCase()
        // Never a cookie from the upstream (security model S44).
        if (name === 'set-cookie' || name.startsWith('access-control-')) continue
        lines.push(`${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}`)
      }
      socket.write(`${lines.join('\r\n')}\r\n\r\n`)
      if (upstreamHead.length > 0) socket.write(upstreamHead)
      if (head.length > 0) upstream.write(head)
      upstream.on('error', () => socket.destroy())
      socket.on('error', () => upstream.destroy())
      upstream.pipe(socket).on('close', () => upstream.destroy())
      socket.pipe(upstream).on('close', () => socket.destroy())
      upstream.on('close', () => socket.destroy())
      socket.on('close', () => upstream.destroy())
      // Upgraded sockets are no longer the HTTP server's: end them at shutdown.
      const stopOnClose = deps.events.onClose(() => socket.destroy())
      socket.once('close', stopOnClose)
      if (session) {
        const live = session
        watchSession(deps, live, (reason) => {
          rc.log.info({ sid: live.sid, reason }, 'closing websocket: the session ended')
          socket.destroy()
          upstream.destroy()
        }).then(
          (stop) => socket.once('close', stop),
          () => socket.destroy(),
        )
      }
      resolve(101)
    })
    upstreamReq.end()
  })
}
