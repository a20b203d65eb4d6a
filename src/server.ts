import { once } from 'node:events'
import { createServer } from 'node:http'
import type { Duplex } from 'node:stream'
import type { AddressInfo } from 'node:net'
import { getRequestListener } from '@hono/node-server'
import { createApp } from './app.js'
import type { Config } from './config.js'
import { createDeps } from './deps.js'
import type { OidcClientOptions } from './oidc/client.js'
import { endSocket } from './http/error-response.js'
import { createProxyEntry } from './proxy/entry.js'
import { createLogger, type Logger } from './log.js'
import { startMetricsListener, type MetricsListener } from './metrics-listener.js'
import type { Store } from './store/types.js'
import type { Deps } from './types.js'

export interface StartOptions {
  store?: 'redis' | 'memory' | Store
  logger?: Logger
  /** Overrides BFF_PORT (0 = a free port). */
  port?: number
  /** The IdP client's options (tests: a fetch that stands in for an IdP on the internet). */
  oidc?: OidcClientOptions
}

export interface RunningServer {
  readonly url: string
  readonly port: number
  readonly deps: Deps
  /** Where /metrics is served when BFF_METRICS_LISTEN is set (then not on `url`). */
  readonly metricsUrl: string | undefined
  close(): Promise<void>
}

/** How long a shutdown waits for in-flight requests before closing their connections. */
const DRAIN_MS = 20_000

/**
 * Requests Node's HTTP parser refuses never reach the app: answer them in the
 * contract's JSON shape instead of Node's bare status line, then close.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy()
    return
  }
  const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400
  const message =
    status === 431
      ? 'The request headers are too large.'
      : status === 408
        ? 'The request took too long to arrive.'
        : 'The request is malformed.'
  endSocket(
    socket,
    status,
    { 'content-type': 'application/json', 'cache-control': 'no-store' },
    JSON.stringify({ error: 'invalid_request', message }),
  )
}

/** Starts tokenward: builds the deps and the app, listens, and loads IdP metadata in the background. */
export async function startServer(config: Config, options: StartOptions = {}): Promise<RunningServer> {
  const logger = options.logger ?? createLogger(config.logLevel)
  for (const w of config.warnings) logger.warn(w)
  const deps = createDeps(config, { logger, store: options.store ?? 'redis', ...(options.oidc ? { oidc: options.oidc } : {}) })
  // A renewed certificate on disk is picked up without a restart (security model S82).
  deps.tls?.watch()
  if (deps.store.kind === 'memory') {
    logger.warn('IN-MEMORY SESSION STORE: sessions live in this process only and vanish on restart. Development only.')
  }
  // Sessions may be served from memory for BFF_SESSION_CACHE_MS once Redis
  // announces changes to them (subscription and tracking up); until then every
  // request reads Redis.
  deps.events
    .keepCoherent(deps.sessions)
    .catch((err: Error) => logger.warn({ reason: err.message }, 'session event subscription failed; every request reads the store'))
  const appListener = getRequestListener(createApp(deps).fetch)
  // API calls on a route and WebSocket handshakes go to the proxy's entry;
  // everything else to the app (tokenward's own endpoints, static files).
  const proxy = createProxyEntry(deps)
  const server = createServer((req, res) => {
    if (!proxy.request(req, res)) void appListener(req, res)
  })
  // Bounded header and request times protect against slow clients (slowloris).
  // The request timeout covers receiving a request (a large upload), never a
  // response, so long downloads and event streams are not cut.
  server.headersTimeout = 20_000
  server.requestTimeout = 300_000
  server.keepAliveTimeout = 65_000
  server.on('clientError', answerClientError)
  server.on('upgrade', (req, socket, head) => proxy.upgrade(req, socket, head))
  server.listen(options.port ?? config.port, config.host)
  await once(server, 'listening')
  const port = (server.address() as AddressInfo).port
  let metricsListener: MetricsListener | undefined
  if (config.metricsListen) {
    try {
      metricsListener = await startMetricsListener(deps.metrics, config.metricsListen.host, config.metricsListen.port)
    } catch (err) {
      server.close()
      await deps.store.close()
      throw err
    }
    logger.info({ url: `${metricsListener.url}/metrics` }, 'metrics listening')
  }
  const shownHost = config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : config.host
  const url = `http://${shownHost.includes(':') ? `[${shownHost}]` : shownHost}:${port}`
  logger.info(
    { url, publicUrl: config.publicOrigin, store: deps.store.kind, routes: config.routes.map((r) => r.prefix) },
    'tokenward listening',
  )
  deps.oidc
    .configuration()
    .catch((err: Error) => logger.warn({ reason: err.message }, 'identity provider metadata not loaded yet; will retry on demand'))

  return {
    url,
    port,
    deps,
    metricsUrl: metricsListener && `${metricsListener.url}/metrics`,
    async close() {
      // Open event streams would hold the server open: end them first.
      await deps.events.close()
      deps.terminator.close()
      // Stop accepting, let in-flight requests finish (security model S69).
      // Keep-alive connections that turn idle after their last response would
      // hold close() open, so close idle ones as they appear; after the drain
      // deadline, close what is left (long downloads).
      await new Promise<void>((resolve) => {
        const sweep = setInterval(() => server.closeIdleConnections(), 100)
        const deadline = setTimeout(() => server.closeAllConnections(), DRAIN_MS)
        server.close(() => {
          clearInterval(sweep)
          clearTimeout(deadline)
          resolve()
        })
        server.closeIdleConnections()
      })
      await metricsListener?.close()
      await deps.tls?.close()
      await deps.store.close()
    },
  }
}
