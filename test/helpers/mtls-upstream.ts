import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type Server } from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { TLSSocket } from 'node:tls'

export interface MtlsUpstreamRequest {
  readonly url: string
  /** x5t#S256 of the client certificate presented in the handshake, if any. */
  readonly presented: string | undefined
  readonly status: number
}

export interface MtlsUpstream {
  readonly url: string
  readonly requests: MtlsUpstreamRequest[]
  close(): Promise<void>
}

function bound(authorization: string | undefined): string | undefined {
  const token = /^Bearer (\S+)$/i.exec(authorization ?? '')?.[1]
  try {
    const claims = JSON.parse(Buffer.from(token?.split('.')[1] ?? '', 'base64url').toString()) as { cnf?: Record<string, unknown> }
    const x5t = claims.cnf?.['x5t#S256']
    return typeof x5t === 'string' ? x5t : undefined
  } catch {
    return undefined
  }
}

/**
 * A resource server that enforces certificate-bound access tokens like RFC 8705
 * §3 asks: over HTTPS, asking for a client certificate, it accepts a token only
 * when its `cnf.x5t#S256` is the thumbprint of the certificate presented on
 * this very connection, and answers 401 invalid_token otherwise. (Signatures
 * are other tests' business; here only the binding is.)
 */
export async function startMtlsUpstream(tls: { cert: string; key: string; ca: string }): Promise<MtlsUpstream> {
  const requests: MtlsUpstreamRequest[] = []
  const sockets = new Set<Socket>()
  const server: Server = createServer({ ...tls, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    const raw = (req.socket as TLSSocket).getPeerCertificate(false)?.raw
    const presented = raw ? createHash('sha256').update(raw).digest('base64url') : undefined
    const expected = bound(req.headers.authorization)
    const ok = expected !== undefined && expected === presented
    requests.push({ url: req.url ?? '/', presented, status: ok ? 200 : 401 })
    req.resume()
    if (!ok) {
      res.writeHead(401, {
        'content-type': 'application/json',
        'www-authenticate': `Bearer error="invalid_token", error_description="${presented ? 'certificate does not match the token' : 'no client certificate'}"`,
      })
      res.end(JSON.stringify({ error: 'invalid_token' }))
      return
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
    res.end(JSON.stringify({ url: req.url, presented }))
  })
  // A WebSocket handshake (RFC 6455 §4.2.2) is held to the same binding rule.
  server.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
    const raw = (req.socket as TLSSocket).getPeerCertificate(false)?.raw
    const presented = raw ? createHash('sha256').update(raw).digest('base64url') : undefined
    const expected = bound(req.headers.authorization)
    const ok = expected !== undefined && expected === presented
    requests.push({ url: req.url ?? '/', presented, status: ok ? 101 : 401 })
    socket.on('error', () => socket.destroy())
    if (!ok) {
      socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
      return
    }
    const accept = createHash('sha1').update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64')
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`)
    socket.on('end', () => socket.end())
  })
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  return {
    url: `https://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const s of sockets) s.destroy()
      }),
  }
}
