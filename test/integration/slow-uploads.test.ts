// Slow uploads must not starve an upstream's connection pool (issue 13, item
// 7). Anonymous clients that declare a body and then trickle it a few bytes a
// second used to hold one pooled upstream connection each for the whole route
// timeout; with enough of them (the pool has 512 per upstream) a logged-in
// user's GET to the same upstream waited for them. Here the attack runs end to
// end against the real server: raw sockets trickling bodies to a `none` route,
// and a real user's GET through the default `user` route to the same upstream.
import { connect, type Socket } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { login, type CookieJar } from '../helpers/login.js'
import { spaFetch } from '../helpers/session.js'
import { startWorld, type World } from '../helpers/world.js'

let world: World
let jar: CookieJar

beforeAll(async () => {
  world = await startWorld({
    routes: [
      { prefix: '/api', upstream: '{upstream}', token: 'user' },
      // The same upstream origin, so the same connection pool.
      { prefix: '/open', upstream: '{upstream}', token: 'none', timeoutMs: 10_000 },
      // A short route timeout: a stalled body is cut after a third of it.
      { prefix: '/quick', upstream: '{upstream}', token: 'none', timeoutMs: 3_000 },
    ],
  })
  jar = (await login(world.bff.url)).jar
}, 60_000)
afterAll(() => world?.close())

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** A client uploading a body a few bytes at a time, recording what the server answers. */
interface Trickler {
  readonly socket: Socket
  /** The answer's status code, once one arrived. */
  status(): number | undefined
  /** The answer as received so far. */
  answer(): string
  /** When the server answered or closed the connection (ms since the upload started). */
  endedAfter(): number | undefined
  /** Whether the connection is closed. */
  closed(): boolean
  stop(): void
}

interface TrickleOptions {
  /** Declares this Content-Length; chunked when undefined. */
  declared?: number
  /** Sends this many bytes right away (declared bodies only). */
  first?: number
  /** A pause between two trickled writes; 0: send the first bytes, then nothing. */
  everyMs: number
  /** The client's own address (any 127.0.0.0/8 address on loopback): another client. */
  localAddress?: string
}

function trickle(path: string, o: TrickleOptions): Trickler {
  const { port } = new URL(world.bff.url)
  const socket = connect({ port: Number(port), host: '127.0.0.1', localAddress: o.localAddress })
  const started = performance.now()
  let answer = ''
  let ended: number | undefined
  let closed = false
  const framing = o.declared === undefined ? 'transfer-encoding: chunked' : `content-length: ${o.declared}`
  const piece = () => (o.declared === undefined ? '3\r\nabc\r\n' : 'abc')
  let timer: NodeJS.Timeout | undefined
  socket.on('connect', () => {
    socket.write(`POST ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\nx-csrf: 1\r\ncontent-type: application/octet-stream\r\n${framing}\r\n\r\n`)
    socket.write(o.first ? 'a'.repeat(o.first) : piece())
    if (o.everyMs > 0) timer = setInterval(() => socket.writable && socket.write(piece()), o.everyMs)
  })
  socket.on('data', (d: Buffer) => {
    answer += d.toString('latin1')
    ended ??= performance.now() - started
  })
  socket.on('error', () => {})
  socket.on('close', () => {
    closed = true
    ended ??= performance.now() - started
    clearInterval(timer)
  })
  return {
    socket,
    status: () => (/^HTTP\/1\.1 (\d{3}) /.exec(answer)?.[1] ? Number(/^HTTP\/1\.1 (\d{3}) /.exec(answer)![1]) : undefined),
    answer: () => answer,
    endedAfter: () => ended,
    closed: () => closed,
    stop() {
      clearInterval(timer)
      socket.destroy()
    },
  }
}

/** Opens `n` trickling uploads and waits until each is connected and tokenward had time to act on it. */
async function openMany(n: number, path: string, o: (i: number) => TrickleOptions): Promise<Trickler[]> {
  const all = Array.from({ length: n }, (_, i) => trickle(path, o(i)))
  await Promise.all(
    all.map(
      (t) =>
        new Promise<void>((resolve) =>
          t.socket.readyState === 'open' ? resolve() : t.socket.once('connect', () => resolve()).once('close', () => resolve()),
        ),
    ),
  )
  await sleep(1500)
  return all
}

/** A logged-in user's GET to the same upstream, and how long it took (5 s at most). */
async function timedUserGet(): Promise<{ status: number; ms: number }> {
  const started = performance.now()
  try {
    const res = await spaFetch(world.bff, jar, '/api/echo', { signal: AbortSignal.timeout(5000) })
    await res.arrayBuffer()
    return { status: res.status, ms: performance.now() - started }
  } catch {
    return { status: 0, ms: performance.now() - started }
  }
}

function statuses(all: Trickler[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const t of all) {
    const k = String(t.status() ?? (t.closed() ? 'closed' : 'open'))
    out[k] = (out[k] ?? 0) + 1
  }
  return out
}

