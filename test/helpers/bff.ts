import { randomBytes, randomUUID } from 'node:crypto'
import { Writable } from 'node:stream'
import { loadConfig, type Config, type LoadConfigOptions } from '../../src/config.js'
import { createLogger } from '../../src/log.js'
import type { OidcClientOptions } from '../../src/oidc/client.js'
import { startServer, type RunningServer } from '../../src/server.js'
import type { Store } from '../../src/store/types.js'
import { freePort } from './ports.js'

export interface TestBff {
  /** Where this instance listens (equals BFF_PUBLIC_URL for the first instance of a world). */
  readonly url: string
  readonly config: Config
  readonly server: RunningServer
  /** Every JSON log line this instance wrote. */
  readonly logs: string[]
  readonly env: Record<string, string>
  close(): Promise<void>
}

export interface TestBffOptions {
  issuer: string
  redisUrl: string
  clientId: string
  clientSecret: string
  /** Defaults to a fresh unique prefix, so files and runs never share keys. */
  redisPrefix?: string
  /** Reuse a port (and so the public URL and the IdP's registered redirect URI). */
  port?: number
  routes?: unknown[]
  env?: Record<string, string | undefined>
  store?: Store | 'memory' | 'redis'
  /** The IdP client's options, e.g. a fetch that routes a public issuer to a local IdP. */
  oidc?: OidcClientOptions
  configOptions?: LoadConfigOptions
}

export function testSecrets(): { cookieSecret: string; encryptionKeys: string } {
  return {
    cookieSecret: randomBytes(32).toString('base64url'),
    encryptionKeys: `k1:${randomBytes(32).toString('base64')}`,
  }
}

/** Starts tokenward in-process on 127.0.0.1 (a loopback origin keeps `__Host-` cookies). */
export async function startBff(o: TestBffOptions): Promise<TestBff> {
  const port = o.port ?? (await freePort())
  const secrets = testSecrets()
  const env: Record<string, string> = {
    BFF_PUBLIC_URL: `http://127.0.0.1:${port}`,
    BFF_ISSUER: o.issuer,
    BFF_CLIENT_ID: o.clientId,
    BFF_CLIENT_SECRET: o.clientSecret,
    BFF_ROUTES: JSON.stringify(o.routes ?? [{ prefix: '/api', upstream: 'http://127.0.0.1:9/', token: 'user' }]),
    BFF_COOKIE_SECRET: secrets.cookieSecret,
    BFF_ENCRYPTION_KEYS: secrets.encryptionKeys,
    BFF_REDIS_URL: o.redisUrl,
    BFF_REDIS_PREFIX: o.redisPrefix ?? `tokenward-test:${randomUUID()}:`,
    BFF_ALLOW_HTTP: 'true',
    BFF_HOST: '127.0.0.1',
    BFF_PORT: String(port),
    BFF_LOG_LEVEL: 'debug',
  }
  for (const [k, v] of Object.entries(o.env ?? {})) {
    if (v === undefined) delete env[k]
    else env[k] = v
  }
  const config = loadConfig(env, o.configOptions)
  const logs: string[] = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(line)
      cb()
    },
  })
  const logger = createLogger(config.logLevel, sink)
  const server = await startServer(config, { logger, store: o.store ?? 'redis', port, ...(o.oidc ? { oidc: o.oidc } : {}) })
  return { url: `http://127.0.0.1:${port}`, config, server, logs, env, close: () => server.close() }
}

/** JSON lines of the logs that are audit events. */
export function auditEvents(logs: readonly string[]): Array<Record<string, unknown>> {
  return logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.audit === true)
}
