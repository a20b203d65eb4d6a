// The system under soak: a persistent private redis-server, the dev IdP
// in-process, an echo upstream, and two tokenward processes of the production
// build sharing Redis and secrets behind one public URL. Every piece is
// registered for cleanup the moment it exists.

import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { startDevIdp, type DevIdp } from '../demo/idp.js'
import { freePort } from '../test/helpers/ports.js'
import { startRedisServer, type RedisServer } from '../test/helpers/redis-server.js'
import { startEchoUpstream, type EchoUpstream } from '../test/helpers/upstream.js'

export const ROOT = join(import.meta.dirname, '..')
export const CLIENT_ID = 'tokenward-soak'

/** Cleanup steps run last-in first-out, once, whatever happened before. */
export class Cleanup {
  readonly #steps: Array<() => Promise<void> | void> = []
  #running: Promise<void> | undefined

  add(step: () => Promise<void> | void): void {
    this.#steps.push(step)
  }

  run(): Promise<void> {
    this.#running ??= (async () => {
      while (this.#steps.length > 0) {
        const step = this.#steps.pop()!
        // One failing step must not leave the others' processes running.
        await Promise.resolve()
          .then(step)
          .catch(() => {})
      }
    })()
    return this.#running
  }
}

/** Builds the production CLI the way `npm run build` does, into a directory of its own (never a developer's dist/). */
export async function buildTokenward(outDir: string, cleanup: Cleanup): Promise<void> {
  cleanup.add(() => rmSync(outDir, { recursive: true, force: true }))
  const child = spawn('npx', ['tsc', '-p', 'tsconfig.build.json', '--outDir', outDir], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  cleanup.add(() => void child.kill('SIGKILL'))
  let out = ''
  child.stdout.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr.on('data', (d: Buffer) => (out += d.toString()))
  const [code] = (await once(child, 'exit')) as [number | null]
  if (code !== 0) throw new Error(`building tokenward failed (exit ${code}):\n${out}`)
}

// ---------------------------------------------------------------------------
// Logs of the tokenward processes: audit lines are kept whole (they decide
// whether a session was lost or ended by an interrupted refresh), warnings and
// errors are counted by message with one example each, so memory stays bounded.

export interface AuditLine {
  instance: string
  incarnation: number
  at: number
  event: string
  sub?: string
  sid?: string
  reason?: string
  outcome?: string
}

export interface LogSummary {
  level: string
  msg: string
  count: number
  instances: string[]
  first: Record<string, unknown>
  firstAt: number
  lastAt: number
}

export class LogSink {
  readonly audits: AuditLine[] = []
  readonly #other = new Map<string, LogSummary>()
  unparsable = 0
  lines = 0

  line(instance: string, incarnation: number, text: string): void {
    this.lines++
    let entry: Record<string, unknown>
    try {
      entry = JSON.parse(text) as Record<string, unknown>
    } catch {
      this.unparsable++
      return
    }
    const at = typeof entry.time === 'string' ? Date.parse(entry.time) : Date.now()
    if (entry.audit === true && typeof entry.event === 'string') {
      const str = (k: string) => (typeof entry[k] === 'string' ? (entry[k] as string) : undefined)
      const line: AuditLine = { instance, incarnation, at, event: entry.event }
      for (const k of ['sub', 'sid', 'reason', 'outcome'] as const) {
        const v = str(k)
        if (v !== undefined) line[k] = v
      }
      this.audits.push(line)
      return
    }
    const level = typeof entry.level === 'string' ? entry.level : ''
    if (level !== 'warn' && level !== 'error' && level !== 'fatal') return
    // 'request failed' lines differ by error code and cause: one group each
    // (numbers such as ports masked so one cause stays one group).
    const code = typeof entry.code === 'string' ? ` [${entry.code}]` : ''
    const detail = typeof entry.detail === 'string' ? ` ${entry.detail.replace(/\d+/g, 'N').slice(0, 80)}` : ''
    const msg = `${typeof entry.msg === 'string' ? entry.msg : ''}${code}${detail}`
    const key = `${level}\0${msg}`
    const known = this.#other.get(key)
    if (known) {
      known.count++
      known.lastAt = at
      if (!known.instances.includes(instance)) known.instances.push(instance)
    } else {
      this.#other.set(key, { level, msg, count: 1, instances: [instance], first: entry, firstAt: at, lastAt: at })
    }
  }

  warnings(): LogSummary[] {
    return [...this.#other.values()].sort((a, b) => b.count - a.count)
  }
}

// ---------------------------------------------------------------------------
// One tokenward process slot: the same port and environment across restarts.

export interface Incarnation {
  n: number
  pid: number
  startedAt: number
  readyAt?: number
  endedAt?: number
  /** 'killed' by the fault schedule, 'stopped' at the end, 'exited' on its own (a crash). */
  end?: 'killed' | 'stopped' | 'exited'
  exitCode?: number | null
  signal?: NodeJS.Signals | null
  stderrTail: string
}

// Ends the child when this process dies, however it dies (even SIGKILL): its
// stdin is a pipe from us, and end of file means we are gone. Loaded with
// --import so the production bundle itself is run unchanged.
const PARENT_GUARD = "data:text/javascript,process.stdin.on('end',()=>process.exit(70));process.stdin.resume()"

/** Resolves once the child has exited and its output is fully read ('close'), or 2 s after it exited. */
function closedOf(c: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    c.once('close', () => resolve())
    c.once('exit', () => setTimeout(resolve, 2000).unref())
  })
}

