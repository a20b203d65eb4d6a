// prom-client: the standard Prometheus client for Node: text exposition format,
// histograms, and the process metrics (CPU, memory, event-loop lag, GC) for free.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'

export type RefreshOutcome = 'success' | 'rejected' | 'idp_unavailable' | 'interrupted' | 'failed' | 'lock_timeout'

/**
 * tokenward's metrics, one registry per instance (so several instances in one
 * test process do not collide). Labels are bounded: route prefixes and fixed
 * endpoint names, never a raw path, sid or sub.
 */
export class Metrics {
  readonly registry = new Registry()
  readonly requests: Counter<'route' | 'method' | 'status'>
  readonly upstreamDuration: Histogram<'route' | 'status'>
  readonly refreshes: Counter<'outcome'>
  readonly refreshLockWait: Histogram
  readonly invalidGrants: Counter
  readonly storeErrors: Counter
  readonly csrfRejections: Counter

  constructor(options: { activeSessions?: () => Promise<number | undefined> } = {}) {
    const registers = [this.registry]
    collectDefaultMetrics({ register: this.registry, prefix: 'tokenward_' })
    this.requests = new Counter({
      name: 'tokenward_http_requests_total',
      help: 'HTTP requests by route (route prefix or tokenward endpoint), method and status',
      labelNames: ['route', 'method', 'status'],
      registers,
    })
    this.upstreamDuration = new Histogram({
      name: 'tokenward_upstream_duration_seconds',
      help: 'Time until the upstream answered (response headers), by route prefix and status',
      labelNames: ['route', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    })
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

  metrics(): Promise<string> {
    return this.registry.metrics()
  }

  get contentType(): string {
    return this.registry.contentType
  }
}
