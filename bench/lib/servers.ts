// The pieces a benchmark run starts: the production build of tokenward, the
// trivial upstream, the baseline proxies, and the load generator children.

import { spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { login } from '../../test/helpers/login.js'
import { freePort } from '../../test/helpers/ports.js'
import type { LoadOptions, LoadResult } from './load-types.js'
import {
  answers200,
  benchDir,
  cpuSeconds,
  onCleanup,
  root,
  runTsJson,
  startNode,
  startTs,
  track,
  waitFor,
  type NodeChild,
} from './procs.js'

export const distDir = join(benchDir, '.dist')
export const CLIENT_ID = 'tokenward-bench'
/** What every proxied GET asks for; the upstream answers `{"ok":true}`. */
export const PATH = '/api/hello'
export const OK_BODY = '{"ok":true}'
/** The upstream path of the streamed download (tokenward: /api/download). */
export const DOWNLOAD_PATH = '/api/download'

let built = false
export function buildTokenward(): void {
  if (built) return
  rmSync(distDir, { recursive: true, force: true })
  const r = spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json', '--outDir', distDir], { cwd: root, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`build failed:\n${r.stdout}${r.stderr}`)
  built = true
}

/**
 * The upstream API, in the orchestrating process:
 * - `GET /download` (or `/api/download`, as the baselines forward it): `downloadBytes` bytes with a Content-Length, written in
 *   64 KiB chunks as the socket drains (a streamed file, never one buffer);
 * - a request with `x-expect-bytes: n` (the POST scenario): 200 `{"ok":true}`
 *   when exactly n body bytes arrived, else 400, so a proxy that mangles
 *   bodies cannot pass;
 * - anything else: 200 `{"ok":true}`.
 */
export async function startUpstream(downloadBytes: number): Promise<string> {
  const ok = Buffer.from(OK_BODY)
  const chunk = randomBytes(64 * 1024)
  const server = createServer((req, res) => {
    if (req.method === 'GET' && (req.url === '/download' || req.url === DOWNLOAD_PATH)) {
      req.resume()
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': downloadBytes })
      let left = downloadBytes
      const write = (): void => {
        while (left > 0) {
          const n = Math.min(left, chunk.length)
          left -= n
          if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
            res.once('drain', write)
            return
          }
        }
        res.end()
      }
      write()
      return
    }
    const expect = req.headers['x-expect-bytes']
    let received = 0
    req.on('data', (d: Buffer) => (received += d.length))
    req.on('end', () => {
      const good = expect === undefined || Number(expect) === received
      res.writeHead(good ? 200 : 400, { 'content-type': 'application/json', 'content-length': good ? ok.length : 2 })
      res.end(good ? ok : '{}')
    })
  })
  // Longer than any pause between runs, so no proxy ever reuses a connection
  // the upstream is closing at that moment.
  server.keepAliveTimeout = 65_000
  const port = await freePort()
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  onCleanup(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  )
  return `http://127.0.0.1:${port}`
}

export async function startPlainProxy(upstream: string): Promise<{ url: string; pid: number }> {
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const proc = startTs('plain-proxy.ts', [String(port), upstream])
  await waitFor('plain proxy', answers200(`${url}${PATH}`), proc)
  return { url, pid: proc.child.pid! }
}

export function hasNginx(): boolean {
  return spawnSync('nginx', ['-v'], { stdio: 'ignore' }).status === 0
}

export async function startNginx(upstream: string): Promise<string> {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'tokenward-bench-nginx-'))
  onCleanup(() => rmSync(dir, { recursive: true, force: true }))
  // One worker: a single process, like the Node proxies it is compared with.
  // keepalive_requests raised so neither side ever recycles a connection mid-run.
  // Request and response bodies stream (no buffering, no temp files), as the Node proxies do.
  writeFileSync(
    join(dir, 'nginx.conf'),
    `daemon off;
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
  client_max_body_size 10m;
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
      proxy_buffering off;
      proxy_request_buffering off;
    }
  }
}
`,
  )
  const child = track(spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', 'stderr'], { stdio: ['ignore', 'ignore', 'pipe'] }))
  let out = ''
  child.stderr?.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-8000)))
  const url = `http://127.0.0.1:${port}`
  await waitFor('nginx', answers200(`${url}${PATH}`), { child, output: () => out })
  return url
}