export class TokenwardProcess {
  readonly name: string
  readonly port: number
  readonly url: string
  readonly incarnations: Incarnation[] = []
  readonly #env: NodeJS.ProcessEnv
  readonly #cli: string
  readonly #logs: LogSink
  #child: ChildProcess | undefined

  constructor(o: { name: string; port: number; env: NodeJS.ProcessEnv; cli: string; logs: LogSink }) {
    this.name = o.name
    this.port = o.port
    this.url = `http://127.0.0.1:${o.port}`
    this.#env = o.env
    this.#cli = o.cli
    this.#logs = o.logs
  }

  get current(): Incarnation | undefined {
    return this.incarnations.at(-1)
  }

  alive(): boolean {
    const c = this.#child
    return c !== undefined && c.exitCode === null && c.signalCode === null
  }

  /** Spawns the process and waits until /readyz answers 200 (Redis reachable, IdP metadata loaded). */
  async start(timeoutMs = 20_000): Promise<void> {
    if (this.alive()) return
    const child = spawn(process.execPath, ['--import', PARENT_GUARD, this.#cli, 'serve'], {
      cwd: ROOT,
      env: { ...this.#env, BFF_PORT: String(this.port) },
      stdio: ['pipe', 'pipe', 'pipe'],
      // A process group of its own: Ctrl-C in the terminal reaches the soak,
      // which stops the processes itself (SIGTERM) and still reads their logs.
      detached: true,
    })
    this.#child = child
    const inc: Incarnation = { n: this.incarnations.length + 1, pid: child.pid ?? -1, startedAt: Date.now(), stderrTail: '' }
    this.incarnations.push(inc)
    let pending = ''
    child.stdout!.on('data', (d: Buffer) => {
      pending += d.toString('utf8')
      let nl: number
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl)
        pending = pending.slice(nl + 1)
        if (line) this.#logs.line(this.name, inc.n, line)
      }
    })
    child.stderr!.on('data', (d: Buffer) => {
      inc.stderrTail = (inc.stderrTail + d.toString('utf8')).slice(-4000)
    })
    child.stdin!.on('error', () => {})
    child.once('exit', (code, signal) => {
      inc.endedAt = Date.now()
      inc.end ??= 'exited'
      inc.exitCode = code
      inc.signal = signal
    })
    // 'close' comes after the last of its output has been read.
    child.once('close', () => {
      if (pending) this.#logs.line(this.name, inc.n, pending)
      pending = ''
    })
    const deadline = Date.now() + timeoutMs
    for (;;) {
      if (!this.alive()) throw new Error(`tokenward ${this.name} exited while starting (code ${child.exitCode}):\n${inc.stderrTail}`)
      const ready = await fetch(`${this.url}/readyz`, { signal: AbortSignal.timeout(2000) }).then(
        (r) => r.status === 200,
        () => false,
      )
      if (ready) break
      if (Date.now() > deadline) throw new Error(`tokenward ${this.name} not ready within ${timeoutMs} ms:\n${inc.stderrTail}`)
      await new Promise((r) => setTimeout(r, 100))
    }
    inc.readyAt = Date.now()
  }

  /** SIGKILL: a crash, nothing flushed, nothing released. */
  async kill(): Promise<void> {
    const c = this.#child
    if (!c || !this.alive()) return
    this.current!.end = 'killed'
    const closed = closedOf(c)
    c.kill('SIGKILL')
    await closed
  }

  /** SIGTERM (tokenward's graceful shutdown), SIGKILL after 10 s. */
  async stop(): Promise<void> {
    const c = this.#child
    if (!c || !this.alive()) return
    this.current!.end = 'stopped'
    const closed = closedOf(c)
    c.kill('SIGTERM')
    const force = setTimeout(() => c.kill('SIGKILL'), 10_000)
    await closed
    clearTimeout(force)
  }

  /** Resident set size in KiB, from /proc (Linux); undefined when the process is not running. */
  rssKb(): number | undefined {
    if (!this.alive()) return undefined
    const pid = this.#child?.pid
    if (pid === undefined) return undefined
    try {
      const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
      return m ? Number(m[1]) : undefined
    } catch {
      return undefined
    }
  }

  /** tokenward_refreshes_total by outcome, since this incarnation started. */
  async refreshMetrics(): Promise<Record<string, number> | undefined> {
    try {
      const text = await fetch(`${this.url}/metrics`, { signal: AbortSignal.timeout(5000) }).then((r) => r.text())
      const out: Record<string, number> = {}
      for (const m of text.matchAll(/^tokenward_refreshes_total\{outcome="([^"]+)"\} (\S+)$/gm)) out[m[1]!] = Number(m[2])
      return out
    } catch {
      return undefined
    }
  }
}

