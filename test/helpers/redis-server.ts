import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { freePort } from './ports.js'

export interface RedisServer {
  readonly url: string
  readonly port: number
  /** Stops the server (SIGKILL: like a crash, nothing is flushed). */
  stop(): Promise<void>
  /** Starts it again on the same port (empty unless started with `persist`). */
  start(): Promise<void>
  /** Freezes the process (SIGSTOP): connections stay open, nothing answers. */
  pause(): void
  resume(): void
  /** Stops it and removes its files. */
  close(): Promise<void>
}

export function hasRedisServer(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0
}

async function waitForPing(url: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 500 })
    r.on('error', () => {})
    try {
      await r.connect()
      await r.ping()
      r.disconnect()
      return
    } catch {
      r.disconnect()
      if (Date.now() > deadline) throw new Error(`redis-server at ${url} did not answer within ${timeoutMs} ms`)
      await new Promise((res) => setTimeout(res, 50))
    }
  }
}

/**
 * Starts a private redis-server on a free port, shared with no other run. By
 * default nothing is persisted; `persist` keeps an append-only file in a temp
 * directory so data survives stop() and start(), as a production Redis would.
 */
export async function startRedisServer(options: { persist?: boolean } = {}): Promise<RedisServer> {
  if (!hasRedisServer()) {
    throw new Error(
      'redis-server is not installed: install it (apt-get install redis-server) or set BFF_REDIS_URL to a Redis the tests may use',
    )
  }
  const port = await freePort()
  const url = `redis://127.0.0.1:${port}`
  let child: ChildProcess | undefined
  const dir = options.persist ? mkdtempSync(join(tmpdir(), 'tokenward-redis-')) : undefined
  const persistence = dir ? ['--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir] : ['--appendonly', 'no']
  const start = async () => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', ...persistence, '--loglevel', 'warning'], {
      stdio: 'ignore',
    })
    await waitForPing(url)
  }
  const stop = async () => {
    const c = child
    child = undefined
    if (!c || c.exitCode !== null) return
    const exited = new Promise((res) => c.once('exit', res))
    c.kill('SIGKILL')
    await exited
  }
  await start()
  return {
    url,
    port,
    stop,
    start,
    pause: () => void child?.kill('SIGSTOP'),
    resume: () => void child?.kill('SIGCONT'),
    async close() {
      child?.kill('SIGCONT')
      await stop()
      if (dir) rmSync(dir, { recursive: true, force: true })
    },
  }
}
