// classifyIdpError (src/oidc/client.ts) on real errors, not hand-made ones:
// openid-client's token request against real sockets (a closed port, a server
// that never answers, 5xx and 4xx answers, a body cut off), name resolution,
// and openid-client's own TypeErrors for bad arguments. Only network failures,
// timeouts and 5xx are outages (issue 13 item 9); a TypeError by itself is not.
import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import * as oidc from 'openid-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.js'
import { Keyring } from '../../src/crypto/keyring.js'
import { createLogger } from '../../src/log.js'
import type { OidcClient } from '../../src/oidc/client.js'
import { classifyIdpError, isTransientIdpError } from '../../src/oidc/idp-errors.js'
import { createIdpFetch } from '../../src/oidc/fetch.js'
import { MemoryStore } from '../../src/store/memory/store.js'
import { SessionManager } from '../../src/session/sessions.js'
import { SessionTerminator } from '../../src/lifecycle/terminate.js'
import { testEnv } from '../helpers/env.js'
import { freePort } from '../helpers/ports.js'

type Handler = (req: IncomingMessage, res: ServerResponse) => void

let server: Server
let base: string
const routes = new Map<string, Handler>()
const sockets = new Set<Socket>()

beforeAll(async () => {
  server = createServer((req, res) => {
    const h = routes.get(req.url ?? '')
    if (h) h(req, res)
    else res.writeHead(404).end()
  })
  server.on('connection', (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  routes.set('/503-json', (_req, res) => res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":"server_error"}'))
  routes.set('/502-html', (_req, res) => res.writeHead(502, { 'content-type': 'text/html' }).end('<html>Bad Gateway</html>'))
  routes.set('/400-unavailable', (_req, res) =>
    res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"temporarily_unavailable"}'),
  )
  routes.set('/400', (_req, res) => res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"invalid_grant"}'))
  routes.set('/not-json', (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"access_token": '))
  routes.set('/never', () => {}) // accepts, never answers
  routes.set('/cut', (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '500' })
    res.write('{"access_token":"x",', () => res.destroy())
  })
})
afterAll(async () => {
  for (const s of sockets) s.destroy()
  await new Promise((r) => server.close(r))
})

/** An openid-client configuration whose token endpoint is `tokenEndpoint`, as tokenward builds it (timeout, bounded fetch). */
function configurationFor(tokenEndpoint: string | undefined, timeoutSeconds = 2): oidc.Configuration {
  const metadata: oidc.ServerMetadata = { issuer: base, ...(tokenEndpoint ? { token_endpoint: tokenEndpoint } : {}) }
  const c = new oidc.Configuration(metadata, 'client', 'secret')
  oidc.allowInsecureRequests(c)
  c.timeout = timeoutSeconds
  c[oidc.customFetch] = createIdpFetch(() => undefined)
  return c
}

async function failure(p: Promise<unknown>): Promise<unknown> {
  try {
    await p
  } catch (err) {
    return err
  }
  throw new Error('expected a failure')
}

const refresh = (endpoint: string | undefined, timeout?: number) =>
  failure(oidc.refreshTokenGrant(configurationFor(endpoint, timeout), 'rt'))

describe('outages: network failures, timeouts, 5xx', () => {
  it('a refused connection (a closed port): undici TypeError "fetch failed" with ECONNREFUSED', async () => {
    const err = await refresh(`http://127.0.0.1:${await freePort()}/token`)
    expect(err).toBeInstanceOf(TypeError)
    expect((err as Error).message).toBe('fetch failed')
    expect(classifyIdpError(err)).toBe('unavailable')
    expect(isTransientIdpError(err)).toBe(true)
  })

  it('a name that does not resolve (ENOTFOUND or EAI_AGAIN)', async () => {
    const err = await refresh('http://tokenward-test.invalid/token', 5)
    expect(classifyIdpError(err)).toBe('unavailable')
  })

  it('a server that never answers: the timeout', async () => {
    const err = await refresh(`${base}/never`, 1)
    expect(classifyIdpError(err)).toBe('unavailable')
  })

  it('a body cut off mid-way (undici "terminated")', async () => {
    expect(classifyIdpError(await refresh(`${base}/cut`))).toBe('unavailable')
  })

  it('503 with an OAuth error body, 502 with an HTML page, temporarily_unavailable', async () => {
    // openid-client wraps a 5xx in a ClientError (RESPONSE_IS_NOT_CONFORM) whose cause is the Response.
    expect(classifyIdpError(await refresh(`${base}/503-json`))).toBe('unavailable')
    expect(classifyIdpError(await refresh(`${base}/502-html`))).toBe('unavailable')
    expect(classifyIdpError(await refresh(`${base}/400-unavailable`))).toBe('unavailable')
  })
})

describe('refusals: the IdP answered with an error or something invalid', () => {
  it('400 invalid_grant', async () => {
    expect(classifyIdpError(await refresh(`${base}/400`))).toBe('refused')
  })

  it('a 200 whose body is not JSON', async () => {
    expect(classifyIdpError(await refresh(`${base}/not-json`))).toBe('refused')
  })
})

describe('bugs and misconfigurations: never an outage', () => {
  it('a TypeError for a bad argument (an empty refresh token) is a bug, not an outage', async () => {
    const err = await failure(oidc.refreshTokenGrant(configurationFor(`${base}/400`), ''))
    expect(err).toBeInstanceOf(TypeError)
    expect((err as { code?: string }).code).toBe('ERR_INVALID_ARG_VALUE')
    expect(classifyIdpError(err)).toBe('bug')
    expect(isTransientIdpError(err)).toBe(false)
  })

  it('a TypeError from fetch for an unusable URL (credentials in it) is a bug', async () => {
    const err = await refresh(`http://user:pass@127.0.0.1:${new URL(base).port}/400`)
    expect(err).toBeInstanceOf(TypeError)
    expect(classifyIdpError(err)).toBe('bug')
  })

  it('a TypeError of our own (a programming error) is a bug', () => {
    let err: unknown
    try {
      ;(undefined as unknown as { x: () => void }).x()
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(TypeError)
    expect(classifyIdpError(err)).toBe('bug')
  })

  it('metadata without a token endpoint is a misconfiguration', async () => {
    expect(classifyIdpError(await refresh(undefined))).toBe('bug')
  })

  it('"fetch failed" without a network code behind it is not taken for an outage', () => {
    expect(classifyIdpError(new TypeError('fetch failed', { cause: new Error('unknown scheme') }))).toBe('bug')
  })
})

describe('revocation at logout retries only outages', () => {
  async function endWith(err: Error): Promise<{ revoked: unknown; pending: number; attempts: number; logs: string[] }> {
    const config = loadConfig(testEnv())
    const store = new MemoryStore()
    const logs: string[] = []
    const logger = createLogger('info', { write: (l: string) => void logs.push(l) })
    const sessions = new SessionManager({ store, keyring: new Keyring(config.encryptionKeys), idleTimeoutMs: 60_000, maxAgeMs: 3_600_000 })
    let attempts = 0
    const idp = {
      async revokeRefreshToken(): Promise<boolean> {
        attempts++
        throw err
      },
    }
    const terminator = new SessionTerminator({
      sessions,
      events: store.events,
      oidc: idp as unknown as OidcClient,
      logger,
      retryDelaysMs: [60_000],
    })
    const { session } = await sessions.create({
      sub: 'alice',
      iss: base,
      aud: ['client'],
      claims: {},
      createdAt: Date.now(),
      accessToken: 'at',
      tokenType: 'Bearer',
      refreshToken: 'rt',
    })
    const { revoked } = await terminator.end(session, 'logout')
    const pending = terminator.pendingRetries
    terminator.close()
    await store.close()
    return { revoked, pending, attempts, logs }
  }

  it('a refused connection is retried', async () => {
    const r = await endWith((await refresh(`http://127.0.0.1:${await freePort()}/revoke`)) as Error)
    expect(r.revoked).toBe('queued')
    expect(r.pending).toBe(1)
  })

  it('a bug is logged at error level and not retried', async () => {
    const r = await endWith((await failure(oidc.refreshTokenGrant(configurationFor(`${base}/400`), ''))) as Error)
    expect(r.revoked).toBe(false)
    expect(r.pending).toBe(0)
    expect(r.logs.some((l) => (JSON.parse(l) as { level: string }).level === 'error')).toBe(true)
  })

  it('a refusal is not retried', async () => {
    const r = await endWith((await refresh(`${base}/400`)) as Error)
    expect(r.revoked).toBe(false)
    expect(r.pending).toBe(0)
  })
})
