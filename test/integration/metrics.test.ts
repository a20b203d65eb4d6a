import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { login } from '../helpers/login.js'
import { expireAccessToken, spaFetch } from '../helpers/session.js'
import { freePort } from '../helpers/ports.js'
import { startWorld, type World } from '../helpers/world.js'

let world: World

beforeAll(async () => {
  world = await startWorld()
})
afterAll(() => world?.close())

function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

describe('GET /metrics (Prometheus text format)', () => {
  it('counts requests by route and status, upstream latency, refreshes, lock waits and sessions, with bounded labels', async () => {
    const { jar } = await login(world.bff.url, { username: 'mia' })
    expect((await spaFetch(world.bff, jar, '/api/echo')).status).toBe(200)
    expect((await spaFetch(world.bff, jar, '/api/echo', { csrf: false })).status).toBe(403)
    const s = await expireAccessToken(world.bff, jar)
    expect((await spaFetch(world.bff, jar, '/api/echo')).status).toBe(200)

    const res = await fetch(`${world.bff.url}/metrics`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toContain('text/plain')
    const text = await res.text()
    expect(value(text, 'tokenward_http_requests_total{route="/api",method="GET",status="200"}')).toBeGreaterThanOrEqual(2)
    expect(value(text, 'tokenward_http_requests_total{route="/api",method="GET",status="403"}')).toBeGreaterThanOrEqual(1)
    expect(value(text, 'tokenward_http_requests_total{route="/auth/callback",method="GET",status="303"}')).toBeGreaterThanOrEqual(1)
    expect(value(text, 'tokenward_upstream_duration_seconds_count{route="/api",status="200"}')).toBeGreaterThanOrEqual(2)
    expect(value(text, 'tokenward_refreshes_total{outcome="success"}')).toBeGreaterThanOrEqual(1)
    expect(value(text, 'tokenward_refresh_lock_wait_seconds_count')).toBeGreaterThanOrEqual(1)
    expect(value(text, 'tokenward_csrf_rejections_total')).toBeGreaterThanOrEqual(1)
    expect(value(text, 'tokenward_invalid_grant_total')).toBe(0)
    expect(value(text, 'tokenward_active_sessions')).toBeGreaterThanOrEqual(1)
    expect(value(text, 'tokenward_process_resident_memory_bytes')).toBeGreaterThan(0)
    // No user or session identifiers as labels, no raw paths.
    expect(text).not.toContain('mia')
    expect(text).not.toContain(s.sid)
    expect(text).not.toContain('/api/echo')
  })

  it('counts unknown paths under one label', async () => {
    await fetch(`${world.bff.url}/some/random/${Math.random()}`)
    const text = await (await fetch(`${world.bff.url}/metrics`)).text()
    expect(value(text, 'tokenward_http_requests_total{route="other",method="GET",status="404"}')).toBeGreaterThanOrEqual(1)
  })
})

describe('BFF_METRICS_LISTEN: a listener of its own for /metrics', () => {
  let private_: World
  beforeAll(async () => {
    private_ = await startWorld({ env: { BFF_METRICS_LISTEN: `127.0.0.1:${await freePort()}` } })
  })
  afterAll(() => private_?.close())

  it('serves /metrics on the metrics port only; the main port answers 404 not_found', async () => {
    const metricsUrl = private_.bff.server.metricsUrl
    expect(metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/)
    expect(new URL(metricsUrl!).port).not.toBe(new URL(private_.bff.url).port)
    const scraped = await fetch(metricsUrl!)
    expect(scraped.status).toBe(200)
    expect(scraped.headers.get('content-type')).toContain('text/plain')
    expect(await scraped.text()).toContain('tokenward_http_requests_total')

    for (const accept of ['*/*', 'text/html']) {
      const main = await fetch(`${private_.bff.url}/metrics`, { headers: { accept } })
      expect(main.status).toBe(404)
      expect(await main.json()).toMatchObject({ error: 'not_found' })
    }
    // The metrics port serves nothing else.
    const other = await fetch(new URL('/healthz', metricsUrl))
    expect(other.status).toBe(404)
    expect(await other.json()).toMatchObject({ error: 'not_found' })
  })

  it('unset, /metrics stays on the main port', () => {
    expect(world.bff.server.metricsUrl).toBeUndefined()
  })
})
