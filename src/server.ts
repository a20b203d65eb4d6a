import { once } from 'node:events'
import { createServer } from 'node:http'
import type { Duplex } from 'node:stream'
import type { AddressInfo } from 'node:net'
import { getRequestListener } from '@hono/node-server'
import { createApp } from './app.js'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Config } from './config.js'
import { DEFAULT_FRONTEND, hostKeys, type Frontend, type FrontendSet } from './config-file.js'
import { createDeps } from './deps.js'
import { BffError } from './errors.js'
import type { OidcClientOptions } from './oidc/client.js'
import { endSocket, sendJson, toErrorResponse, writeError } from './http/error-response.js'
import { createProxyEntry, type ProxyEntry } from './proxy/entry.js'
import { createLogger, type Logger } from './log.js'
import { startMetricsListener, type MetricsListener } from './metrics-listener.js'
import { ProcessMetrics, type MetricsSource } from './metrics.js'
import { readiness } from './routes/health.js'
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
  /** The first frontend's deps (the only one without BFF_CONFIG_FILE). */
  readonly deps: Deps
  /** Each frontend's deps by name, as served now (reload may change them). */
  frontends(): ReadonlyMap<string, Deps>
  /**
   * Serves another set of frontends (SIGHUP, BFF_CONFIG_WATCH): unchanged
   * frontends keep their deps, changed and new ones are built, removed ones
   * closed. Sessions live in the store and survive (security model S91).
   */
  reload(set: FrontendSet): Promise<void>
  /** Where /metrics is served when BFF_METRICS_LISTEN is set (then not on `url`). */
  readonly metricsUrl: string | undefined
  close(): Promise<void>
}

/** How long a shutdown waits for in-flight requests before closing their connections. */
const DRAIN_MS = 20_000

/** How long a frontend a reload replaced or removed keeps its store open for requests in flight. */
const RETIRE_GRACE_MS = 30_000

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

/** One frontend as served: its deps and its two entries (Hono app, proxy). */
interface Served {
  readonly frontend: Frontend
  readonly deps: Deps
  readonly app: (req: IncomingMessage, res: ServerResponse) => unknown
  readonly proxy: ProxyEntry
  /** The configuration as compared on reload. */
  readonly fingerprint: string
}

/** A request's Host as matched against the frontends' public hosts (RFC 9110 §7.2: host names are case-insensitive). */
export function requestHost(req: IncomingMessage): string {
  return (req.headers.host ?? '').toLowerCase()
}

const MISDIRECTED = new BffError('misdirected_request', 'This server does not serve the requested host.')
/**
 * A served Host but no frontend's path base: 404, not 421, which would tell
 * the client to retry on another connection (RFC 9110 §15.5.20) when the
 * authority is right and only the path is not served (docs/configuration.md).
 */
const NO_BASE = new BffError('not_found', 'Nothing is served at this path.')

/** Each frontend by every Host value that names it (hostKeys), longest path base first. */
function hostIndex(served: readonly Served[]): Map<string, Served[]> {
  const index = new Map<string, Served[]>()
  for (const s of served) for (const h of hostKeys(s.frontend)) index.set(h, [...(index.get(h) ?? []), s])
  for (const list of index.values()) list.sort((a, b) => b.frontend.config.basePath.length - a.frontend.config.basePath.length)
  return index
}

/**
 * The frontend whose path base the request's path is at or under, on a
 * segment boundary (`/shop`, `/shop/...`, `/shop?...`, never `/shopping`;
 * security model S92). Its app and proxy see the path without the base.
 */
function atBase(candidates: readonly Served[], req: IncomingMessage): Served | undefined {
  const url = req.url ?? '/'
  for (const s of candidates) {
    const base = s.frontend.config.basePath
    if (base === '') return s
    if (!url.startsWith(base)) continue
    const rest = url.slice(base.length)
    if (rest !== '' && !rest.startsWith('/') && !rest.startsWith('?')) continue
    req.url = rest.startsWith('/') ? rest : `/${rest}`
    return s
  }
  return undefined
}

/** Paths a multi-frontend process answers itself, on any Host (a kubelet probes with the pod IP as Host). */
const PROCESS_PATHS = new Set(['/healthz', '/readyz', '/metrics'])

function asSet(input: Config | FrontendSet): FrontendSet {
  if ('frontends' in input) return input
  return {
    frontends: [{ name: DEFAULT_FRONTEND, config: input, host: input.publicUrl.host.toLowerCase() }],
    matchHost: false,
    file: undefined,
  }
}

