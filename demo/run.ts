// `npm run demo`: the dev IdP, the demo API and tokenward serving the demo
// SPA, all in this process, with throwaway secrets made at start.

import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { access, constants } from 'node:fs/promises'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { loadConfig } from '../src/config.js'
import { startServer } from '../src/server.js'
import { startDemoApi } from './api.js'
import type { DemoApi } from './api.js'
import { startDevIdp } from './idp.js'
import type { DevIdp } from './idp.js'

const HOST = '127.0.0.1'
const IDP_PORT = Number(process.env.DEMO_IDP_PORT ?? 4000)
const API_PORT = Number(process.env.DEMO_API_PORT ?? 5000)
const PASSWORD = 'demo'

interface Running {
  idp?: DevIdp
  api?: DemoApi
  bff?: { close(): Promise<void> }
  redis?: ChildProcess
}

const running: Running = {}

async function main(): Promise<void> {
  const issuer = `http://localhost:${IDP_PORT}`
  const audience = `http://localhost:${API_PORT}`
  const secret = (): string => randomBytes(32).toString('base64url')

  const redis = await chooseRedis(process.env.BFF_REDIS_URL ?? 'redis://127.0.0.1:6379')
  if (redis.child) running.redis = redis.child

  // The demo's values are defaults: any BFF_ variable in the environment wins.
  const env: Record<string, string | undefined> = {
    BFF_PUBLIC_URL: 'http://localhost:3000',
    BFF_ISSUER: issuer,
    BFF_CLIENT_ID: 'tokenward-demo',
    BFF_CLIENT_SECRET: secret(),
    // `api` is the demo API's scope at the dev IdP, so access tokens say what
    // they are for.
    BFF_SCOPES: 'openid profile email offline_access api',
    BFF_ROUTES: JSON.stringify([{ prefix: '/api', upstream: audience, token: 'user' }]),
    BFF_COOKIE_SECRET: secret(),
    BFF_ENCRYPTION_KEYS: `demo:${randomBytes(32).toString('base64')}`,
    BFF_ALLOW_HTTP: 'true',
    BFF_HOST: HOST,
    BFF_PORT: '3000',
    BFF_STATIC_DIR: fileURLToPath(new URL('./spa', import.meta.url)),
    BFF_LOG_LEVEL: 'info',
    ...process.env,
    BFF_REDIS_URL: redis.url,
  }
  // Parsed before anything listens, so a bad override fails fast.
  const config = loadConfig(env)
  const publicUrl = config.publicOrigin

  running.idp = await listenOn('dev IdP', IDP_PORT, 'DEMO_IDP_PORT', () =>
    startDevIdp({
      port: IDP_PORT,
      host: HOST,
      issuer,
      resource: audience,
      password: PASSWORD,
      clients: [
        {
          client_id: config.clientId,
          client_secret: config.clientSecret ?? secret(),
          redirect_uris: [config.redirectUri],
          post_logout_redirect_uris: [config.postLogoutRedirect],
          backchannel_logout_uri: `${publicUrl}/auth/backchannel-logout`,
        },
      ],
    }),
  )
  running.api = await listenOn('demo API', API_PORT, 'DEMO_API_PORT', () => startDemoApi({ port: API_PORT, host: HOST, issuer, audience }))
  running.bff = await startServer(config, { store: redis.url ? 'redis' : 'memory' })

  printBanner({ publicUrl, issuer: config.issuer, devIssuer: issuer, api: audience, store: redis.description })
}

// ---------------------------------------------------------------------------
// Redis: an existing one, else a private redis-server, else memory

interface RedisChoice {
  /** '' when the in-memory store is used. */
  url: string
  description: string
  child?: ChildProcess
}

