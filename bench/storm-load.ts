// Load generator child of the refresh-storm scenario (bench/scenarios/storm.ts).
// One child per tokenward process. It opens `cookies.length × perSession`
// keep-alive connections to its process (each proven with one GET /healthz,
// in batches, so the listen backlog never overflows), prints `ready`, waits
// for `go` on stdin, then writes one request per connection at once: every
// session has `perSession` requests in flight on this process at the same
// moment. When all are answered it prints one JSON line (StormLoadResult).
//
// A bare HTTP/1.1 client on net sockets: node:http's agent cannot be told to
// keep thousands of idle connections open and use each exactly once.
//
// Usage: node --import tsx bench/storm-load.ts, then on stdin one line of
// JSON StormLoadOptions and, when it printed `ready`, a line `go`.

import { connect, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import type { StormLoadOptions, StormLoadResult } from './lib/load-types.js'

interface Response {
  status: number
  body: string
}

/** One connection, one request at a time; parses Content-Length and chunked responses. */
class Connection {
  readonly #socket: Socket
  #buffer: Buffer = Buffer.alloc(0)
  #pending: { resolve: (r: Response) => void; reject: (e: Error) => void } | undefined

  private constructor(socket: Socket) {
    this.#socket = socket
    socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) => {
      this.#buffer = this.#buffer.length ? Buffer.concat([this.#buffer, chunk]) : chunk
      this.#parse()
    })
    const fail = (err: Error) => {
      const p = this.#pending
      this.#pending = undefined
      p?.reject(err)
    }
    socket.on('error', fail)
    socket.on('close', () => fail(new Error('connection closed before the response was complete')))
  }

  static open(host: string, port: number): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host, port })
      socket.once('connect', () => {
        socket.off('error', reject)
        resolve(new Connection(socket))
      })
      socket.once('error', reject)
    })
  }

  /** Writes the request; resolves when the whole response arrived. */
  send(raw: string): Promise<Response> {
    if (this.#pending) return Promise.reject(new Error('one request at a time'))
    return new Promise((resolve, reject) => {
      this.#pending = { resolve, reject }
      this.#socket.write(raw)
    })
  }

  #parse(): void {
    if (!this.#pending) return
    const buf = this.#buffer
    const headEnd = buf.indexOf('\r\n\r\n')
    if (headEnd < 0) return
    const head = buf.subarray(0, headEnd).toString('latin1')
    const status = Number(head.slice(9, 12))
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1]
    let bodyEnd: number
    let body: string
    if (length !== undefined) {
      bodyEnd = headEnd + 4 + Number(length)
      if (buf.length < bodyEnd) return
      body = buf.subarray(headEnd + 4, bodyEnd).toString('utf8')
    } else if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
      let at = headEnd + 4
      const parts: Buffer[] = []
      for (;;) {
        const lineEnd = buf.indexOf('\r\n', at)
        if (lineEnd < 0) return
        const size = parseInt(buf.subarray(at, lineEnd).toString('latin1'), 16)
        if (size === 0) {
          // No trailers expected: the last chunk ends with an empty line.
          if (buf.length < lineEnd + 4) return
          bodyEnd = lineEnd + 4
          break
        }
        if (buf.length < lineEnd + 2 + size + 2) return
        parts.push(buf.subarray(lineEnd + 2, lineEnd + 2 + size))
        at = lineEnd + 2 + size + 2
      }
      body = Buffer.concat(parts).toString('utf8')
    } else {
      bodyEnd = headEnd + 4 // 204, 304 or a body-less error: nothing follows
      body = ''
    }
    this.#buffer = buf.subarray(bodyEnd)
    const p = this.#pending
    this.#pending = undefined
    p.resolve({ status, body })
  }

  destroy(): void {
    this.#socket.destroy()
  }
}

function requestText(host: string, path: string, cookie?: string): string {
  const lines = [`GET ${path} HTTP/1.1`, `Host: ${host}`, 'Accept: application/json', 'X-CSRF: 1']
  if (cookie) lines.push(`Cookie: ${cookie}`)
  return `${lines.join('\r\n')}\r\n\r\n`
}