/**
 * Starts tokenward: builds each frontend's deps and entries, one HTTP server
 * that dispatches on the Host header when BFF_CONFIG_FILE declares the
 * frontends, and loads IdP metadata in the background.
 */
export async function startServer(input: Config | FrontendSet, options: StartOptions = {}): Promise<RunningServer> {
  const set = asSet(input)
  // Process-wide settings (listener, Redis, log level, metrics listener) are identical in every frontend.
  const proc = set.frontends[0]!.config
  const multi = set.matchHost
  const logger = options.logger ?? createLogger(proc.logLevel)

  const build = (frontend: Frontend): Served => {
    const { config } = frontend
    // With several frontends every line of this one's names it (a bounded label).
    const log = multi ? logger.child({ frontend: frontend.name }) : logger
    for (const w of config.warnings) log.warn(w)
    const deps = createDeps(config, {
      logger: log,
      store: options.store ?? 'redis',
      ...(multi ? { frontend: frontend.name } : {}),
      ...(options.oidc ? { oidc: options.oidc } : {}),
    })
    // A renewed certificate on disk is picked up without a restart (security model S82).
    deps.tls?.watch()
    if (deps.store.kind === 'memory') {
      log.warn('IN-MEMORY SESSION STORE: sessions live in this process only and vanish on restart. Development only.')
    }
    // Sessions may be served from memory for BFF_SESSION_CACHE_MS once Redis
    // announces changes to them (subscription and tracking up); until then every
    // request reads Redis.
    deps.events
      .keepCoherent(deps.sessions)
      .catch((err: Error) => log.warn({ reason: err.message }, 'session event subscription failed; every request reads the store'))
    // API calls on a route and WebSocket handshakes go to the proxy's entry;
    // everything else to the app (tokenward's own endpoints, static files).
    return {
      frontend,
      deps,
      app: getRequestListener(createApp(deps).fetch),
      proxy: createProxyEntry(deps),
      fingerprint: JSON.stringify(frontend.config),
    }
  }

  /** Loads the IdP metadata in the background, once the frontend is served. */
  const discover = (s: Served): void => {
    s.deps.oidc
      .configuration()
      .catch((err: Error) => s.deps.logger.warn({ reason: err.message }, 'identity provider metadata not loaded yet; will retry on demand'))
  }

  const retire = async (s: Served): Promise<void> => {
    await s.deps.events.close()
    s.deps.terminator.close()
    await s.deps.tls?.close()
    await s.deps.store.close()
  }

  let served: Served[] = set.frontends.map(build)
  /** Frontends a reload replaced or removed, closed once RETIRE_GRACE_MS has passed (or at shutdown). */
  const retiring = new Map<Served, NodeJS.Timeout>()
  let byHost = hostIndex(served)
  const processMetrics = multi ? new ProcessMetrics(() => served.map((s) => s.deps.metrics)) : undefined
  const metricsSource: MetricsSource = processMetrics ?? served[0]!.deps.metrics

  /**
   * The frontend a request is for (its URL then relative to the frontend's
   * path base), or the refusal: 421 for an unknown Host, 404 for a served
   * Host where no path base matches.
   */
  const pick = (req: IncomingMessage): Served | BffError => {
    if (!multi) return served[0]!
    const candidates = byHost.get(requestHost(req))
    if (!candidates) return MISDIRECTED
    return atBase(candidates, req) ?? NO_BASE
  }

  const processEndpoint = (req: IncomingMessage, res: ServerResponse, path: string): void => {
    const done = (p: Promise<void>) => p.catch((err: unknown) => writeError(res, err, {}))
    if (path === '/healthz') return sendJson(res, 200, { status: 'ok' }, { 'cache-control': 'no-store' })
    if (path === '/readyz')
      return void done(
        readiness(served.map((s) => ({ store: s.deps.store, oidc: s.deps.oidc, name: s.frontend.name }))).then((r) =>
          sendJson(res, r.status, r.body, r.headers),
        ),
      )
    // /metrics on the main port (no BFF_METRICS_LISTEN): one exposition for every frontend.
    void done(
      metricsSource.metrics().then((text) => {
        res.writeHead(200, { 'content-type': metricsSource.contentType, 'cache-control': 'no-store' })
        res.end(req.method === 'HEAD' ? undefined : text)
      }),
    )
  }

  const server = createServer((req, res) => {
    if (multi) {
      const path = (req.url ?? '/').split('?')[0]!
      if (PROCESS_PATHS.has(path) && (req.method === 'GET' || req.method === 'HEAD') && (path !== '/metrics' || !proc.metricsListen)) {
        processEndpoint(req, res, path)
        return
      }
    }
    const s = pick(req)
    if (s instanceof BffError) {
      writeError(res, s, {})
      return
    }
    if (!s.proxy.request(req, res)) void s.app(req, res)
  })
  // Bounded header and request times protect against slow clients (slowloris).
  // The request timeout covers receiving a request (a large upload), never a
  // response, so long downloads and event streams are not cut.
  server.headersTimeout = 20_000
  server.requestTimeout = 300_000
  server.keepAliveTimeout = 65_000
  server.on('clientError', answerClientError)
  server.on('upgrade', (req, socket, head) => {
    const s = pick(req)
    if (!(s instanceof BffError)) return s.proxy.upgrade(req, socket, head)
    socket.on('error', () => socket.destroy())
    const { status, body, headers } = toErrorResponse(s)
    endSocket(socket, status, { ...headers, 'content-type': 'application/json', 'cache-control': 'no-store' }, JSON.stringify(body))
  })
  server.listen(options.port ?? proc.port, proc.host)
  await once(server, 'listening')
  const port = (server.address() as AddressInfo).port
  let metricsListener: MetricsListener | undefined
  if (proc.metricsListen) {
    try {
      metricsListener = await startMetricsListener(metricsSource, proc.metricsListen.host, proc.metricsListen.port)
    } catch (err) {
      server.close()
      await Promise.allSettled(served.map(retire))
      throw err
    }
    logger.info({ url: `${metricsListener.url}/metrics` }, 'metrics listening')
  }
  const shownHost = proc.host === '0.0.0.0' || proc.host === '::' ? 'localhost' : proc.host
  const url = `http://${shownHost.includes(':') ? `[${shownHost}]` : shownHost}:${port}`
  for (const s of served) {
    const { config } = s.frontend
    s.deps.logger.info(
      { url, publicUrl: `${config.publicOrigin}${config.basePath}`, store: s.deps.store.kind, routes: config.routes.map((r) => r.prefix) },
      'tokenward listening',
    )
  }
  for (const s of served) discover(s)

  return {
    url,
    port,
    get deps() {
      return served[0]!.deps
    },
    frontends: () => new Map(served.map((s) => [s.frontend.name, s.deps])),
    async reload(next) {
      if (!multi || !next.matchHost) throw new Error('reload needs BFF_CONFIG_FILE')
      const old = new Map(served.map((s) => [s.frontend.name, s]))
      const built: Served[] = []
      // In the file's order: an unchanged frontend keeps what it has, any other is built anew.
      const nextServed = next.frontends.map((f) => {
        const prev = old.get(f.name)
        if (prev && prev.fingerprint === JSON.stringify(f.config)) return prev
        const fresh = build(f)
        built.push(fresh)
        return fresh
      })
      for (const s of built) discover(s)
      const retired = served.filter((s) => !nextServed.includes(s))
      served = nextServed
      byHost = hostIndex(served)
      logger.info(
        {
          frontends: served.map((s) => s.frontend.name),
          added: built.map((s) => s.frontend.name),
          retired: retired.map((s) => s.frontend.name),
        },
        'configuration reloaded',
      )
      // A retired frontend's open event streams end now (the browser
      // reconnects, to the new one if it was only changed); its store closes
      // after a grace period, so requests in flight on it can finish.
      for (const s of retired) {
        void s.deps.events.close()
        const timer = setTimeout(() => {
          retiring.delete(s)
          void retire(s)
        }, RETIRE_GRACE_MS)
        timer.unref()
        retiring.set(s, timer)
      }
    },
    metricsUrl: metricsListener && `${metricsListener.url}/metrics`,
    async close() {
      // Open event streams would hold the server open: end them first.
      await Promise.all(served.map((s) => s.deps.events.close()))
      for (const s of served) s.deps.terminator.close()
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
      for (const [s, timer] of retiring) {
        clearTimeout(timer)
        await retire(s)
      }
      retiring.clear()
      await Promise.all(
        served.map(async (s) => {
          await s.deps.tls?.close()
          await s.deps.store.close()
        }),
      )
    },
  }
}
