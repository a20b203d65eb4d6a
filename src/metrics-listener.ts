import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { BffError } from './errors.js'
import { writeError } from './http/error-response.js'
import type { MetricsSource } from './metrics.js'

export interface MetricsListener {
  readonly url: string
  close(): Promise<void>
}

/**
 * The listener of BFF_METRICS_LISTEN: `GET /metrics` and nothing else, so the
 * scraper reaches the metrics on a port no ingress routes, and the public
 * listener need not serve them (they name routes, versions and session counts).
 */
export async function startMetricsListener(metrics: MetricsSource, host: string, port: number): Promise<MetricsListener> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      writeError(res, new BffError('not_found', 'Nothing is served at this path.'), {})
      return
    }
    metrics.metrics().then(
      (text) => {
        res.writeHead(200, { 'content-type': metrics.contentType, 'cache-control': 'no-store' })
        res.end(req.method === 'HEAD' ? undefined : text)
      },
      () => writeError(res, new Error('metrics collection failed'), {}),
    )
  })
  server.headersTimeout = 10_000
  server.requestTimeout = 10_000
  server.listen(port, host)
  await once(server, 'listening')
  const bound = (server.address() as AddressInfo).port
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${bound}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}
