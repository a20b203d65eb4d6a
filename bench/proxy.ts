// How much does tokenward cost per proxied request? Measures it against
// baselines in one run, on one machine, so the numbers can be compared:
//   upstream          the trivial upstream called directly
//   plain-proxy       a bare Node http proxy with a keep-alive agent (bench/plain-proxy.ts)
//   nginx             nginx proxy_pass with upstream keepalive, when nginx is on the PATH
//   tokenward         the production build, GET /api/hello with a session cookie
// See bench/README.md. Run: npx tsx bench/proxy.ts

import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { cpus as cpuList, loadavg, platform, release, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { startDevIdp } from '../demo/idp.js'
import { login } from '../test/helpers/login.js'
import { freePort } from '../test/helpers/ports.js'
import { startRedisServer } from '../test/helpers/redis-server.js'
import type { LoadOptions, LoadResult } from './load.js'

const root = join(import.meta.dirname, '..')
const distDir = join(import.meta.dirname, '.dist')
const resultsDir = join(import.meta.dirname, 'results')

const CONNECTIONS = (process.env.BENCH_CONNECTIONS ?? '1,10,50').split(',').map(Number)
const DURATION = Number(process.env.BENCH_DURATION ?? '10')
const WARMUP = 2
const PATH = '/api/hello'
const CLIENT_ID = 'tokenward-bench'

if (CONNECTIONS.some((c) => !Number.isInteger(c) || c < 1) || !(DURATION > 0)) {
  console.error('BENCH_CONNECTIONS must be positive integers (e.g. 1,10,50) and BENCH_DURATION a positive number of seconds')
  process.exit(2)
}

// ---------------------------------------------------------------------------
// Cleanup: every child and server is registered the moment it exists, so an
// error or Ctrl-C at any point leaves nothing running.

const children = new Set<ChildProcess>()
const closers: Array<() => Promise<void> | void> = []

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  const force = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(force)
}

let cleaning: Promise<void> | undefined
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await Promise.allSettled([...children].map(stopChild))
    for (const close of closers.reverse()) await Promise.resolve().then(close).catch(() => {})
  })()
  return cleaning
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: stopping everything`)
    void cleanup().finally(() => process.exit(130))
  })
}

/** A node child whose last output is kept for error messages. */
function startNode(args: string[], env: NodeJS.ProcessEnv = process.env): { child: ChildProcess; output: () => string } {
  // stdin stays a pipe: bench/plain-proxy.ts exits when it closes, i.e. when we die.
  const child = spawn(process.execPath, args, { cwd: root, env, stdio: ['pipe', 'pipe', 'pipe'] })
  children.add(child)
  child.once('exit', () => children.delete(child))
  let out = ''
  const keep = (d: Buffer): void => {
    out = (out + d.toString()).slice(-8000)
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  return { child, output: () => out }
}

async function waitFor(what: string, check: () => Promise<boolean>, child?: { child: ChildProcess; output: () => string }): Promise<void> {
  const deadline = Date.now() + 20_000
  while (Date.now() < deadline) {
    if (child && child.child.exitCode !== null) throw new Error(`${what} exited with ${child.child.exitCode}:\n${child.output()}`)
    if (await check().catch(() => false)) return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`${what} not ready within 20 s${child ? `:\n${child.output()}` : ''}`)
}

const answers200 = (url: string, headers: Record<string, string> = {}) => async () => (await fetch(url, { headers })).status === 200

// ---------------------------------------------------------------------------
// The pieces

function buildTokenward(): void {
  rmSync(distDir, { recursive: true, force: true })
  const r = spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json', '--outDir', distDir], { cwd: root, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`build failed:\n${r.stdout}${r.stderr}`)
}

async function startUpstream(): Promise<string> {
  const body = JSON.stringify({ ok: true })
  const server = createServer((req, res) => {
    req.resume()
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  })
  // Longer than any pause between runs, so no proxy ever reuses a connection
  // the upstream is closing at that moment.
  server.keepAliveTimeout = 65_000
  const port = await freePort()
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  closers.push(() => new Promise<void>((resolve) => {
    server.close(() => resolve())
    server.closeAllConnections()
  }))
  return `http://127.0.0.1:${port}`
}

async function startPlainProxy(upstream: string): Promise<string> {
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const proc = startNode(['--import', 'tsx', join(import.meta.dirname, 'plain-proxy.ts'), String(port), upstream])
  await waitFor('plain proxy', answers200(`${url}${PATH}`), proc)
  return url
}

function hasNginx(): boolean {
  return spawnSync('nginx', ['-v'], { stdio: 'ignore' }).status === 0
}