// ---------------------------------------------------------------------------

export interface Stack {
  redis: RedisServer
  idp: DevIdp
  upstream: EchoUpstream
  /** [A, B]: A's port is BFF_PUBLIC_URL (the IdP's redirect URI); B is the one the schedule kills. */
  instances: [TokenwardProcess, TokenwardProcess]
  publicUrl: string
  logs: LogSink
}

export async function startStack(o: { accessTokenTtlS: number; refreshSkewS: number; cli: string; cleanup: Cleanup }): Promise<Stack> {
  const { cleanup } = o
  // Persistent (append-only file, fsync always): data survives the kill and
  // restart, as a production Redis with persistence would.
  const redis = await startRedisServer({ persist: true })
  cleanup.add(() => redis.close())

  const portA = await freePort()
  const portB = await freePort()
  const publicUrl = `http://127.0.0.1:${portA}`
  const clientSecret = randomBytes(24).toString('base64url')
  const idp = await startDevIdp({
    accessTokenTtl: o.accessTokenTtlS,
    // 10 minutes of events is a lot of them; the soak needs only the counts.
    maxEvents: 1000,
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: clientSecret,
        redirect_uris: [`${publicUrl}/auth/callback`],
        post_logout_redirect_uris: [`${publicUrl}/`],
      },
    ],
  })
  cleanup.add(() => idp.close())

  const upstream = await startEchoUpstream()
  cleanup.add(() => upstream.close())

  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    NODE_ENV: 'production',
    BFF_PUBLIC_URL: publicUrl,
    BFF_ISSUER: idp.issuer,
    BFF_CLIENT_ID: CLIENT_ID,
    BFF_CLIENT_SECRET: clientSecret,
    BFF_ROUTES: JSON.stringify([{ prefix: '/api', upstream: `${upstream.url}/v1`, token: 'user' }]),
    BFF_COOKIE_SECRET: randomBytes(32).toString('base64url'),
    BFF_ENCRYPTION_KEYS: `k1:${randomBytes(32).toString('base64')}`,
    BFF_REDIS_URL: redis.url,
    BFF_REDIS_PREFIX: 'tokenward-soak:',
    BFF_ALLOW_HTTP: 'true',
    BFF_HOST: '127.0.0.1',
    BFF_REFRESH_SKEW: String(o.refreshSkewS),
    // info: the audit lines (login, refresh, refresh_failed...) are what the
    // report reads to tell a lost session from an interrupted refresh.
    BFF_LOG_LEVEL: 'info',
  }
  const logs = new LogSink()
  const a = new TokenwardProcess({ name: 'A', port: portA, env, cli: o.cli, logs })
  const b = new TokenwardProcess({ name: 'B', port: portB, env, cli: o.cli, logs })
  cleanup.add(() => Promise.all([a.stop(), b.stop()]).then(() => {}))
  await Promise.all([a.start(), b.start()])
  return { redis, idp, upstream, instances: [a, b], publicUrl, logs }
}