/** stdin, line by line: the options first (too large for argv with thousands of cookies), then `go`. */
const stdinLines = (() => {
  const queue: string[] = []
  const waiters: Array<(line: string) => void> = []
  let partial = ''
  process.stdin.on('data', (d: Buffer) => {
    partial += d.toString()
    let nl: number
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl)
      partial = partial.slice(nl + 1)
      const waiter = waiters.shift()
      if (waiter) waiter(line)
      else queue.push(line)
    }
  })
  return (): Promise<string> => {
    const line = queue.shift()
    return line !== undefined ? Promise.resolve(line) : new Promise((resolve) => waiters.push(resolve))
  }
})()

async function main(): Promise<void> {
  const o = JSON.parse(await stdinLines()) as StormLoadOptions
  const origin = new URL(o.origin)
  const port = Number(origin.port)
  const healthz = requestText(origin.host, '/healthz')

  // Setup: one connection per (session, slot), each used once for /healthz so
  // tokenward has accepted it before the storm starts.
  const t0 = performance.now()
  const jobs = o.cookies.flatMap((cookie) => Array.from({ length: o.perSession }, () => cookie))
  const conns: Array<{ conn: Connection; cookie: string }> = []
  for (let i = 0; i < jobs.length; i += o.connectBatch) {
    const batch = jobs.slice(i, i + o.connectBatch)
    const opened = await Promise.all(
      batch.map(async (cookie) => {
        const conn = await Connection.open(origin.hostname, port)
        const r = await conn.send(healthz)
        if (r.status !== 200) throw new Error(`/healthz answered ${r.status}`)
        return { conn, cookie }
      }),
    )
    conns.push(...opened)
  }
  const setupMs = performance.now() - t0
  // Interleave sessions so that the requests of one session are not written
  // back to back: session 0 slot 0, session 1 slot 0, ..., session 0 slot 1, ...
  const order: typeof conns = []
  for (let slot = 0; slot < o.perSession; slot++) {
    for (let s = 0; s < o.cookies.length; s++) order.push(conns[s * o.perSession + slot]!)
  }
  const texts = new Map(o.cookies.map((c) => [c, requestText(origin.host, o.path, c)]))
  process.stdout.write('ready\n')

  while ((await stdinLines()) !== 'go') {
    // nothing else is expected
  }

  const latencies: number[] = []
  const statusCodes: Record<string, number> = {}
  const sampleErrors: string[] = []
  let errors = 0
  const firstSentAt = Date.now()
  const pending = order.map(({ conn, cookie }) => {
    const start = performance.now()
    return conn.send(texts.get(cookie)!).then(
      (r) => {
        const ms = performance.now() - start
        latencies.push(Math.round(ms * 100) / 100)
        statusCodes[r.status] = (statusCodes[r.status] ?? 0) + 1
        if (r.status !== 200 && sampleErrors.length < 5) sampleErrors.push(`${r.status} ${r.body.slice(0, 200)}`)
      },
      (err: Error) => {
        errors++
        if (sampleErrors.length < 5) sampleErrors.push(err.message)
      },
    )
  })
  await Promise.all(pending)
  const lastDoneAt = Date.now()
  for (const { conn } of conns) conn.destroy()

  const result: StormLoadResult = {
    requests: Object.values(statusCodes).reduce((a, b) => a + b, 0),
    statusCodes,
    errors,
    latenciesMs: latencies,
    firstSentAt,
    lastDoneAt,
    setupMs,
    sampleErrors,
  }
  process.stdout.write(`${JSON.stringify(result)}\n`)
  process.exit(0)
}

// Bounded life: stop with the parent even when it dies without cleaning up.
process.stdin.on('end', () => process.exit(0))
process.on('SIGTERM', () => process.exit(0))

main().catch((err: unknown) => {
  process.stderr.write(`storm-load: ${err instanceof Error ? err.stack : String(err)}\n`)
  process.exit(1)
})
