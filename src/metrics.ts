// prom-client: the standard Prometheus client for Node: text exposition format,
// histograms, and the process metrics (CPU, memory, event-loop lag, GC) for free.
import { readFileSync } from 'node:fs'
import { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'

/** What tokenward asks the IdP for: the label of its IdP-call metrics (classified in oidc/fetch.ts). */
export type IdpOperation =
  'discovery' | 'jwks' | 'code_exchange' | 'refresh' | 'revocation' | 'par' | 'token_exchange' | 'client_credentials' | 'userinfo' | 'other'

/** How an IdP call ended: answered 2xx/3xx, 4xx, 5xx, or no usable answer (network, timeout, oversized). */
export type IdpOutcome = 'success' | 'client_error' | 'server_error' | 'failed'

/** HTTP methods kept as label values; any other becomes `OTHER`, so a client cannot mint label values. */
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'CONNECT', 'TRACE'])

/** A bounded `method` label. */
export function methodLabel(method: string): string {
  return KNOWN_METHODS.has(method) ? method : 'OTHER'
}

/** A bounded status label: `1xx`..`5xx`, or `0xx` when nothing was answered. */
export function statusClass(status: number): string {
  return status >= 100 && status < 600 ? `${Math.floor(status / 100)}xx` : '0xx'
}

/** The version in package.json (one directory above src/ and dist/ alike). */
function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: unknown }
    return typeof pkg.version === 'string' ? pkg.version : 'unknown'
  } catch {
    return 'unknown'
  }
}

/** Latency buckets from a cached answer to a slow upstream or IdP (seconds). */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

export type RefreshOutcome = 'success' | 'rejected' | 'idp_unavailable' | 'interrupted' | 'failed' | 'lock_timeout'

/**
 * tokenward's metrics, one registry per instance (so several instances in one
 * test process do not collide). Labels are bounded: route prefixes and fixed
 * endpoint names, never a raw path, sid or sub.
 */
export class Metrics {
  readonly registry = new Registry()
  readonly requests: Counter<'route' | 'method' | 'status'>
  readonly requestDuration: Histogram<'route' | 'method' | 'status_class'>
  readonly requestsInFlight: Gauge
  readonly idpDuration: Histogram<'operation'>
  readonly idpRequests: Counter<'operation' | 'outcome'>
  readonly upstreamDuration: Histogram<'route' | 'status'>
  readonly refreshes: Counter<'outcome'>
  readonly refreshLockWait: Histogram
  readonly invalidGrants: Counter
  readonly storeErrors: Counter
  readonly csrfRejections: Counter
  readonly dbscRegistrations: Counter
  readonly dbscRefreshes: Counter
  readonly dbscRejections: Counter<'reason'>