async function chooseRedis(url: string): Promise<RedisChoice> {
  if (await redisAnswers(url)) return { url, description: `Redis at ${redact(url)}` }
  if (await onPath('redis-server')) {
    const port = await freePort()
    console.log(`Nothing answers at ${redact(url)}: starting a private redis-server on port ${port} (nothing saved to disk).`)
    const child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no', '--loglevel', 'warning'],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    )
    process.once('exit', () => child.kill())
    const started = `redis://${HOST}:${port}`
    if (await waitForRedis(started, child)) {
      return { url: started, description: `a private redis-server at ${started} (stopped with the demo)`, child }
    }
    child.kill()
    console.warn('The private redis-server did not start.')
  }
  console.warn(
    [
      '',
      '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!',
      '!!  NO REDIS: the demo falls back to an IN-MEMORY session store.',
      `!!  Nothing answers at ${redact(url)} and no redis-server could be started.`,
      '!!  Sessions vanish when the demo stops and are not shared between',
      '!!  processes. Fine for clicking around, never for anything else.',
      '!!  Install Redis (e.g. `apt-get install redis-server`) or set BFF_REDIS_URL.',
      '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!',
      '',
    ].join('\n'),
  )
  return { url: '', description: 'IN MEMORY (no Redis found; sessions vanish on stop)' }
}

async function redisAnswers(url: string): Promise<boolean> {
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 500,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  })
  // Failures are the answer here, not news.
  client.on('error', () => {})
  try {
    await client.connect()
    return (await client.ping()) === 'PONG'
  } catch {
    return false
  } finally {
    client.disconnect()
  }
}

async function waitForRedis(url: string, child: ChildProcess, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline && child.exitCode === null) {
    if (await redisAnswers(url)) return true
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return false
}

async function onPath(command: string): Promise<boolean> {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue
    try {
      await access(join(dir, command), constants.X_OK)
      return true
    } catch {
      // not in this directory
    }
  }
  return false
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, HOST, () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })
}

/** A Redis URL without its password, for printing. */
function redact(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password) parsed.password = '***'
    return parsed.href
  } catch {
    return '(unparsable URL)'
  }
}

// ---------------------------------------------------------------------------
// Start-up and shutdown

async function listenOn<T>(name: string, port: number, variable: string, start: () => Promise<T>): Promise<T> {
  try {
    return await start()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      const hint = port === 5000 ? ' (on macOS the AirPlay Receiver uses it)' : ''
      throw new Error(`port ${port} for the ${name} is in use${hint}: free it or set ${variable}`, { cause: err })
    }
    throw err
  }
}

function printBanner(o: { publicUrl: string; issuer: string; devIssuer: string; api: string; store: string }): void {
  const lines = [
    '',
    '  tokenward demo is running',
    '',
    `    Open the app:   ${o.publicUrl}   (this exact origin: cookies and the redirect URI use it)`,
    `    Dev IdP:        ${o.devIssuer}${o.issuer === o.devIssuer ? '' : `   (unused: BFF_ISSUER is ${o.issuer})`}`,
    `    Demo API:       ${o.api}   (the browser reaches it only through ${o.publicUrl}/api)`,
    `    Sessions:       ${o.store}`,
    '',
    `    Sign in with any username and the password "${PASSWORD}".`,
    '    Access tokens live 60 s; call the API a minute apart to see a refresh.',
    '    Press Ctrl+C to stop.',
    '',
  ]
  console.log(lines.join('\n'))
}

let stopping = false

async function shutdown(reason: string, code: number): Promise<void> {
  if (stopping) return
  stopping = true
  console.log(`\n${reason}: stopping the demo…`)
  // Never hang on the way out (a Redis client waiting for a dead server).
  setTimeout(() => process.exit(code), 5000).unref()
  // tokenward first, so it stops taking requests before its IdP and API go.
  const steps: Array<[string, { close(): Promise<void> } | undefined]> = [
    ['tokenward', running.bff],
    ['demo API', running.api],
    ['dev IdP', running.idp],
  ]
  for (const [name, service] of steps) {
    try {
      await service?.close()
    } catch (err) {
      console.error(`could not stop the ${name}:`, err instanceof Error ? err.message : err)
    }
  }
  running.redis?.kill()
  process.exit(code)
}

process.once('SIGINT', () => void shutdown('SIGINT', 0))
process.once('SIGTERM', () => void shutdown('SIGTERM', 0))

main().catch((err: unknown) => {
  if (err instanceof Error && err.name === 'ConfigError') {
    console.error(`The demo configuration is invalid:\n${err.message}`)
  } else {
    console.error('The demo could not start:', err instanceof Error ? err.message : err)
  }
  void shutdown('start-up failed', 1)
})