async function startNginx(upstream: string): Promise<string> {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'tokenward-bench-nginx-'))
  closers.push(() => rmSync(dir, { recursive: true, force: true }))
  // One worker: a single process, like the Node proxies it is compared with.
  // keepalive_requests raised so neither side ever recycles a connection mid-run.
  writeFileSync(join(dir, 'nginx.conf'), `daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream app {
    server ${new URL(upstream).host};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port};
    keepalive_requests 1000000;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`)
  const child = spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', 'stderr'], { stdio: ['ignore', 'ignore', 'pipe'] })
  children.add(child)
  child.once('exit', () => children.delete(child))
  let out = ''
  child.stderr?.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-8000)))
  const url = `http://127.0.0.1:${port}`
  await waitFor('nginx', answers200(`${url}${PATH}`), { child, output: () => out })
  return url
}

async function startTokenward(issuer: string, clientSecret: string, redisUrl: string, upstream: string, port: number) {
  const url = `http://127.0.0.1:${port}`
  // BENCH_NODE_ARGS='--cpu-prof --cpu-prof-dir=bench/results' shows where tokenward's time goes.
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean)
  const proc = startNode([...nodeArgs, join(distDir, 'cli.js'), 'serve'], {
    PATH: process.env.PATH,
    NODE_ENV: 'production',
    BFF_PUBLIC_URL: url,
    BFF_ISSUER: issuer,
    BFF_CLIENT_ID: CLIENT_ID,
    BFF_CLIENT_SECRET: clientSecret,
    BFF_ROUTES: JSON.stringify([{ prefix: '/api', upstream, token: 'user' }]),
    BFF_COOKIE_SECRET: randomBytes(32).toString('base64url'),
    BFF_ENCRYPTION_KEYS: `k1:${randomBytes(32).toString('base64')}`,
    BFF_REDIS_URL: redisUrl,
    BFF_ALLOW_HTTP: 'true',
    BFF_HOST: '127.0.0.1',
    BFF_PORT: String(port),
    BFF_LOG_LEVEL: 'warn',
  })
  await waitFor('tokenward', answers200(`${url}/healthz`), proc)
  return { url, output: proc.output }
}

/**
 * The Cookie header of a logged-in SPA. The jar ignores ports, like browsers,
 * so on one loopback host it also holds the dev IdP's cookies, which a real
 * deployment (IdP on another host) never sends to tokenward: keep only what
 * tokenward's callback set.
 */
async function sessionCookie(bffUrl: string): Promise<string> {
  const { jar, responses } = await login(bffUrl)
  const names = new Set((responses.at(-1)?.headers.getSetCookie() ?? []).map((line) => line.slice(0, line.indexOf('=')).trim()))
  return jar.header(`${bffUrl}${PATH}`).split('; ').filter((pair) => names.has(pair.slice(0, pair.indexOf('=')))).join('; ')
}

/** One autocannon run in a child process of its own. */
async function load(options: LoadOptions): Promise<LoadResult> {
  const { child, output } = startNode(['--import', 'tsx', join(import.meta.dirname, 'load.ts'), JSON.stringify(options)])
  let stdout = ''
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()))
  const [code] = (await once(child, 'exit')) as [number | null]
  if (code !== 0) throw new Error(`load generator failed (${code}):\n${output()}`)
  return JSON.parse(stdout) as LoadResult
}

// ---------------------------------------------------------------------------
// Report

interface Row extends LoadResult {
  target: string
  connections: number
}

const fmt = (n: number, digits: number): string => (Number.isFinite(n) ? n.toFixed(digits) : '-')

function table(rows: Row[]): string {
  const head = ['target', 'connections', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'non-2xx']
  const body = rows.map((r) => [r.target, String(r.connections), fmt(r.rps, 0), fmt(r.p50Ms, 3), fmt(r.p99Ms, 3), String(r.errors), String(r.non2xx)])
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)))
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n')
}

function comparisons(rows: Row[]) {
  const find = (target: string, c: number) => rows.find((r) => r.target === target && r.connections === c)
  const throughputVsPlainProxy: Record<string, number> = {}
  for (const c of CONNECTIONS) {
    const tw = find('tokenward', c)
    const plain = find('plain-proxy', c)
    if (tw && plain) throughputVsPlainProxy[c] = tw.rps / plain.rps
  }
  const tw1 = find('tokenward', 1)
  const plain1 = find('plain-proxy', 1)
  const addedP50MsAtConcurrency1 = tw1 && plain1 ? tw1.p50Ms - plain1.p50Ms : null
  return { throughputVsPlainProxy, addedP50MsAtConcurrency1 }
}

function machine() {
  const cpus = cpuList()
  const git = spawnSync('git', ['describe', '--always', '--dirty'], { cwd: root, encoding: 'utf8' })
  return {
    cpuModel: cpus[0]?.model ?? 'unknown',
    cpuCount: cpus.length,
    totalMemoryBytes: totalmem(),
    node: process.version,
    platform: `${platform()} ${release()}`,
    loadAverageAtStart: loadavg(),
    commit: git.status === 0 ? git.stdout.trim() : null,
  }
}

// ---------------------------------------------------------------------------

