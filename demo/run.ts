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
import { frontendsFromText } from '../src/config-file.js'
import { startServer } from '../src/server.js'
import { startDemoApi } from './api.js'
import type { DemoApi } from './api.js'
import { startDevIdp } from './idp.js'
import type { DevIdp } from './idp.js'

const HOST = '127.0.0.1'
const IDP_PORT = Number(process.env.DEMO_IDP_PORT ?? 4000)
const API_PORT = Number(process.env.DEMO_API_PORT ?? 5000)
const PASSWORD = 'demo'
/** `--two`: the second frontend's IdP and API. */
const IDP2_PORT = Number(process.env.DEMO_IDP2_PORT ?? IDP_PORT + 1)
const API2_PORT = Number(process.env.DEMO_API2_PORT ?? API_PORT + 1)

interface Running {
  idp?: DevIdp
  api?: DemoApi
  /** `--two`: the second frontend's IdP and API. */
  idp2?: DevIdp
  api2?: DemoApi
  bff?: { close(): Promise<void> }
  redis?: ChildProcess
}

const running: Running = {}

async function main(): Promise<void> {
  if (process.argv.includes('--two')) return mainTwo()
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
// `npm run demo -- --two`: two frontends on one tokenward, each with its own IdP
// and API, told apart by the Host (localhost:3000 and 127.0.0.1:3000), as a
// BFF_CONFIG_FILE declares them (docs/configuration.md).

async function mainTwo(): Promise<void> {
  const secret = (): string => randomBytes(32).toString('base64url')
  const redis = await chooseRedis(process.env.BFF_REDIS_URL ?? 'redis://127.0.0.1:6379')
  if (redis.child) running.redis = redis.child
  const spa = fileURLToPath(new URL('./spa', import.meta.url))
  const port = Number(process.env.BFF_PORT ?? 3000)
  const sites = [
    { name: 'shop', publicUrl: `http://localhost:${port}`, issuer: `http://localhost:${IDP_PORT}`, idpPort: IDP_PORT, apiPort: API_PORT },
    {
      name: 'admin',
      publicUrl: `http://127.0.0.1:${port}`,
      issuer: `http://127.0.0.1:${IDP2_PORT}`,
      idpPort: IDP2_PORT,
      apiPort: API2_PORT,
    },
  ].map((s) => ({ ...s, clientId: `tokenward-${s.name}`, clientSecret: secret(), audience: `http://127.0.0.1:${s.apiPort}` }))

  // The file's content, built here; the secrets stay out of it as ${...}
  // references to this process's environment, as in a real deployment.
  const env: Record<string, string | undefined> = {
    BFF_ALLOW_HTTP: 'true',
    BFF_HOST: HOST,
    BFF_LOG_LEVEL: 'info',
    ...process.env,
    BFF_PORT: String(port),
    BFF_REDIS_URL: redis.url,
  }
  for (const s of sites) {
    env[`DEMO_${s.name.toUpperCase()}_CLIENT_SECRET`] = s.clientSecret
    env[`DEMO_${s.name.toUpperCase()}_COOKIE_SECRET`] = secret()
    env[`DEMO_${s.name.toUpperCase()}_ENCRYPTION_KEYS`] = `demo:${randomBytes(32).toString('base64')}`
  }
  const file = {
    frontends: sites.map((s) => ({
      name: s.name,
      publicUrl: s.publicUrl,
      issuer: s.issuer,
      clientId: s.clientId,
      clientSecret: `\${DEMO_${s.name.toUpperCase()}_CLIENT_SECRET}`,
      cookieSecret: `\${DEMO_${s.name.toUpperCase()}_COOKIE_SECRET}`,
      encryptionKeys: `\${DEMO_${s.name.toUpperCase()}_ENCRYPTION_KEYS}`,
      scopes: 'openid profile email offline_access api',
      routes: [{ prefix: '/api', upstream: s.audience, token: 'user' }],
      staticDir: spa,
    })),
  }
  const frontends = frontendsFromText(JSON.stringify(file), env, {}, 'the demo frontends')

  const [first, second] = await Promise.all(
    sites.map((s) => {
      const config = frontends.find((f) => f.name === s.name)!.config
      return listenOn(`dev IdP of ${s.name}`, s.idpPort, s.name === 'shop' ? 'DEMO_IDP_PORT' : 'DEMO_IDP2_PORT', () =>
        startDevIdp({
          port: s.idpPort,
          host: HOST,
          issuer: s.issuer,
          resource: s.audience,
          password: PASSWORD,
          clients: [
            {
              client_id: s.clientId,
              client_secret: s.clientSecret,
              redirect_uris: [config.redirectUri],
              post_logout_redirect_uris: [config.postLogoutRedirect],
              backchannel_logout_uri: `${config.publicOrigin}/auth/backchannel-logout`,
            },
          ],
        }),
      )
    }),
  )
  running.idp = first
  running.idp2 = second
  running.api = await listenOn('demo API of shop', sites[0]!.apiPort, 'DEMO_API_PORT', () =>
    startDemoApi({ port: sites[0]!.apiPort, host: HOST, issuer: sites[0]!.issuer, audience: sites[0]!.audience }),
  )
  running.api2 = await listenOn('demo API of admin', sites[1]!.apiPort, 'DEMO_API2_PORT', () =>
    startDemoApi({ port: sites[1]!.apiPort, host: HOST, issuer: sites[1]!.issuer, audience: sites[1]!.audience }),
  )
  running.bff = await startServer({ frontends, matchHost: true, file: undefined }, { store: redis.url ? 'redis' : 'memory' })

  console.log(
    [
      '',
      '  tokenward demo is running with two frontends on one listener',
      '',
      ...sites.map((s) => `    ${s.name.padEnd(6)} ${s.publicUrl}   (IdP ${s.issuer}, API ${s.audience})`),
      `    Sessions: ${redis.description}`,
      '',
      '    Each origin has its own IdP, client, cookie and sessions: signing in at',
      '    one does not sign you in at the other, and their cookies mean nothing to',
      `    each other. Any username, password "${PASSWORD}". Press Ctrl+C to stop.`,
      '',
    ].join('\n'),
  )
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
    ['second demo API', running.api2],
    ['dev IdP', running.idp],
    ['second dev IdP', running.idp2],
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