describe('slow uploads cannot starve an upstream connection pool', () => {
  it('520 clients trickling 1 MB bodies from one address: a user GET to the same upstream still answers at once', async () => {
    const all = await openMany(520, '/open/upload', () => ({ declared: 1_000_000, everyMs: 1000 }))
    try {
      const get = await timedUserGet()
      const held = await world.upstream.connections()
      const seen = statuses(all)
      console.info(
        `one address: user GET ${get.status} in ${get.ms.toFixed(0)} ms; upstream connections ${held}; uploads ${JSON.stringify(seen)}`,
      )
      expect(get.status).toBe(200)
      expect(get.ms).toBeLessThan(1000)
      // Bodies up to 1 MiB are received before a connection is taken, and one
      // address streams at most a few: the trickles hold next to nothing upstream.
      expect(held).toBeLessThan(32)
      // Whoever was refused got 429 with Retry-After, never an error of tokenward's own.
      for (const t of all.filter((x) => x.status() !== undefined)) {
        expect(t.status()).toBe(429)
        expect(t.answer()).toMatch(/\r\nretry-after: \d+\r\n/i)
      }
      // Some are still receiving (buffered, within the memory budget): not refused.
      expect(seen.open).toBeGreaterThan(0)
    } finally {
      for (const t of all) t.stop()
    }
  }, 30_000)

  it('520 clients from 65 addresses trickling 4 MB bodies (streamed): the user GET still answers at once', async () => {
    const all = await openMany(520, '/open/upload', (i) => ({
      declared: 4_000_000,
      everyMs: 1000,
      localAddress: `127.0.1.${10 + (i % 65)}`,
    }))
    try {
      const get = await timedUserGet()
      const held = await world.upstream.connections()
      console.info(
        `65 addresses: user GET ${get.status} in ${get.ms.toFixed(0)} ms; upstream connections ${held}; uploads ${JSON.stringify(statuses(all))}`,
      )
      expect(get.status).toBe(200)
      expect(get.ms).toBeLessThan(1000)
      // Streamed uploads may take a quarter of the pool at most.
      expect(held).toBeLessThanOrEqual(128 + 8)
      for (const t of all.filter((x) => x.status() !== undefined)) expect(t.status()).toBe(429)
    } finally {
      for (const t of all) t.stop()
    }
  }, 30_000)

  it('chunked uploads beyond the per-client cap are refused with 429 and Retry-After; other addresses are not', async () => {
    const mine = await openMany(12, '/open/upload', () => ({ everyMs: 500, localAddress: '127.0.2.1' }))
    try {
      const refused = mine.filter((t) => t.status() !== undefined)
      console.info(`per-client cap: ${JSON.stringify(statuses(mine))}`)
      expect(refused).toHaveLength(4)
      for (const t of refused) {
        expect(t.status()).toBe(429)
        expect(t.answer()).toMatch(/\r\nretry-after: \d+\r\n/i)
        expect(t.answer()).toContain('"error":"rate_limited"')
        // The unread rest of the body is not drained: the connection closes.
        expect(t.answer()).toMatch(/\r\nconnection: close\r\n/i)
      }
      // Another client still streams.
      const other = trickle('/open/upload', { everyMs: 500, localAddress: '127.0.2.2' })
      await sleep(500)
      expect(other.status()).toBeUndefined()
      other.stop()
    } finally {
      for (const t of mine) t.stop()
    }
  })

  it('an upload that stops sending is cut after the idle timeout (a third of the route timeout), and the upstream never gets a complete request', async () => {
    const before = world.upstream.requests.length
    // Chunked, and a declared body larger than the buffer threshold: both stream.
    const chunked = trickle('/quick/idle-chunked', { everyMs: 0 })
    const declared = trickle('/quick/idle-declared', { declared: 4_000_000, first: 100_000, everyMs: 0 })
    await sleep(2600)
    for (const t of [chunked, declared]) {
      console.info(`idle stream: ${t.status() ?? 'no answer'} after ${t.endedAfter()?.toFixed(0)} ms`)
      // Cut well before the route's own 3 s timeout (which would answer 504).
      expect(t.status()).toBe(408)
      expect(t.endedAfter()).toBeLessThan(2000)
      expect(t.answer()).toContain('"error":"invalid_request"')
      expect(t.closed()).toBe(true)
      t.stop()
    }
    expect(world.upstream.requests.slice(before).filter((r) => r.url.includes('/idle-'))).toEqual([])
  })

  it('a small declared body that does not arrive within the route timeout is refused with 408 and the connection closed', async () => {
    const t = trickle('/quick/small', { declared: 1000, everyMs: 0 })
    await sleep(3600)
    console.info(`stalled small body: ${t.status() ?? 'no answer'} after ${t.endedAfter()?.toFixed(0)} ms`)
    expect(t.status()).toBe(408)
    expect(t.answer()).toContain('"error":"invalid_request"')
    expect(t.closed()).toBe(true)
    t.stop()
  })

  it('after the attacks every streaming slot is free again: a full share streams, one more is refused', async () => {
    await sleep(500)
    // 8 from the address of the first attack, 8 from each of 15 of the second's: 128, the upstream's whole share.
    const all = await openMany(128, '/open/upload', (i) => ({
      everyMs: 500,
      localAddress: i < 8 ? '127.0.0.1' : `127.0.1.${10 + Math.floor((i - 8) / 8)}`,
    }))
    try {
      expect(statuses(all)).toEqual({ open: 128 })
      const extra = trickle('/open/upload', { everyMs: 500, localAddress: '127.0.2.3' })
      await sleep(500)
      expect(extra.status()).toBe(429)
      extra.stop()
    } finally {
      for (const t of all) t.stop()
    }
  })

  it('uploads within the bounds still arrive whole: buffered, streamed and chunked', async () => {
    for (const [size, chunked] of [
      [1000, false],
      [900_000, false],
      [3_000_000, false],
      [3_000_000, true],
    ] as const) {
      const body = Buffer.alloc(size, 7)
      const stream = chunked ? new Blob([body]).stream() : undefined
      const res = await spaFetch(world.bff, jar, '/open/echo', {
        method: 'POST',
        body: stream ?? body,
        ...(stream ? { duplex: 'half' } : {}),
        headers: { 'content-type': 'application/octet-stream' },
      } as RequestInit)
      expect(res.status).toBe(200)
      expect(((await res.json()) as { bodyBytes: number }).bodyBytes).toBe(size)
    }
  })
})
