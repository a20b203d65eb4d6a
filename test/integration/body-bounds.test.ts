// Every endpoint that may receive a request body, attacked with a 256 MiB body
// (chunked or of declared length) against the production build in a process
// of its own, so its resident memory is tokenward's alone: the body is never
// held whole, reading stops at the endpoint's bound (413 or a closed
// connection) instead of draining the rest, and the process lives on. `none`
// routes need no token and the rest refuse before asking the IdP, so the IdP
// is left unreachable.
import { spawn, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { testSecrets } from '../helpers/bff.js'
import { buildCli, waitHealthy } from '../helpers/cli-build.js'
import { freePort } from '../helpers/ports.js'
import { startEchoUpstream, type EchoUpstream } from '../helpers/upstream.js'

const MiB = 1024 * 1024

let build: ReturnType<typeof buildCli>
let upstream: EchoUpstream
const children: ChildProcess[] = []
/** The instance measured (tracing off). */
let main: { pid: number; port: number }
/** With tracing on: the proxy entry's traced path must close the connection on refusals too. */
let traced: { pid: number; port: number }

/** `node <cli> serve` with routes to the echo upstream; the IdP is unreachable. */
async function serve(env: Record<string, string> = {}): Promise<{ pid: number; port: number }> {
  const port = await freePort()
  const secrets = testSecrets()
  const child = spawn(process.execPath, [build.cli, 'serve'], {
    env: {
      PATH: process.env.PATH,
      BFF_COOKIE_SECRET: secrets.cookieSecret,
      BFF_ENCRYPTION_KEYS: secrets.encryptionKeys,
      BFF_PUBLIC_URL: `http://127.0.0.1:${port}`,
      // Nothing listens there: `none` routes never ask the IdP.
      BFF_ISSUER: 'http://127.0.0.1:9',
      BFF_CLIENT_ID: 'tokenward-test',
      BFF_CLIENT_SECRET: 'not-used-by-none-routes',
      BFF_ROUTES: JSON.stringify([
        { prefix: '/small', upstream: `${upstream.url}/small`, token: 'none', maxBodyBytes: 64 * 1024 },
        { prefix: '/big', upstream: `${upstream.url}/big`, token: 'none' },
      ]),
      BFF_REDIS_URL: inject('redisUrl'),
      BFF_REDIS_PREFIX: `tokenward-test:${randomUUID()}:`,
      BFF_ALLOW_HTTP: 'true',
      BFF_HOST: '127.0.0.1',
      BFF_PORT: String(port),
      BFF_LOG_LEVEL: 'warn',
      NODE_ENV: 'production',
      ...env,
    },
    stdio: 'ignore',
  })
  children.push(child)
  await waitHealthy(`http://127.0.0.1:${port}`)
  return { pid: child.pid!, port }
}

beforeAll(async () => {
  build = buildCli('body-bounds')
  upstream = await startEchoUpstream()
  main = await serve()
  // Spans go nowhere (nothing listens there); only the code path matters.
  traced = await serve({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9', OTEL_BSP_SCHEDULE_DELAY: '60000' })
}, 120_000)

afterAll(async () => {
  await Promise.all(
    children
      .filter((c) => c.exitCode === null)
      .map((c) => {
        const exited = new Promise((resolve) => c.once('exit', resolve))
        c.kill('SIGTERM')
        return exited
      }),
  )
  await upstream?.close()
  build?.cleanup()
})

/** A line of /proc/<pid>/status, in MiB (VmRSS: resident now, VmHWM: the peak so far). */
function memory(field: 'VmRSS' | 'VmHWM'): number {
  const kb = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${main.pid}/status`, 'utf8'))![1]!
  return Number(kb) / 1024
}

interface Outcome {
  /** Bytes of the body the client got to hand to its socket before tokenward stopped taking them. */
  written: number
  status: number | undefined
  answer: string
  /** Whether tokenward closed the connection (rather than leave it open, unread). */
  closed: boolean
}

/**
 * POSTs `total` bytes of body, chunked or with a declared length, as fast as
 * tokenward takes them, until all is sent or tokenward closes the connection
 * (or stops reading for 3 s); then waits up to 5 s for the answer.
 */
function upload(
  port: number,
  path: string,
  total: number,
  chunked: boolean,
  method = 'POST',
  headers = 'x-csrf: 1\r\ncontent-type: application/octet-stream\r\n',
): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    const piece = Buffer.alloc(MiB, 0x61)
    let written = 0
    let answer = ''
    let closed = false
    let done = false
    let wake: (() => void) | undefined
    const finish = () => {
      if (done) return
      done = true
      clearTimeout(deadline)
      socket.destroy()
      const status = /^HTTP\/1\.1 (\d{3}) /.exec(answer)?.[1]
      resolve({ written, status: status ? Number(status) : undefined, answer, closed })
    }
    let deadline: NodeJS.Timeout | undefined
    socket.on('data', (d: Buffer) => (answer += d.toString('latin1')))
    socket.on('error', () => {})
    socket.on('close', () => {
      closed = true
      wake?.()
      finish()
    })
    socket.on('drain', () => wake?.())
    const send = async (): Promise<void> => {
      const framing = chunked ? 'transfer-encoding: chunked' : `content-length: ${total}`
      socket.write(`${method} ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\n${headers}${framing}\r\n\r\n`)
      while (written < total && !closed) {
        if (chunked) socket.write(`${piece.length.toString(16)}\r\n`)
        socket.write(piece)
        const ok = socket.write(chunked ? '\r\n' : '')
        written += piece.length
        if (!ok) {
          // Wait until tokenward reads on, closes, or evidently stopped reading.
          const stalled = await new Promise<boolean>((r) => {
            const t = setTimeout(() => r(true), 3000)
            wake = () => {
              clearTimeout(t)
              r(false)
            }
          })
          wake = undefined
          if (stalled) break
        }
      }
      if (!closed && chunked && written >= total) socket.write('0\r\n\r\n')
      deadline = setTimeout(finish, 5000)
    }
    socket.on('connect', () => {
      // A failure while sending fails the test instead of leaving it waiting.
      send().catch((err: unknown) => {
        socket.destroy()
        reject(err as Error)
      })
    })
  })
}

describe('a 256 MiB request body leaves resident memory flat and is not read past the bound', () => {
  const form = 'content-type: application/x-www-form-urlencoded\r\n'
  const csrf = 'x-csrf: 1\r\n'
  /** `bound`: what tokenward may read of the body (0: refused before reading); `statuses`: acceptable answers. */
  const cases: Array<{
    name: string
    method?: string
    path: string
    headers?: string
    chunked: boolean
    bound: number
    statuses: number[]
    proxied?: boolean
  }> = [
    {
      name: 'chunked to a route with maxBodyBytes 64 KiB',
      path: '/small/upload',
      chunked: true,
      bound: 64 * 1024,
      statuses: [413],
      proxied: true,
    },
    {
      name: 'declared length to a route with maxBodyBytes 64 KiB',
      path: '/small/upload',
      chunked: false,
      bound: 0,
      statuses: [413],
      proxied: true,
    },
    {
      name: 'chunked to a route with the default 10 MiB',
      path: '/big/upload',
      chunked: true,
      bound: 10 * MiB,
      statuses: [413],
      proxied: true,
    },
    {
      name: 'declared length to a route with the default 10 MiB',
      path: '/big/upload',
      chunked: false,
      bound: 0,
      statuses: [413],
      proxied: true,
    },
    {
      name: 'chunked to the back-channel logout (16 KiB)',
      path: '/auth/backchannel-logout',
      headers: form,
      chunked: true,
      bound: 16 * 1024,
      statuses: [413],
    },
    {
      name: 'declared length to the back-channel logout',
      path: '/auth/backchannel-logout',
      headers: form,
      chunked: false,
      bound: 0,
      statuses: [413],
    },
    // Endpoints that read no body: never read; after the answer at most 1 MiB
    // or 500 ms more are read so the answer can arrive, then the connection closes.
    {
      name: 'chunked to POST /auth/logout (reads no body)',
      path: '/auth/logout',
      headers: csrf,
      chunked: true,
      bound: MiB,
      statuses: [200],
    },
    {
      name: 'chunked to GET /auth/session (reads no body)',
      method: 'GET',
      path: '/auth/session',
      headers: csrf,
      chunked: true,
      bound: MiB,
      statuses: [400, 401],
    },
    { name: 'chunked to a path nothing serves', path: '/nothing-here', chunked: true, bound: MiB, statuses: [404] },
    { name: 'declared length to a path nothing serves', path: '/nothing-here', chunked: false, bound: MiB, statuses: [404] },
  ]
  for (const { name, method, path, headers, chunked, bound, statuses, proxied } of cases) {
    it(
      name,
      async () => {
        const before = memory('VmRSS')
        const requestsBefore = upstream.requests.length
        const out = await upload(main.port, path, 256 * MiB, chunked, method, headers)
        await new Promise((r) => setTimeout(r, 200))
        const after = memory('VmRSS')
        const peak = memory('VmHWM')
        console.info(
          `${name}: answer ${out.status ?? 'none (closed)'}, client wrote ${(out.written / MiB).toFixed(0)} MiB; ` +
            `VmRSS ${before.toFixed(0)} -> ${after.toFixed(0)} MiB, peak ${peak.toFixed(0)} MiB`,
        )
        // The expected refusal, or the connection closed before the answer was read.
        if (out.status !== undefined) {
          expect(statuses).toContain(out.status)
          if (out.status === 413) {
            expect(out.answer).toContain('"error":"payload_too_large"')
            expect(out.answer).toMatch(/\r\nconnection: close\r\n/i)
          }
        }
        // Reading stopped at the bound: what the client could hand over beyond it
        // is what the two sockets' buffers hold, never the rest of 256 MiB.
        expect(out.written).toBeLessThan(bound + 32 * MiB)
        expect(out.closed).toBe(true)
        expect(after - before).toBeLessThan(64)
        expect(peak - before).toBeLessThan(64)
        // The upstream never received a complete request.
        if (proxied) expect(upstream.requests.slice(requestsBefore)).toEqual([])
        // The process lives on.
        expect((await fetch(`http://127.0.0.1:${main.port}/healthz`)).status).toBe(200)
      },
      60_000,
    )
  }

  it('with tracing on: a declared 256 MiB body is refused without being read', async () => {
    const out = await upload(traced.port, '/small/upload', 256 * MiB, false)
    console.info(
      `traced, declared /small/upload: answer ${out.status ?? 'none (closed)'}, client wrote ${(out.written / MiB).toFixed(0)} MiB`,
    )
    if (out.status !== undefined) expect(out.answer).toMatch(/\r\nconnection: close\r\n/i)
    expect(out.written).toBeLessThan(32 * MiB)
    expect(out.closed).toBe(true)
  }, 60_000)
})