async function main(): Promise<void> {
  const startedAt = new Date()
  const info = machine()
  const notes: string[] = []
  // Two cores: anything else running (a test suite, a build) skews every number.
  const [load1 = 0] = info.loadAverageAtStart
  if (load1 > 0.5) notes.push(`the machine was busy when the run started (load average ${load1.toFixed(2)}): numbers are noisy`)
  console.error('building tokenward into bench/.dist ...')
  buildTokenward()

  const redis = await startRedisServer()
  closers.push(() => redis.close())
  const upstream = await startUpstream()

  const bffPort = await freePort()
  const bffOrigin = `http://127.0.0.1:${bffPort}`
  const clientSecret = randomBytes(24).toString('base64url')
  const idp = await startDevIdp({
    clients: [{
      client_id: CLIENT_ID,
      client_secret: clientSecret,
      redirect_uris: [`${bffOrigin}/auth/callback`],
      post_logout_redirect_uris: [`${bffOrigin}/`],
    }],
    // An hour: no refresh can happen during the run, so what is measured is
    // the steady state of a valid access token.
    accessTokenTtl: 3600,
  })
  closers.push(() => idp.close())

  const tokenward = await startTokenward(idp.issuer, clientSecret, redis.url, upstream, bffPort)
  const headers = { cookie: await sessionCookie(tokenward.url), 'x-csrf': '1' }
  const probe = await fetch(`${tokenward.url}${PATH}`, { headers })
  const probeBody = await probe.text()
  if (probe.status !== 200 || probeBody !== '{"ok":true}') {
    throw new Error(`tokenward answered ${probe.status} ${probeBody.slice(0, 200)} to ${PATH} after login; refusing to benchmark that\n${tokenward.output()}`)
  }

  const targets: Array<{ name: string; url: string }> = [
    { name: 'upstream', url: upstream },
    { name: 'plain-proxy', url: await startPlainProxy(upstream) },
  ]
  if (hasNginx()) targets.push({ name: 'nginx', url: await startNginx(upstream) })
  else notes.push('nginx is not on the PATH: the nginx baseline was skipped')
  targets.push({ name: 'tokenward', url: tokenward.url })

  const total = targets.length * CONNECTIONS.length * (DURATION + WARMUP)
  console.error(`${targets.length} targets x ${CONNECTIONS.length} concurrency levels, ${DURATION} s each after ${WARMUP} s warm-up: about ${total} s`)
  const rows: Row[] = []
  for (const target of targets) {
    for (const connections of CONNECTIONS) {
      const result = await load({ url: `${target.url}${PATH}`, headers, connections, duration: DURATION, warmup: WARMUP })
      const row: Row = { target: target.name, connections, ...result }
      rows.push(row)
      console.error(`  ${target.name} c=${connections}: ${fmt(row.rps, 0)} req/s, p50 ${fmt(row.p50Ms, 3)} ms, status ${JSON.stringify(row.statusCodes)}, errors ${row.errors}`)
      const other = Object.keys(row.statusCodes).filter((code) => code !== '200')
      if (target.name === 'tokenward' && (other.length > 0 || row.requests === 0)) {
        // Error responses are cheap: a run that measures them flatters tokenward.
        throw new Error(`tokenward answered ${JSON.stringify(row.statusCodes)} with ${row.errors} connection errors at ${connections} connections: not a benchmark of proxying\n${tokenward.output()}`)
      }
      if (other.length > 0) notes.push(`${target.name} at ${connections} connections answered ${JSON.stringify(row.statusCodes)}`)
    }
  }

  const { throughputVsPlainProxy, addedP50MsAtConcurrency1 } = comparisons(rows)
  console.log(`\ntokenward proxy benchmark: ${info.cpuCount} x ${info.cpuModel}, ${(info.totalMemoryBytes / 2 ** 30).toFixed(1)} GiB, Node ${info.node}, ${DURATION} s per run\n`)
  console.log(table(rows))
  console.log('')
  for (const [c, ratio] of Object.entries(throughputVsPlainProxy)) {
    console.log(`throughput tokenward / plain-proxy at ${c} connection(s): ${ratio.toFixed(2)}`)
  }
  if (addedP50MsAtConcurrency1 !== null) {
    console.log(`p50 latency tokenward adds over plain-proxy at 1 connection: ${addedP50MsAtConcurrency1.toFixed(3)} ms`)
  }
  for (const note of notes) console.log(`note: ${note}`)

  mkdirSync(resultsDir, { recursive: true })
  const file = join(resultsDir, `proxy-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`)
  writeFileSync(file, `${JSON.stringify({
    startedAt: startedAt.toISOString(),
    machine: info,
    settings: { connections: CONNECTIONS, durationSeconds: DURATION, warmupSeconds: WARMUP, path: PATH },
    results: rows,
    throughputVsPlainProxy,
    addedP50MsAtConcurrency1,
    notes,
  }, null, 2)}\n`)
  console.log(`\nwritten to ${file}`)
}

main()
  .catch((err: unknown) => {
    // After Ctrl-C the children die first; their failures are not news.
    if (cleaning) return
    console.error(`\nbenchmark failed: ${err instanceof Error ? err.message : String(err)}`)
    process.exitCode = 1
  })
  .finally(() => cleanup())
