import { Agent, request, type OutgoingHttpHeaders } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { auditEvents } from '../helpers/bff.js'
import { startNginx, type Nginx } from '../helpers/nginx.js'
import { startWorld, type World } from '../helpers/world.js'

/*
 * A real proxy hop: nginx from the distribution in front of tokenward, adding
 * the peer it saw to X-Forwarded-For ($proxy_add_x_forwarded_for). Clients
 * reach nginx from distinct loopback addresses (Linux answers on all of
 * 127.0.0.0/8), so each is a different client; nginx reaches tokenward from
 * 127.0.0.1.
 */

const CLIENT_A = '127.0.0.2'
const CLIENT_B = '127.0.0.3'
const ROUTES = [{ prefix: '/open', upstream: '{upstream}', token: 'none' }]

interface Answer {
  status: number
  body: string
}

/** One client: its own source address and its own keep-alive connections to nginx. */
function client(nginx: () => Nginx, localAddress: string) {
  const agent = new Agent({ keepAlive: true, maxSockets: 32 })
  const send = (method: string, path: string, headers: OutgoingHttpHeaders = {}): Promise<Answer> =>
    new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: nginx().port, method, path, headers, localAddress, agent }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (d: string) => (body += d))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
        res.on('error', reject)
      })
      req.on('error', reject)
      req.end()
    })
  return { send, close: () => agent.destroy() }
}

function flood(c: ReturnType<typeof client>, n: number): Promise<number[]> {
  return Promise.all(Array.from({ length: n }, async () => (await c.send('GET', '/auth/login')).status))
}

function count(statuses: number[], status: number): number {
  return statuses.filter((s) => s === status).length
}

function ingressWorld(trust: string | undefined) {
  const state: { world?: World; nginx?: Nginx } = {}
  const nginx = () => state.nginx!
  const a = client(nginx, CLIENT_A)
  const b = client(nginx, CLIENT_B)
  beforeAll(async () => {
    state.world = await startWorld({ env: { BFF_TRUSTED_PROXIES: trust }, routes: ROUTES })
    state.nginx = await startNginx(state.world.bff.url)
  })
  afterAll(async () => {
    a.close()
    b.close()
    await state.nginx?.close()
    await state.world?.close()
  })
  const lastUpstream = () => state.world!.upstream.requests.at(-1)!
  const csrfIps = () =>
    auditEvents(state.world!.bff.logs)
      .filter((e) => e.event === 'csrf_rejected')
      .map((e) => e.ip)
  return { a, b, lastUpstream, csrfIps }
}

describe('behind a real nginx that tokenward trusts (BFF_TRUSTED_PROXIES=127.0.0.1)', () => {
  const { a, b, lastUpstream, csrfIps } = ingressWorld('127.0.0.1')

  it('the upstream sees the client and then the proxy in X-Forwarded-For', async () => {
    expect((await a.send('GET', '/open/who', { 'x-csrf': '1' })).status).toBe(200)
    expect(lastUpstream().headers['x-forwarded-for']).toBe(`${CLIENT_A}, 127.0.0.1`)
    expect((await b.send('GET', '/open/who', { 'x-csrf': '1' })).status).toBe(200)
    expect(lastUpstream().headers['x-forwarded-for']).toBe(`${CLIENT_B}, 127.0.0.1`)
  })

  it('an X-Forwarded-For the client wrote left of its real address is ignored', async () => {
    // nginx turns this into "6.6.6.6, 127.0.0.2"; only the hop nginx added counts.
    expect((await a.send('GET', '/open/who', { 'x-csrf': '1', 'x-forwarded-for': '6.6.6.6' })).status).toBe(200)
    expect(lastUpstream().headers['x-forwarded-for']).toBe(`${CLIENT_A}, 127.0.0.1`)
  })

  it('the audit records the client address of a refused proxied POST (csrf_rejected)', async () => {
    expect((await b.send('POST', '/open/write', { 'x-forwarded-for': '6.6.6.6' })).status).toBe(403)
    expect(csrfIps().at(-1)).toBe(CLIENT_B)
  })

  it('two clients have independent /auth/login limits (300 a minute each)', async () => {
    const first = await flood(a, 300)
    expect(count(first, 302)).toBe(300)
    expect((await a.send('GET', '/auth/login')).status).toBe(429)
    // A forged hop does not get the limited client a fresh budget.
    expect((await a.send('GET', '/auth/login', { 'x-forwarded-for': '198.51.100.9' })).status).toBe(429)
    expect((await b.send('GET', '/auth/login')).status).toBe(302)
  })
})

describe('behind a real nginx that tokenward does not trust (no BFF_TRUSTED_PROXIES)', () => {
  const { a, b, lastUpstream, csrfIps } = ingressWorld(undefined)

  it('every client is the proxy: upstream, audit and login limit all see 127.0.0.1', async () => {
    expect((await a.send('GET', '/open/who', { 'x-csrf': '1', 'x-forwarded-for': '6.6.6.6' })).status).toBe(200)
    // An untrusted chain is replaced by the peer.
    expect(lastUpstream().headers['x-forwarded-for']).toBe('127.0.0.1')
    expect((await b.send('POST', '/open/write')).status).toBe(403)
    expect(csrfIps().at(-1)).toBe('127.0.0.1')
    const first = await flood(a, 300)
    expect(count(first, 302)).toBe(300)
    // The second client shares the proxy's budget, already spent by the first.
    expect((await b.send('GET', '/auth/login')).status).toBe(429)
  })
})
