import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { Redis } from 'ioredis'
import { freePort } from './ports.js'

export interface RedisServer {
  readonly url: string
  readonly port: number
  /** Stops the server (SIGKILL: like a crash, nothing is flushed). */
  stop(): Promise<void>
  /** Starts it again on the same port (empty: it keeps nothing on disk). */
  start(): Promise<void>
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

/** Starts a private redis-server on a free port: nothing persisted, nothing shared with other runs. */
export async function startRedisServer(): Promise<RedisServer> {
  if (!hasRedisServer()) {
    throw new Error('redis-server is not installed: install it (apt-get install redis-server) or set BFF_REDIS_URL to a Redis the tests may use')
  }
  const port = await freePort()
  const url = `redis://127.0.0.1:${port}`
  let child: ChildProcess | undefined
  const start = async () => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning'], {
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
  return { url, port, stop, start }
}