  constructor(options: { activeSessions?: () => Promise<number | undefined>; frontend?: string } = {}) {
    const registers = [this.registry]
    if (options.frontend !== undefined) {
      // One frontend of several (BFF_CONFIG_FILE): every series carries its
      // (bounded, configured) name; the process metrics are the process's
      // registry's (ProcessMetrics), once.
      this.registry.setDefaultLabels({ frontend: options.frontend })
    } else {
      // The standard names (process_*, nodejs_*), no prefix, so stock Node.js dashboards find them.
      collectDefaultMetrics({ register: this.registry })
    }
    this.requests = new Counter({
      name: 'tokenward_http_requests_total',
      help: 'HTTP requests by route (route prefix or tokenward endpoint), method and status',
      labelNames: ['route', 'method', 'status'],
      registers,
    })
    this.requestDuration = new Histogram({
      name: 'tokenward_http_request_duration_seconds',
      help: 'Time from a request to the end of its answer (proxied calls: until the upstream answer was passed on), by route, method and status class',
      labelNames: ['route', 'method', 'status_class'],
      buckets: LATENCY_BUCKETS,
      registers,
    })
    this.requestsInFlight = new Gauge({
      name: 'tokenward_http_requests_in_flight',
      help: 'Requests received and not answered yet',
      registers,
    })
    this.upstreamDuration = new Histogram({
      name: 'tokenward_upstream_duration_seconds',
      help: 'Time until the upstream answered (response headers), by route prefix and status',
      labelNames: ['route', 'status'],
      buckets: LATENCY_BUCKETS,
      registers,
    })
    this.idpDuration = new Histogram({
      name: 'tokenward_idp_request_duration_seconds',
      help: 'Time until the identity provider answered (response headers), by operation',
      labelNames: ['operation'],
      buckets: LATENCY_BUCKETS,
      registers,
    })
    this.idpRequests = new Counter({
      name: 'tokenward_idp_requests_total',
      help: 'Requests to the identity provider by operation and outcome (success, client_error, server_error, failed)',
      labelNames: ['operation', 'outcome'],
      registers,
    })
    new Gauge({
      name: 'tokenward_build_info',
      help: 'Always 1; the version of tokenward and of Node.js that run',
      labelNames: ['version', 'nodejs_version'],
      registers,
    }).set({ version: packageVersion(), nodejs_version: process.version }, 1)
    this.refreshes = new Counter({
      name: 'tokenward_refreshes_total',
      help: 'Refresh-token grants by outcome',
      labelNames: ['outcome'],
      registers,
    })
    this.refreshLockWait = new Histogram({
      name: 'tokenward_refresh_lock_wait_seconds',
      help: 'Time a request waited for the refresh lease (including another instance refreshing)',
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15],
      registers,
    })
    this.invalidGrants = new Counter({
      name: 'tokenward_invalid_grant_total',
      help: 'invalid_grant answers to refresh requests (revoked, expired or reused refresh tokens)',
      registers,
    })
    this.storeErrors = new Counter({
      name: 'tokenward_session_store_errors_total',
      help: 'Session store (Redis) commands that failed or timed out',
      registers,
    })
    this.csrfRejections = new Counter({
      name: 'tokenward_csrf_rejections_total',
      help: 'Requests refused by the CSRF checks',
      registers,
    })
    this.dbscRegistrations = new Counter({
      name: 'tokenward_dbsc_registrations_total',
      help: 'Sessions bound to a device key (Device Bound Session Credentials)',
      registers,
    })
    this.dbscRefreshes = new Counter({
      name: 'tokenward_dbsc_refreshes_total',
      help: 'Bound cookies issued after a verified refresh proof',
      registers,
    })
    this.dbscRejections = new Counter({
      name: 'tokenward_dbsc_rejections_total',
      help: 'Refused device-bound session requests: proof (bad signature or key), challenge (unknown, used or expired), cookie (bound session without a valid bound cookie)',
      labelNames: ['reason'],
      registers,
    })
    const activeSessions = options.activeSessions
    new Gauge({
      name: 'tokenward_active_sessions',
      help: 'Sessions in the store (approximate; counted at most every 30 s)',
      registers,
      async collect() {
        const n = await activeSessions?.().catch(() => undefined)
        if (n !== undefined) this.set(n)
      },
    })
  }

  /**
   * The client-authentication method (an info gauge, always 1) and, when a TLS
   * client certificate is configured (RFC 8705), the seconds until it expires,
   * read at every scrape so a reloaded certificate shows at once.
   */
  clientCertificate(method: string, notAfter: () => number | undefined): void {
    const registers = [this.registry]
    new Gauge({
      name: 'tokenward_client_auth_info',
      help: 'Always 1; how tokenward authenticates at the token endpoint (BFF_CLIENT_AUTH)',
      labelNames: ['method'],
      registers,
    }).set({ method }, 1)
    new Gauge({
      name: 'tokenward_client_certificate_expiry_seconds',
      help: 'Seconds until the TLS client certificate (BFF_TLS_CLIENT_CERT) expires; absent without one',
      registers,
      collect() {
        const at = notAfter()
        if (at !== undefined) this.set((at - Date.now()) / 1000)
      },
    })
  }

  metrics(): Promise<string> {
    return this.registry.metrics()
  }

  get contentType(): string {
    return this.registry.contentType
  }
}

/** What a /metrics endpoint serves: one frontend's Metrics, or the process's ProcessMetrics. */
export interface MetricsSource {
  metrics(): Promise<string>
  readonly contentType: string
}

/**
 * The one exposition of a process serving several frontends: the process
 * metrics (process_*, nodejs_*) once, and each frontend's tokenward_* series
 * with its `frontend` label. prom-client's aggregation merges same-named
 * metrics into one HELP/TYPE block; the series stay apart by their label.
 */
export class ProcessMetrics implements MetricsSource {
  readonly #process = new Registry()
  readonly #frontends: () => readonly Metrics[]

  constructor(frontends: () => readonly Metrics[]) {
    collectDefaultMetrics({ register: this.#process })
    this.#frontends = frontends
  }

  async metrics(): Promise<string> {
    const all = await Promise.all([this.#process, ...this.#frontends().map((m) => m.registry)].map((r) => r.getMetricsAsJSON()))
    return AggregatorRegistry.aggregate(all).metrics()
  }

  get contentType(): string {
    return this.#process.contentType
  }
}
