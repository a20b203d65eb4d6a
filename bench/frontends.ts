// What dispatching on the Host header (BFF_CONFIG_FILE, several frontends)
// costs per request: the same proxied call (a `token: none` route to a local
// upstream, so neither Redis nor the IdP is on the path) through tokenward
// configured from the environment (one frontend, no Host matching) and from a
// file with 2 and 20 frontends (Host matched on every request).
//
// The upstream runs in a worker thread; tokenward and the load generator
// (autocannon) share the main thread, so absolute numbers are low: compare
// the variants, which alternate per round (the median round counts).
//
// Usage: npm run bench:frontends   (BENCH_FRONTENDS_SECONDS per round, BENCH_FRONTENDS_ROUNDS, BENCH_CONNECTIONS)

import { once } from 'node:events'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'
import autocannon from 'autocannon'
import { loadFrontends, type FrontendSet } from '../src/config-file.js'
import { createLogger } from '../src/log.js'
import { requestHost, startServer, type RunningServer } from '../src/server.js'

const SECONDS = Number(process.env.BENCH_FRONTENDS_SECONDS ?? 3)
const ROUNDS = Number(process.env.BENCH_FRONTENDS_ROUNDS ?? 3)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 20)

/** The SPA's CSRF header (docs/endpoints.md): every proxied call carries it. */
const HEADERS = { 'x-csrf': '1' }

const UPSTREAM = `
const { createServer } = require('node:http')
const { parentPort } = require('node:worker_threads')
const s = createServer((req, res) => { req.resume(); res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"ok":true}') })
s.keepAliveTimeout = 65000
s.listen(0, '127.0.0.1', () => parentPort.postMessage(s.address().port))
`

const secrets = { COOKIE_SECRET: randomBytes(32).toString('base64url'), ENCRYPTION_KEYS: `k1:${randomBytes(32).toString('base64')}` }

function common(port: number): Record<string, string> {
  return { BFF_ALLOW_HTTP: 'true', BFF_HOST: '127.0.0.1', BFF_PORT: String(port), BFF_LOG_LEVEL: 'silent', ...secrets }
}

function single(port: number, upstream: string): FrontendSet {
  return loadFrontends({
    ...common(port),
    BFF_PUBLIC_URL: `http://127.0.0.1:${port}`,
    BFF_ISSUER: 'http://127.0.0.1:9',
    BFF_CLIENT_ID: 'bench',
    BFF_CLIENT_SECRET: 'bench-secret',
    BFF_COOKIE_SECRET: secrets.COOKIE_SECRET,
    BFF_ENCRYPTION_KEYS: secrets.ENCRYPTION_KEYS,
    BFF_ROUTES: JSON.stringify([{ prefix: '/api', upstream, token: 'none' }]),
  })
}

function fromFile(dir: string, port: number, upstream: string, n: number): FrontendSet {
  const entries = Array.from({ length: n }, (_, i) => {
    // The benchmarked frontend is the last one declared.
    const host = i === n - 1 ? '127.0.0.1' : `f${i}.localhost`
    return `
  - name: f${i}
    publicUrl: http://${host}:${port}
    issuer: http://127.0.0.1:9
    clientId: bench
    clientSecret: bench-secret
    cookieSecret: \${COOKIE_SECRET}
    encryptionKeys: \${ENCRYPTION_KEYS}
    routes: [{ prefix: /api, upstream: "${upstream}", token: none }]`
  })
  const file = join(dir, `frontends-${n}.yaml`)
  writeFileSync(file, `frontends:${entries.join('')}\n`)
  return loadFrontends({ ...common(port), BFF_CONFIG_FILE: file })
}

interface Result {
  variant: string
  requestsPerSecond: number
  meanMs: number
  p99Ms: number
}

async function load(variant: string, server: RunningServer): Promise<Result> {
  const r = await autocannon({
    url: `http://127.0.0.1:${server.port}/api/x`,
    connections: CONNECTIONS,
    duration: SECONDS,
    headers: HEADERS,
  })
  if (r.non2xx > 0 || r.errors > 0) throw new Error(`${variant}: ${r.non2xx} answers not 2xx, ${r.errors} errors`)
  return { variant, requestsPerSecond: Math.round(r.requests.average), meanMs: r.latency.average, p99Ms: r.latency.p99 }
}

/** The matching itself, alone: what the dispatcher does per request beyond the single-frontend path. */
function microMatch(n: number): number {
  const byHost = new Map(Array.from({ length: n }, (_, i) => [`f${i}.localhost:3000`, i]))
  const req = { headers: { host: `F${n - 1}.localhost:3000` } } as Parameters<typeof requestHost>[0]
  const iterations = 5_000_000
  let hits = 0
  const t = process.hrtime.bigint()
  for (let i = 0; i < iterations; i++) if (byHost.get(requestHost(req)) !== undefined) hits++
  const ns = Number(process.hrtime.bigint() - t) / iterations
  if (hits !== iterations) throw new Error('no match')
  return ns
}

async function main(): Promise<void> {
  const worker = new Worker(UPSTREAM, { eval: true })
  const dir = mkdtempSync(join(tmpdir(), 'tw-bench-frontends-'))
  const logger = createLogger('silent')
  try {
    const [upPort] = (await once(worker, 'message')) as [number]
    const upstream = `http://127.0.0.1:${upPort}`
    const variants: Array<{ name: string; set: (port: number) => FrontendSet }> = [
      { name: 'environment (1 frontend, no Host matching)', set: (p) => single(p, upstream) },
      { name: 'file, 2 frontends (Host matched)', set: (p) => fromFile(dir, p, upstream, 2) },
      { name: 'file, 20 frontends (Host matched)', set: (p) => fromFile(dir, p, upstream, 20) },
    ]
    const rounds: Result[] = []
    for (let round = 0; round < ROUNDS; round++) {
      for (const v of variants) {
        const server = await startServer(v.set(0), { logger, store: 'memory', port: 0 })
        try {
          // The file's public hosts name port 0; requests carry the real port, so
          // the benchmarked frontend is matched on its host alone: rebuild with the real port.
          const set = v.set(server.port)
          if (set.matchHost) await server.reload(set)
          const probe = await fetch(`http://127.0.0.1:${server.port}/api/x`, { headers: HEADERS })
          if (probe.status !== 200) throw new Error(`${v.name}: ${probe.status} ${await probe.text()}`)
          await autocannon({ url: `http://127.0.0.1:${server.port}/api/x`, connections: CONNECTIONS, duration: 1, headers: HEADERS }) // warm-up
          rounds.push(await load(v.name, server))
        } finally {
          await server.close()
        }
      }
    }
    const results = variants.map((v) => {
      const mine = rounds.filter((r) => r.variant === v.name).sort((a, b) => a.requestsPerSecond - b.requestsPerSecond)
      return mine[Math.floor(mine.length / 2)]!
    })
    console.table(results)
    for (const n of [1, 2, 20, 200]) console.log(`Host match alone, ${n} frontend(s): ${microMatch(n).toFixed(1)} ns per request`)
    console.log(JSON.stringify({ node: process.version, seconds: SECONDS, rounds: ROUNDS, connections: CONNECTIONS, results }))
  } finally {
    await worker.terminate()
    rmSync(dir, { recursive: true, force: true })
  }
  process.exit(0)
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
