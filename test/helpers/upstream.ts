import { createHash } from 'node:crypto'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { createRemoteJWKSet, jwtVerify } from 'jose'

/** What a resource server accepts (RFC 9068 §4): JWT access tokens of one issuer, for its own audience. */
export interface TokenPolicy {
  issuer: string
  jwksUri: string
  /** This upstream's identifier: the token's `aud` must contain it. */
  audience: string
}

/** Why the request's access token is not acceptable under `policy`, or undefined when it is. */
async function tokenProblem(
  policy: TokenPolicy & { jwks: ReturnType<typeof createRemoteJWKSet> },
  authorization: string | undefined,
): Promise<string | undefined> {
  const token = /^(?:Bearer|DPoP) (\S+)$/i.exec(authorization ?? '')?.[1]
  if (!token) return 'no access token'
  try {
    await jwtVerify(token, policy.jwks, { issuer: policy.issuer, audience: policy.audience, typ: 'at+jwt' })
    return undefined
  } catch (err) {
    return (err as { code?: string }).code ?? 'invalid'
  }
}

/** Whether a DPoP proof carries the nonce this upstream hands out. */
function dpopNonce(proof: string | string[] | undefined): boolean {
  if (typeof proof !== 'string') return false
  try {
    return (JSON.parse(Buffer.from(proof.split('.')[1] ?? '', 'base64url').toString()) as { nonce?: string }).nonce === 'upstream-nonce-1'
  } catch {
    return false
  }
}

export interface RecordedRequest {
  method: string
  url: string
  headers: IncomingHttpHeaders
  rawHeaders: string[]
  bodyBytes: number
}

export interface EchoUpstream {
  readonly url: string
  readonly requests: RecordedRequest[]
  /** Answers 401 invalid_token to requests carrying this bearer token ('*': any token). */
  rejectToken(token: string | undefined): void
  /**
   * Verifies every request's access token like a real API (signature against
   * the IdP's JWKS, issuer, audience) and answers 401 invalid_token (RFC 6750
   * §3.1) when it fails; undefined accepts anything again.
   */
  verifyTokens(policy: TokenPolicy | undefined): void
  /** How many TCP connections to this upstream are open right now. */
  connections(): Promise<number>
  close(): Promise<void>
}

/**
 * A real HTTP upstream that records what it receives. Paths:
 * `/echo...` JSON of the request; `/set-cookie` sets a cookie; `/sse` three
 * events 100 ms apart; `/download?bytes=N` streams N bytes; `/upload` counts the
 * body; `/slow?ms=N` answers after N ms; `/status/N` answers N; `/broken`
 * breaks off its body midway; `/with-headers?name=value` answers with those headers.
 */