describe('bodies received whole before dispatch are bounded by a process-wide budget', () => {
  it('300 clients that send all but the last byte of a 1 MiB body and stall hold the budget (32 MiB), not 300 MiB', async () => {
    const before = memory('VmRSS')
    const sockets = await Promise.all(
      Array.from(
        { length: 300 },
        (_, i) =>
          new Promise<ReturnType<typeof connect>>((resolve) => {
            const socket = connect({
              port: main.port,
              host: '127.0.0.1',
              localAddress: `127.0.${3 + Math.floor(i / 200)}.${10 + (i % 200)}`,
            })
            socket.on('error', () => {})
            socket.on('connect', () => {
              socket.write(`POST /big/upload HTTP/1.1\r\nhost: 127.0.0.1\r\nx-csrf: 1\r\ncontent-length: ${MiB}\r\n\r\n`)
              socket.write(Buffer.alloc(MiB - 1, 0x62), () => resolve(socket))
            })
          }),
      ),
    )
    await new Promise((r) => setTimeout(r, 1000))
    const held = memory('VmRSS')
    for (const s of sockets) s.destroy()
    await new Promise((r) => setTimeout(r, 500))
    console.info(
      `300 stalled 1 MiB bodies: VmRSS ${before.toFixed(0)} -> ${held.toFixed(0)} MiB while held, ${memory('VmRSS').toFixed(0)} MiB after`,
    )
    // The budget plus the sockets' and parser's own overhead (about 60 MiB
    // measured on a loaded machine); without the budget this is over 300 MiB.
    expect(held - before).toBeLessThan(128)
  }, 60_000)
})
