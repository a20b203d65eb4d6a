// What presenting a TLS client certificate (RFC 8705, routes with "mtls": true)
// costs per upstream request, against plain TLS, through the very connection
// pools tokenward forwards with (src/proxy/pool.ts):
//
// - keep-alive: requests over pooled connections (the steady state: the
//   handshake happened once, so the certificate should cost nothing per request);
// - handshake: one new connection per request (the worst case: every request
//   pays a full TLS handshake, with or without the client certificate).
//
// The upstream runs in a worker thread (its own event loop, so on 2 cores the
// client and the server each get one); a test PKI is made with openssl in a
// temporary directory and removed at the end.
//
// Usage: npm run bench:mtls   (BENCH_MTLS_REQUESTS, BENCH_MTLS_HANDSHAKES, BENCH_MTLS_CONCURRENCY, BENCH_MTLS_ROUNDS)
// Prints the median of alternating rounds per variant and mode.

import { once } from 'node:events'
import { Worker } from 'node:worker_threads'
import { Pool } from 'undici'
import { poolFor } from '../src/proxy/pool.js'
import type { UpstreamTls } from '../src/tls/client-tls.js'
import { createPki } from '../test/helpers/pki.js'

const REQUESTS = Number(process.env.BENCH_MTLS_REQUESTS ?? 20_000)
const HANDSHAKES = Number(process.env.BENCH_MTLS_HANDSHAKES ?? 1_000)
const CONCURRENCY = Number(process.env.BENCH_MTLS_CONCURRENCY ?? 10)
const ROUNDS = Number(process.env.BENCH_MTLS_ROUNDS ?? 5)

const SERVER = `
const { createServer } = require('node:https')
const { parentPort, workerData } = require('node:worker_threads')
const servers = workerData.variants.map((v) =>
  createServer({ cert: workerData.cert, key: workerData.key, ca: workerData.ca, requestCert: v.mtls, rejectUnauthorized: v.mtls }, (req, res) => {
    req.resume()
    res.writeHead(200, { 'content-type': 'application/json' })
    // The same answer either way: only the connection differs (rejectUnauthorized already required the certificate).
    res.end('{"ok":true}')
  }),
)
Promise.all(servers.map((s) => new Promise((r) => s.listen(0, '127.0.0.1', () => r(s.address().port))))).then((ports) =>
  parentPort.postMessage(ports),
)
`

interface Result {
  variant: string
  mode: string
  requests: number
  seconds: number
  perSecond: number
  meanMs: number
  p99Ms: number
}

async function run(variant: string, mode: 'keep-alive' | 'handshake', total: number, send: () => Promise<void>): Promise<Result> {
  const latencies: number[] = []
  let next = 0
  const started = performance.now()
  const worker = async () => {
    while (next < total) {
      next++
      const t = performance.now()
      await send()
      latencies.push(performance.now() - t)
    }
  }
  await Promise.all(Array.from({ length: mode === 'handshake' ? 1 : CONCURRENCY }, worker))
  const seconds = (performance.now() - started) / 1000
  latencies.sort((a, b) => a - b)
  return {
    variant,
    mode,
    requests: latencies.length,
    seconds: Number(seconds.toFixed(2)),
    perSecond: Math.round(latencies.length / seconds),
    meanMs: Number((latencies.reduce((a, b) => a + b, 0) / latencies.length).toFixed(3)),
    p99Ms: Number(latencies[Math.floor(latencies.length * 0.99)]!.toFixed(3)),
  }
}

async function get(pool: Pool, origin: string): Promise<void> {
  const r = await pool.request({ origin, path: '/', method: 'GET' })
  if (r.statusCode !== 200) throw new Error(`status ${r.statusCode}`)
  await r.body.arrayBuffer()
}

async function main(): Promise<void> {
  const pki = createPki()
  const client = pki.client('bench-client', '/CN=tokenward-bench')
  const worker = new Worker(SERVER, {
    eval: true,
    workerData: { cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, variants: [{ mtls: false }, { mtls: true }] },
  })
  try {
    const [[plainPort, mtlsPort]] = (await once(worker, 'message')) as [[number, number]]
    const variants: Array<{ name: string; url: URL; tls: UpstreamTls }> = [
      { name: 'plain TLS', url: new URL(`https://127.0.0.1:${plainPort}`), tls: { id: 'bench-plain', ca: [pki.ca.cert] } },
      {
        name: 'TLS + client certificate',
        url: new URL(`https://127.0.0.1:${mtlsPort}`),
        tls: { id: 'bench-mtls', cert: client.cert, key: client.key, ca: [pki.ca.cert] },
      },
    ]
    // Rounds alternate between the variants and the median round counts, so
    // that load from elsewhere on the machine hits both alike.
    const rounds: Result[] = []
    const pools = variants.map((v) => poolFor(v.url, v.tls))
    for (const [i, v] of variants.entries()) for (let n = 0; n < 500; n++) await get(pools[i]!, v.url.origin) // warm-up
    const handshake = (v: (typeof variants)[number]) => async () => {
      const connect = { ...(v.tls.cert ? { cert: v.tls.cert, key: v.tls.key } : {}), ca: [...(v.tls.ca ?? [])] }
      // A pool of its own per request: every request pays a full handshake.
      const pool = new Pool(v.url.origin, { connections: 1, connect })
      try {
        await get(pool, v.url.origin)
      } finally {
        await pool.destroy()
      }
    }
    for (let round = 0; round < ROUNDS; round++) {
      for (const [i, v] of variants.entries()) {
        rounds.push(await run(v.name, 'keep-alive', Math.ceil(REQUESTS / ROUNDS), () => get(pools[i]!, v.url.origin)))
        rounds.push(await run(v.name, 'handshake', Math.ceil(HANDSHAKES / ROUNDS), handshake(v)))
      }
    }
    const results: Result[] = []
    for (const mode of ['keep-alive', 'handshake'])
      for (const v of variants) {
        const mine = rounds.filter((r) => r.variant === v.name && r.mode === mode).sort((a, b) => a.meanMs - b.meanMs)
        results.push(mine[Math.floor(mine.length / 2)]!)
      }
    console.table(results)
    const pick = (variant: string, mode: string) => results.find((r) => r.variant === variant && r.mode === mode)!
    for (const mode of ['keep-alive', 'handshake']) {
      const a = pick('plain TLS', mode)
      const b = pick('TLS + client certificate', mode)
      console.log(
        `${mode}: client certificate adds ${((b.meanMs - a.meanMs) * 1000).toFixed(0)} µs per request on average (${a.meanMs} ms -> ${b.meanMs} ms; ${a.perSecond} -> ${b.perSecond} requests/s)`,
      )
    }
    console.log(JSON.stringify({ node: process.version, concurrency: CONCURRENCY, results }))
  } finally {
    await worker.terminate()
    pki.close()
  }
  process.exit(0)
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