export async function startEchoUpstream(): Promise<EchoUpstream> {
  const requests: RecordedRequest[] = []
  let rejected: string | undefined
  let verify: (TokenPolicy & { jwks: ReturnType<typeof createRemoteJWKSet> }) | undefined
  const server: Server = createServer((req, res) => {
    let bodyBytes = 0
    req.on('data', (c: Buffer) => {
      bodyBytes += c.length
    })
    const answer = async (): Promise<void> => {
      const rec: RecordedRequest = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        bodyBytes,
      }
      requests.push(rec)
      const u = new URL(req.url ?? '/', 'http://upstream')
      const auth = req.headers.authorization
      if (rejected && auth && (rejected === '*' || auth === `Bearer ${rejected}`)) {
        res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token", error_description="token revoked"' })
        res.end('{"error":"invalid_token"}')
        return
      }
      const problem = verify && (await tokenProblem(verify, auth))
      if (problem) {
        // RFC 6750 §3.1: no error code when the request carried no token at all.
        res.writeHead(401, { 'www-authenticate': auth ? 'Bearer error="invalid_token"' : 'Bearer', 'content-type': 'application/json' })
        res.end(JSON.stringify({ error: 'invalid_token', problem }))
        return
      }
      if (u.pathname.endsWith('/set-cookie')) {
        res.writeHead(200, {
          'set-cookie': ['__Host-sid=upstream; Path=/; Secure', 'other=1'],
          'content-type': 'application/json',
          'access-control-allow-origin': '*',
        })
        res.end('{}')
      } else if (u.pathname.endsWith('/sse')) {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
        let n = 0
        const t = setInterval(() => {
          res.write(`data: ${n}\n\n`)
          if (++n === 3) {
            clearInterval(t)
            res.end()
          }
        }, 100)
      } else if (u.pathname.endsWith('/download')) {
        let left = Number(u.searchParams.get('bytes') ?? 0)
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(left) })
        const chunk = Buffer.alloc(64 * 1024, 97)
        const pump = () => {
          while (left > 0) {
            const n = Math.min(left, chunk.length)
            left -= n
            if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void res.once('drain', pump)
          }
          res.end()
        }
        pump()
      } else if (u.pathname.endsWith('/hop-headers')) {
        // Two Connection fields naming hop-by-hop headers (RFC 9110 §7.6.1).
        res.writeHead(200, [
          ['Connection', 'x-hop-a'],
          ['Connection', 'x-hop-b, keep-alive'],
          ['X-Hop-A', '1'],
          ['X-Hop-B', '2'],
          ['X-End', '3'],
          ['Content-Type', 'application/json'],
        ])
        res.end('{}')
      } else if (u.pathname.endsWith('/hangup')) {
        // Reads the request and closes the connection without an answer.
        res.socket?.destroy()
      } else if (u.pathname.endsWith('/broken')) {
        // Promises 100,000 bytes, sends 1,000, then the connection dies.
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': '100000' })
        res.write(Buffer.alloc(1000, 98), () => setTimeout(() => res.socket?.destroy(), 20))
      } else if (u.pathname.endsWith('/slow')) {
        setTimeout(() => res.end('slow'), Number(u.searchParams.get('ms') ?? 1000))
      } else if (u.pathname.endsWith('/dpop-nonce') && !dpopNonce(req.headers.dpop)) {
        // RFC 9449 §9: a resource server may demand a nonce in the proof.
        res.writeHead(401, {
          'www-authenticate': 'DPoP error="use_dpop_nonce", error_description="nonce required"',
          'dpop-nonce': 'upstream-nonce-1',
        })
        res.end('{"error":"use_dpop_nonce"}')
      } else if (u.pathname.endsWith('/step-up')) {
        res.writeHead(401, {
          'www-authenticate':
            'Bearer error="insufficient_user_authentication", error_description="MFA required", acr_values="urn:example:mfa", max_age=300',
        })
        res.end('{"error":"insufficient_user_authentication"}')
      } else if (u.pathname.endsWith('/with-headers')) {
        // Answers 200 with each query parameter as a response header (`?cache-control=public`).
        res.writeHead(200, { 'content-type': 'application/json', ...Object.fromEntries(u.searchParams) })
        res.end('{}')
      } else if (/\/status\/\d{3}$/.test(u.pathname)) {
        const code = Number(u.pathname.slice(-3))
        res.writeHead(code, code === 401 ? { 'www-authenticate': 'Bearer realm="api"' } : {})
        res.end(JSON.stringify({ status: code }))
      } else {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ method: rec.method, url: rec.url, headers: rec.headers, bodyBytes }))
      }
    }
    // A bug in answering shows as a broken connection (and its error), not as an unhandled rejection.
    req.on('end', () => void answer().catch((err: unknown) => res.destroy(err as Error)))
  })
  // WebSocket handshakes (RFC 6455 §4.2.2) are accepted and the bytes echoed:
  // enough to prove what tokenward forwards, without a WebSocket library.
  server.on('upgrade', (req, socket) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, bodyBytes: 0 })
    const accept = createHash('sha1').update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64')
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nSet-Cookie: up=1\r\n\r\n`,
    )
    socket.on('data', (d: Buffer) => socket.write(d))
    // An upgraded socket of an http.Server is half-open capable: close it fully
    // when the other side ends, or close() would wait for it forever.
    socket.on('end', () => socket.end())
    socket.on('error', () => socket.destroy())
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    rejectToken(token) {
      rejected = token
    },
    verifyTokens(policy) {
      verify = policy && { ...policy, jwks: createRemoteJWKSet(new URL(policy.jwksUri)) }
    },
    connections: () => new Promise<number>((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n)))),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}
