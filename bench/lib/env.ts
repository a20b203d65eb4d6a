// The shared environment of the steady, post, download, redis, sessions and
// memory scenarios: a private redis-server, the dev IdP, the trivial upstream,
// one tokenward process with one logged-in user, and the baselines. The storm
// scenario builds its own (two tokenward processes, another IdP setting).

import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import { startDevIdp, type DevIdp } from '../../demo/idp.js'
import { freePort } from '../../test/helpers/ports.js'
import { startRedisServer } from '../../test/helpers/redis-server.js'
import { unboundedAdapter } from './idp-store.js'
import { onCleanup } from './procs.js'
import { BenchFailure } from './report.js'
import {
  CLIENT_ID,
  hasNginx,
  newSecrets,
  OK_BODY,
  PATH,
  sessionCookie,
  startNginx,
  startPlainProxy,
  startTokenward,
  startUpstream,
  type Tokenward,
} from './servers.js'

export interface Target {
  name: 'upstream' | 'plain-proxy' | 'nginx' | 'tokenward' | 'tokenward-nocache'
  /** Origin; every target is called with the same path. */
  url: string
  /**
   * The process whose CPU time is counted per request: tokenward's, the
   * plain proxy's, and for the upstream this (otherwise idle) orchestrating
   * process. None for nginx (its worker is a grandchild).
   */
  pid?: number
}

export interface MainEnv {
  redisUrl: string
  /** A client of the bench's own, for INFO, MEMORY USAGE and seeding. */
  redis: Redis
  idp: DevIdp
  upstream: string
  tokenward: Tokenward
  /** Cookie and X-CSRF of the one logged-in user. */
  headers: Record<string, string>
  /** upstream, plain-proxy, nginx (when installed), tokenward: started on first use. */
  targets(): Promise<Target[]>
  /**
   * A second tokenward on the same Redis and secrets with BFF_SESSION_CACHE_MS=0:
   * every request reads the session from Redis, as a session's first request
   * after a quiet second does. Same cookie. Started on first use.
   */
  tokenwardNoCache(): Promise<Target>
  notes: string[]
}

/**
 * tokenward routes `/api` to the upstream's root (`/api/hello` reaches
 * `/hello`); the baselines forward paths unchanged (`/api/hello`). The
 * upstream answers both alike, so every target is called with the same path.
 */
export async function startMainEnv(downloadBytes: number): Promise<MainEnv> {
  const notes: string[] = []
  const server = await startRedisServer()
  onCleanup(() => server.close())
  const redis = new Redis(server.url, { maxRetriesPerRequest: 1 })
  onCleanup(() => void redis.disconnect())

  const upstream = await startUpstream(downloadBytes)
  const bffPort = await freePort()
  const bffOrigin = `http://127.0.0.1:${bffPort}`
  const clientSecret = randomBytes(24).toString('base64url')
  const idp = await startDevIdp({
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: clientSecret,
        redirect_uris: [`${bffOrigin}/auth/callback`],
        post_logout_redirect_uris: [`${bffOrigin}/`],
      },
    ],
    // An hour: no refresh can happen during these scenarios, so what is
    // measured is the steady state of a valid access token.
    accessTokenTtl: 3600,
    configure: (c) => {
      c.adapter = unboundedAdapter()
    },
  })
  onCleanup(() => idp.close())

  const secrets = newSecrets()
  const tokenward = await startTokenward({ issuer: idp.issuer, clientSecret, redisUrl: server.url, upstream, port: bffPort, secrets })
  const headers = { cookie: await sessionCookie(tokenward.url), 'x-csrf': '1' }
  const probe = await fetch(`${tokenward.url}${PATH}`, { headers })
  const probeBody = await probe.text()
  if (probe.status !== 200 || probeBody !== OK_BODY) {
    throw new BenchFailure(
      `tokenward answered ${probe.status} ${probeBody.slice(0, 200)} to ${PATH} after login; refusing to benchmark that\n${tokenward.output()}`,
    )
  }

  let targets: Promise<Target[]> | undefined
  let noCache: Promise<Target> | undefined
  return {
    redisUrl: server.url,
    redis,
    idp,
    upstream,
    tokenward,
    headers,
    notes,
    targets() {
      targets ??= (async () => {
        const list: Target[] = [
          { name: 'upstream', url: upstream, pid: process.pid },
          { name: 'plain-proxy', ...(await startPlainProxy(upstream)) },
        ]
        if (hasNginx()) list.push({ name: 'nginx', url: await startNginx(upstream) })
        else notes.push('nginx is not on the PATH: the nginx baseline was skipped')
        list.push({ name: 'tokenward', url: tokenward.url, pid: tokenward.pid })
        return list
      })()
      return targets
    },
    tokenwardNoCache() {
      noCache ??= (async () => {
        const t = await startTokenward({
          issuer: idp.issuer,
          clientSecret,
          redisUrl: server.url,
          upstream,
          port: await freePort(),
          secrets,
          name: 'tokenward (BFF_SESSION_CACHE_MS=0)',
          env: { BFF_SESSION_CACHE_MS: '0' },
        })
        return { name: 'tokenward-nocache', url: t.url, pid: t.pid }
      })()
      return noCache
    },
  }
}