/** Secrets several tokenward processes share, so a cookie of one works on all (as behind a load balancer). */
export interface TokenwardSecrets {
  cookieSecret: string
  encryptionKeys: string
}

export function newSecrets(): TokenwardSecrets {
  return {
    cookieSecret: randomBytes(32).toString('base64url'),
    encryptionKeys: `k1:${randomBytes(32).toString('base64')}`,
  }
}

export interface TokenwardOptions {
  issuer: string
  clientSecret: string
  redisUrl: string
  upstream: string
  port: number
  /** BFF_PUBLIC_URL; defaults to this process's own origin. */
  publicUrl?: string
  secrets: TokenwardSecrets
  /** Name in error messages. */
  name?: string
  /** More BFF_* settings. */
  env?: Record<string, string>
}

export interface Tokenward {
  url: string
  pid: number
  output: () => string
  proc: NodeChild
}

/** The production build, started as `node bench/.dist/cli.js serve` from BFF_* variables. */
export async function startTokenward(o: TokenwardOptions): Promise<Tokenward> {
  buildTokenward()
  const url = `http://127.0.0.1:${o.port}`
  // BENCH_NODE_ARGS='--cpu-prof --cpu-prof-dir=bench/results' shows where tokenward's time goes.
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean)
  const proc = startNode([...nodeArgs, join(distDir, 'cli.js'), 'serve'], {
    PATH: process.env.PATH,
    NODE_ENV: 'production',
    BFF_PUBLIC_URL: o.publicUrl ?? url,
    BFF_ISSUER: o.issuer,
    BFF_CLIENT_ID: CLIENT_ID,
    BFF_CLIENT_SECRET: o.clientSecret,
    BFF_ROUTES: JSON.stringify([{ prefix: '/api', upstream: o.upstream, token: 'user' }]),
    BFF_COOKIE_SECRET: o.secrets.cookieSecret,
    BFF_ENCRYPTION_KEYS: o.secrets.encryptionKeys,
    BFF_REDIS_URL: o.redisUrl,
    BFF_ALLOW_HTTP: 'true',
    BFF_HOST: '127.0.0.1',
    BFF_PORT: String(o.port),
    BFF_LOG_LEVEL: 'warn',
    ...o.env,
  })
  await waitFor(o.name ?? 'tokenward', answers200(`${url}/healthz`), proc)
  return { url, pid: proc.child.pid!, output: proc.output, proc }
}

/**
 * The Cookie header of a logged-in SPA. The jar ignores ports, like browsers,
 * so on one loopback host it also holds the dev IdP's cookies, which a real
 * deployment (IdP on another host) never sends to tokenward: keep only what
 * tokenward's callback set.
 */
export async function sessionCookie(bffUrl: string, username = 'alice'): Promise<string> {
  const { jar, responses } = await login(bffUrl, { username })
  const names = new Set((responses.at(-1)?.headers.getSetCookie() ?? []).map((line) => line.slice(0, line.indexOf('=')).trim()))
  const cookie = jar
    .header(`${bffUrl}${PATH}`)
    .split('; ')
    .filter((pair) => names.has(pair.slice(0, pair.indexOf('='))))
    .join('; ')
  if (!cookie) throw new Error(`login as ${username} set no session cookie`)
  return cookie
}

/** Reads a CPU-time counter in seconds: a process's (cpuSeconds) or Redis's (INFO cpu). */
export type CpuMeter = () => number | Promise<number>

/**
 * One load-generator run in a child process of its own (bench/load.ts). Each
 * meter is read when the measured part starts (warm-up excluded) and after
 * it; the difference per measured request lands in `cpuMsPerRequest[name]`.
 */
export async function load(options: LoadOptions, meters: Record<string, CpuMeter> = {}): Promise<LoadResult> {
  const atStart: Record<string, Promise<number>> = {}
  const result = await runTsJson<LoadResult>('load.ts', [JSON.stringify(options)], (line) => {
    if (line !== 'measuring') return
    for (const [name, read] of Object.entries(meters)) atStart[name] = Promise.resolve().then(read)
  })
  if (result.requests > 0 && Object.keys(atStart).length > 0) {
    result.cpuMsPerRequest = {}
    for (const [name, read] of Object.entries(meters)) {
      result.cpuMsPerRequest[name] = (((await read()) - (await atStart[name]!)) * 1000) / result.requests
    }
  }
  return result
}

export const processCpu =
  (pid: number): CpuMeter =>
  () =>
    cpuSeconds(pid)
