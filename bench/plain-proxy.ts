// Baseline B of bench/proxy.ts: the least a Node reverse proxy can do. It
// forwards method, path and headers (minus hop-by-hop ones, as any correct
// proxy must), reuses upstream connections through a keep-alive agent and
// pipes bodies both ways. No auth, no session, no logging: whatever
// tokenward costs beyond this is tokenward's own work.
//
// Usage: node --import tsx bench/plain-proxy.ts <port> <upstream origin>

import { Agent, createServer, request, type IncomingHttpHeaders } from 'node:http'

const port = Number(process.argv[2])
const upstream = new URL(process.argv[3] ?? '')
const agent = new Agent({ keepAlive: true })

// RFC 9110 §7.6.1
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']

function strip(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out = { ...headers }
  for (const name of HOP_BY_HOP) delete out[name]
  return out
}

const server = createServer((req, res) => {
  const headers = strip(req.headers)
  headers.host = upstream.host
  const upstreamReq = request(
    { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers, agent },
    (upstreamRes) => {
      res.writeHead(upstreamRes.statusCode ?? 502, strip(upstreamRes.headers))
      upstreamRes.pipe(res)
    },
  )
  upstreamReq.on('error', () => {
    if (res.headersSent) res.destroy()
    else res.writeHead(502).end()
  })
  req.pipe(upstreamReq)
})
// Longer than any pause between benchmark runs, so a reused client connection
// is never closed under the load generator.
server.keepAliveTimeout = 65_000
server.listen(port, '127.0.0.1')

// Bounded life: stop with the parent even when it dies without cleaning up.
process.stdin.resume()
process.stdin.on('end', () => process.exit(0))
process.on('SIGTERM', () => process.exit(0))
