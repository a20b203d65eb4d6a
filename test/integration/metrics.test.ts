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
    // Process and Node.js metrics under their standard names (stock dashboards), not tokenward_-prefixed.
    expect(value(text, 'process_resident_memory_bytes')).toBeGreaterThan(0)
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds /m)
    expect(text).not.toContain('tokenward_process_')
    expect(text).not.toContain('tokenward_nodejs_')
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

describe('latency, in-flight, IdP and build metrics', () => {
  async function scrape(): Promise<string> {
    return (await fetch(`${world.bff.url}/metrics`)).text()
  }
  const count = (text: string, series: string) => value(text, series) ?? 0

  it('request-duration histograms move under load, for proxied calls and tokenward endpoints, with bounded labels', async () => {
    const { jar } = await login(world.bff.url, { username: 'leo' })
    const before = await scrape()
    const proxied = 'tokenward_http_request_duration_seconds_count{route="/api",method="GET",status_class="2xx"}'
    const own = 'tokenward_http_request_duration_seconds_count{route="/healthz",method="GET",status_class="2xx"}'
    await Promise.all(Array.from({ length: 20 }, () => spaFetch(world.bff, jar, '/api/echo').then((r) => expect(r.status).toBe(200))))
    await Promise.all(Array.from({ length: 10 }, () => fetch(`${world.bff.url}/healthz`).then((r) => expect(r.status).toBe(200))))
    // A method outside the known set is one label value, whatever it is.
    expect((await fetch(`${world.bff.url}/api/echo`, { method: 'PROPFIND' })).status).toBe(403)
    const after = await scrape()

    expect(count(after, proxied) - count(before, proxied)).toBeGreaterThanOrEqual(20)
    expect(count(after, own) - count(before, own)).toBeGreaterThanOrEqual(10)
    expect(after).toMatch(
      /^tokenward_http_request_duration_seconds_bucket\{le="0\.005",route="\/api",method="GET",status_class="2xx"\} \d+$/m,
    )
    expect(value(after, 'tokenward_http_request_duration_seconds_bucket{le="+Inf",route="/api",method="GET",status_class="2xx"}')).toBe(
      value(after, proxied),
    )
    expect(value(after, 'tokenward_http_request_duration_seconds_sum{route="/api",method="GET",status_class="2xx"}')).toBeGreaterThan(0)
    expect(count(after, 'tokenward_http_requests_total{route="/api",method="OTHER",status="403"}')).toBeGreaterThanOrEqual(1)
    expect(after).not.toContain('PROPFIND')
    // Only the scrape itself is in flight while it is collected.
    expect(value(after, 'tokenward_http_requests_in_flight')).toBe(1)
  })

  it('records IdP call duration and outcome by operation for a login and a refresh', async () => {
    const before = await scrape()
    const { jar } = await login(world.bff.url, { username: 'ada' })
    await expireAccessToken(world.bff, jar)
    expect((await spaFetch(world.bff, jar, '/api/echo')).status).toBe(200)
    const after = await scrape()
    for (const operation of ['code_exchange', 'refresh']) {
      const series = `tokenward_idp_request_duration_seconds_count{operation="${operation}"}`
      expect(count(after, series) - count(before, series), operation).toBeGreaterThanOrEqual(1)
      const outcome = `tokenward_idp_requests_total{operation="${operation}",outcome="success"}`
      expect(count(after, outcome) - count(before, outcome), operation).toBeGreaterThanOrEqual(1)
    }
    expect(count(after, 'tokenward_idp_requests_total{operation="discovery",outcome="success"}')).toBeGreaterThanOrEqual(1)
    expect(after).toMatch(/^tokenward_idp_request_duration_seconds_bucket\{le="0\.1",operation="refresh"\} \d+$/m)
    expect(after).not.toMatch(/operation="other"/)
  })

  it('exposes tokenward_build_info with the version, always 1', async () => {
    const text = await scrape()
    expect(text).toMatch(/^tokenward_build_info\{version="\d+\.\d+\.\d+[^"]*",nodejs_version="v\d+[^"]*"\} 1$/m)
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
