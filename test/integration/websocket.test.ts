import { randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { auditEvents } from '../helpers/bff.js'
import { login } from '../helpers/login.js'
import { sessionOf, spaFetch } from '../helpers/session.js'
import { startWorld, type World } from '../helpers/world.js'

let world: World

beforeAll(async () => {
  world = await startWorld({
    routes: [
      { prefix: '/api', upstream: '{upstream}', token: 'user' },
      { prefix: '/ws', upstream: '{upstream}/socket', token: 'user', websocket: true },
    ],
  })
})
afterAll(() => world?.close())

interface Handshake {
  socket: Socket
  head: string
  received: () => string
  closed: Promise<void>
}

/** A raw WebSocket handshake (RFC 6455 §4.1), as a browser would send it. */
function handshake(path: string, headers: Record<string, string>): Promise<Handshake> {
  const { port } = new URL(world.bff.url)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1')
    let buf = ''
    let head: string | undefined
    const closed = new Promise<void>((r) => socket.on('close', () => r()))
    socket.on('error', reject)
    socket.on('data', (d) => {
      buf += d.toString('latin1')
      if (head === undefined && buf.includes('\r\n\r\n')) {
        const i = buf.indexOf('\r\n\r\n')
        head = buf.slice(0, i)
        buf = buf.slice(i + 4)
        resolve({ socket, head, received: () => buf, closed })
      }
    })
    socket.on('end', () => {
      if (head === undefined) resolve({ socket, head: buf, received: () => '', closed })
    })
    const lines = [
      `GET ${path} HTTP/1.1`,
      `Host: ${new URL(world.bff.url).host}`,
      'Upgrade: websocket',
      'Connection: Upgrade',
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
      'Sec-WebSocket-Version: 13',
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    ]
    socket.write(`${lines.join('\r\n')}\r\n\r\n`)
  })
}

describe('WebSocket proxying (routes with "websocket": true)', () => {
  it('authenticates the upgrade by the session cookie, sends the bearer token upstream, never the cookie, and relays both ways', async () => {
    const { jar } = await login(world.bff.url)
    const s = (await sessionOf(world.bff, jar))!
    const ws = await handshake('/ws/chat?room=1', { Origin: world.bff.url, Cookie: jar.header(world.bff.url) })
    expect(ws.head).toMatch(/^HTTP\/1\.1 101 /)
    expect(ws.head.toLowerCase()).toContain('sec-websocket-accept:')
    expect(ws.head.toLowerCase()).not.toContain('set-cookie')
    const up = world.upstream.requests.at(-1)!
    expect(up.url).toBe('/socket/chat?room=1')
    expect(up.headers.authorization).toBe(`Bearer ${s.data.accessToken}`)
    expect(up.headers.cookie).toBeUndefined()
    ws.socket.write('hello')
    for (let i = 0; i < 50 && ws.received() !== 'hello'; i++) await new Promise((r) => setTimeout(r, 10))
    expect(ws.received()).toBe('hello')
    ws.socket.destroy()
  })

  it('refuses a handshake from another origin, or without one (cross-site WebSocket hijacking)', async () => {
    const { jar } = await login(world.bff.url)
    const n = world.upstream.requests.length
    for (const origin of ['https://evil.example', undefined]) {
      const ws = await handshake('/ws/chat', { ...(origin ? { Origin: origin } : {}), Cookie: jar.header(world.bff.url) })
      expect(ws.head).toMatch(/^HTTP\/1\.1 403 /)
      await ws.closed
      expect(ws.received()).toContain('"error":"csrf_failed"')
    }
    expect(world.upstream.requests.length).toBe(n)
    expect(auditEvents(world.bff.logs).some((e) => e.event === 'csrf_rejected' && String(e.reason).includes('websocket'))).toBe(true)
  })

  it('no session: 401; a route without websocket: 404', async () => {
    const anon = await handshake('/ws/chat', { Origin: world.bff.url })
    expect(anon.head).toMatch(/^HTTP\/1\.1 401 /)
    const { jar } = await login(world.bff.url)
    const plain = await handshake('/api/chat', { Origin: world.bff.url, Cookie: jar.header(world.bff.url) })
    expect(plain.head).toMatch(/^HTTP\/1\.1 404 /)
  })

  it('closes the connection when the session ends (here: logout in another tab, on another instance)', async () => {
    const other = await world.startInstance()
    const { jar } = await login(world.bff.url)
    const ws = await handshake('/ws/chat', { Origin: world.bff.url, Cookie: jar.header(world.bff.url) })
    expect(ws.head).toMatch(/^HTTP\/1\.1 101 /)
    const t0 = Date.now()
    expect((await spaFetch(other, jar, '/auth/logout', { method: 'POST' })).status).toBe(200)
    await ws.closed
    expect(Date.now() - t0).toBeLessThan(1000)
  })
})
