import { Hono } from 'hono'
import { BffError } from '../errors.js'
import type { AppEnv, Deps } from '../types.js'

const PROBE_WAIT_MS = 1500

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('timed out')), ms)
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}

/** Liveness and readiness probes (docs/endpoints.md: /healthz, /readyz). */
export function healthRoutes(deps: Deps): Hono<AppEnv> {
  const app = new Hono<AppEnv>()

  app.get('/healthz', (c) => c.json({ status: 'ok' }, 200, { 'cache-control': 'no-store' }))

  // Prometheus text format. Serve it to your scraper, not to the internet: with
  // BFF_METRICS_LISTEN it is served on that listener only (metrics-listener.ts),
  // and here it is an unknown path, even to a static SPA's client-side routing.
  if (deps.config.metricsListen) {
    app.all('/metrics', () => {
      throw new BffError('not_found', 'Nothing is served at this path.')
    })
  } else {
    app.get('/metrics', async (c) => {
      c.header('content-type', deps.metrics.contentType)
      c.header('cache-control', 'no-store')
      return c.body(await deps.metrics.metrics())
    })
  }

  app.get('/readyz', async (c) => {
    const r = await readiness([deps])
    return c.json(r.body, r.status, r.headers)
  })

  return app
}

/**
 * Readiness of a process: every frontend's session store and IdP metadata
 * (with BFF_CONFIG_FILE, one probe answers for all frontends, whatever the Host).
 */
export async function readiness(
  all: ReadonlyArray<Pick<Deps, 'store' | 'oidc'> & { readonly name?: string }>,
): Promise<{ status: 200 | 503; body: Record<string, unknown>; headers: Record<string, string> }> {
  const down: string[] = []
  let storeDown = false
  await Promise.all(
    all.map(async (deps) => {
      const [store, idp] = await Promise.allSettled([
        deps.store.ping(),
        // Loads the IdP metadata if it is not loaded yet, so readiness recovers by
        // itself, but never keeps a probe waiting for a slow discovery.
        deps.oidc.loaded ? Promise.resolve() : withTimeout(deps.oidc.configuration(), PROBE_WAIT_MS),
      ])
      const of = deps.name === undefined ? '' : ` of ${deps.name}`
      if (store.status === 'rejected') {
        storeDown = true
        down.push(`session store (redis)${of}`)
      }
      if (idp.status === 'rejected') down.push(`identity provider metadata${of}`)
    }),
  )
  if (down.length === 0) return { status: 200, body: { status: 'ready' }, headers: { 'cache-control': 'no-store' } }
  return {
    status: 503,
    body: {
      error: storeDown ? 'session_store_unavailable' : 'idp_unavailable',
      message: `Not ready: ${down.join(', ')} unavailable.`,
      down,
    },
    headers: { 'cache-control': 'no-store', 'retry-after': '5' },
  }
}
