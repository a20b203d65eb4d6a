import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { tracingEnabled } from '../../src/tracing.js'
import { login } from '../helpers/login.js'
import { spaFetch } from '../helpers/session.js'
import { startWorld, type World } from '../helpers/world.js'

let world: World

beforeAll(async () => {
  world = await startWorld({ env: { BFF_ACCESS_LOG: 'true' } })
})
afterAll(() => world?.close())

type Line = Record<string, unknown>
const parse = (logs: readonly string[]): Line[] => logs.map((l) => JSON.parse(l) as Line)

/** The access line of a request; written once the answer is done, so waited for briefly. */
async function accessLine(logs: readonly string[], requestId: string): Promise<Line | undefined> {
  for (let i = 0; i < 50; i++) {
    const line = parse(logs).find((l) => l.access === true && l.requestId === requestId)
    if (line) return line
    await new Promise((r) => setTimeout(r, 20))
  }
  return undefined
}

const BROWSER_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'
const traceparent = `00-${BROWSER_TRACE}-00f067aa0ba902b7-01`

describe('BFF_ACCESS_LOG=true: one JSON line per request', () => {
  it('logs a proxied call: method, route, path without query, status, duration, request id, client address', async () => {
    const { jar } = await login(world.bff.url, { username: 'mia' })
    const res = await spaFetch(world.bff, jar, '/api/echo/items?token=s3cr3t-in-query', {
      headers: { 'x-request-id': 'access-proxied-1', traceparent },
    })
    expect(res.status).toBe(200)
    const line = await accessLine(world.bff.logs, 'access-proxied-1')
    expect(line).toMatchObject({
      level: 'info',
      msg: 'request',
      method: 'GET',
      route: '/api',
      path: '/api/echo/items',
      status: 200,
      client: '127.0.0.1',
    })
    expect(typeof line!.duration_ms).toBe('number')
    expect(line!.duration_ms).toBeGreaterThan(0)
    expect(JSON.stringify(parse(world.bff.logs))).not.toContain('s3cr3t-in-query')
  })

  it("logs tokenward's own endpoints and refusals the same way", async () => {
    expect((await fetch(`${world.bff.url}/healthz?probe=1`, { headers: { 'x-request-id': 'access-own-1', traceparent } })).status).toBe(200)
    expect(await accessLine(world.bff.logs, 'access-own-1')).toMatchObject({
      method: 'GET',
      route: '/healthz',
      path: '/healthz',
      status: 200,
      client: '127.0.0.1',
    })
    expect((await fetch(`${world.bff.url}/nowhere/${'x'.repeat(10)}?q=1`, { headers: { 'x-request-id': 'access-own-2' } })).status).toBe(
      404,
    )
    expect(await accessLine(world.bff.logs, 'access-own-2')).toMatchObject({ route: 'other', path: '/nowhere/xxxxxxxxxx', status: 404 })
    // A proxied request refused before it reached the upstream.
    expect((await fetch(`${world.bff.url}/api/echo`, { headers: { 'x-request-id': 'access-proxied-2' } })).status).toBe(403)
    expect(await accessLine(world.bff.logs, 'access-proxied-2')).toMatchObject({ route: '/api', path: '/api/echo', status: 403 })
  })

  it('names the trace and span on every line of a request when tracing is on, and on none when it is off', async () => {
    await fetch(`${world.bff.url}/auth/me`, { headers: { 'x-request-id': 'access-traced-1', traceparent } })
    await accessLine(world.bff.logs, 'access-traced-1')
    const lines = parse(world.bff.logs).filter((l) => l.requestId === 'access-traced-1' || l.requestId === 'access-proxied-1')
    expect(lines.length).toBeGreaterThanOrEqual(2)
    if (tracingEnabled()) {
      for (const line of lines) {
        expect(line.trace_id, JSON.stringify(line)).toBe(BROWSER_TRACE)
        expect(line.span_id).toMatch(/^[0-9a-f]{16}$/)
        expect(line.span_id).not.toBe('00f067aa0ba902b7')
      }
    } else {
      for (const line of parse(world.bff.logs)) expect(line).not.toHaveProperty('trace_id')
    }
  })
})

describe('BFF_ACCESS_LOG unset', () => {
  it('writes no access lines', async () => {
    const other = await world.startInstance({ BFF_ACCESS_LOG: undefined })
    expect((await fetch(`${other.url}/healthz`, { headers: { 'x-request-id': 'access-off-1' } })).status).toBe(200)
    expect((await fetch(`${other.url}/api/echo`, { headers: { 'x-request-id': 'access-off-2' } })).status).toBe(403)
    await new Promise((r) => setTimeout(r, 100))
    expect(parse(other.logs).filter((l) => l.access === true)).toEqual([])
  })
})
