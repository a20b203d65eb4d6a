import { randomUUID } from 'node:crypto'
import * as http from 'node:http'
import type { IncomingMessage } from 'node:http'
import * as https from 'node:https'
import { STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import { BffError, toErrorResponse } from '../errors.js'
import { handleFromCookies } from '../http.js'
import { audit } from '../log.js'
import type { Session } from '../session/sessions.js'
import { watchSession } from '../lifecycle/watch.js'
import type { Deps } from '../types.js'
import { upstreamCredentials } from './credentials.js'
import { outboundHeaders } from './forward.js'
import { mapRequest } from './paths.js'

function refuse(socket: Duplex, err: unknown): void {
  const { status, body } = toErrorResponse(err)
  const json = JSON.stringify(body)
  // Destroyed once written: a client that never closes its side must not keep
  // the socket (and a graceful shutdown) waiting.
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(json)}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n${json}`,
    () => socket.destroy(),
  )
}

/**
 * WebSocket proxying on routes with `"websocket": true`. A browser cannot send
 * the X-CSRF header on a WebSocket, so the handshake is guarded by an exact
 * Origin match instead (cross-site WebSocket hijacking; RFC 6455 §10.2) and by
 * Fetch Metadata. The session cookie authenticates it, the upstream gets the
 * bearer token, and the connection is closed when the session ends.
 */
export function handleUpgrade(deps: Deps, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  socket.on('error', () => socket.destroy())
  upgrade(deps, req, socket, head).catch((err: unknown) => {
    if (!(err instanceof BffError)) deps.logger.error({ reason: (err as Error).message }, 'websocket upgrade failed')
    refuse(socket, err)
  })
}

async function upgrade(deps: Deps, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
  const { config } = deps
  const match = mapRequest(config.routes, req.url ?? '/')
  // As for HTTP: a path that escapes its prefix or falls under another route once normalised.
  if (match.kind === 'refused') throw new BffError('invalid_request', 'The request path is not allowed.', { logDetail: match.reason })
  if (match.kind !== 'route' || !match.route.websocket || (req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
    throw new BffError('not_found', 'No WebSocket is served at this path.')
  }
  const { route, target } = match
  const client = deps.clientAddress(req.socket.remoteAddress, req.headers)
  if (req.headers.origin !== config.publicOrigin || req.headers['sec-fetch-site'] === 'cross-site') {
    audit(deps.logger, 'csrf_rejected', {
      outcome: 'failure',
      reason: 'websocket handshake from another origin',
      path: route.prefix,
      ip: client.client,
      userAgent: req.headers['user-agent']?.slice(0, 256),
    })
    deps.metrics.csrfRejections.inc()
    throw new BffError('csrf_failed', 'WebSocket connections must come from the application itself.')
  }

  let session: Session | null = null
  if (route.token === 'user' || route.token === 'optional') {
    const handle = await handleFromCookies(req.headers.cookie, deps)
    session = handle ? await deps.sessions.load(handle, { slide: true }) : null
    if (!session && route.token === 'user') throw new BffError('login_required', 'Authentication is required.')
  }
  const credentials = await upstreamCredentials(deps, route, session, { method: 'GET', target })
  session = credentials.session
  const { authorization, dpopProof } = credentials

  const headers = outboundHeaders({
    upstream: route.upstream,
    path: match.path,
    method: 'GET',
    incoming: req,
    authorization,
    client: client.client,
    forwarded: { for: client.forwardedFor, proto: config.publicUrl.protocol.slice(0, -1), host: config.publicUrl.host },
    requestId: randomUUID(),
    dpopProof,
    timeoutMs: route.timeoutMs,
    maxBodyBytes: 0,
    hasBody: false,
  })
  // outboundHeaders drops hop-by-hop fields; the handshake needs these two back
  // (RFC 6455 §4.1); the Sec-WebSocket-* fields are end-to-end and pass as sent.
  headers.connection = 'Upgrade'
  headers.upgrade = 'websocket'

  const isHttps = target.protocol === 'https:'
  const upstreamReq = (isHttps ? https : http).request(target, { method: 'GET', headers })
  const timer = setTimeout(() => upstreamReq.destroy(new Error('timeout')), route.timeoutMs)

  await new Promise<void>((resolve, reject) => {
    upstreamReq.on('error', (err) => {
      clearTimeout(timer)
      reject(new BffError('upstream_unavailable', 'The upstream API could not be reached.', { cause: err, logDetail: err.message }))
    })
    upstreamReq.on('response', (res) => {
      // The upstream refused the upgrade: its status goes back, its body does not.
      clearTimeout(timer)
      res.resume()
      socket.end(`HTTP/1.1 ${res.statusCode ?? 502} ${STATUS_CODES[res.statusCode ?? 502] ?? ''}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`, () =>
        socket.destroy(),
      )
      resolve()
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
          deps.logger.info({ sid: live.sid, reason }, 'closing websocket: the session ended')
          socket.destroy()
          upstream.destroy()
        }).then(
          (stop) => socket.once('close', stop),
          () => socket.destroy(),
        )
      }
      resolve()
    })
    upstreamReq.end()
  })
}
