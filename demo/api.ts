// Demo upstream API: an OAuth 2.0 resource server that accepts only JWT access
// tokens (RFC 9068) issued by the dev IdP for its own audience. The browser
// reaches it only through tokenward, so it sends no CORS headers at all.

import { createAdaptorServer } from '@hono/node-server'
import { Hono } from 'hono'
import type { Context } from 'hono'
import { createRemoteJWKSet, errors, jwtVerify } from 'jose'
import type { JWTPayload } from 'jose'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface DemoApiOptions {
  /** 0 (the default) picks a free port. */
  port?: number
  host?: string
  issuer: string
  audience: string
}

export interface DemoApi {
  url: string
  port: number
  close(): Promise<void>
}

type Env = { Variables: { claims: JWTPayload } }

const ITEMS = [
  { id: 1, name: 'Notebook', price: 4.5 },
  { id: 2, name: 'Fountain pen', price: 32 },
  { id: 3, name: 'Ink, blue-black', price: 9.9 },
]

export async function startDemoApi(options: DemoApiOptions): Promise<DemoApi> {
  const host = options.host ?? '127.0.0.1'
  const verify = tokenVerifier(options.issuer, options.audience)
  const app = new Hono<Env>()

  app.use(async (c, next) => {
    c.header('Cache-Control', 'no-store')
    // RFC 6750 §2.1: the Authorization header only, never query or body.
    const match = /^Bearer +([A-Za-z0-9\-._~+/]+=*)$/i.exec(c.req.header('authorization') ?? '')
    if (!match?.[1]) {
      // RFC 6750 §3.1: a request without credentials gets no error code, so
      // a proxy does not mistake it for an expired token worth refreshing.
      c.header('WWW-Authenticate', 'Bearer realm="tokenward-demo-api"')
      return c.json({ error: 'unauthorized', message: 'A bearer access token is required' }, 401)
    }
    const result = await verify(match[1])
    if (result.ok) {
      c.set('claims', result.claims)
      return next()
    }
    if (result.unavailable) {
      c.header('Retry-After', '5')
      return c.json({ error: 'temporarily_unavailable', message: 'The identity provider keys cannot be loaded' }, 503)
    }
    return invalidToken(c, result.reason)
  })

  app.get('/hello', (c) => {
    const claims = c.get('claims')
    return c.json({
      message: `Hello, ${claims.sub}!`,
      sub: claims.sub,
      scope: typeof claims.scope === 'string' ? claims.scope : '',
      iat: claims.iat,
      exp: claims.exp,
      calledAt: new Date().toISOString(),
    })
  })

  app.get('/items', (c) => c.json({ items: ITEMS }))

  app.notFound((c) => c.json({ error: 'not_found', message: 'No such resource' }, 404))
  app.onError((err, c) => {
    console.error('demo API: unexpected error', err)
    return c.json({ error: 'server_error', message: 'Unexpected error' }, 500)
  })

  // overrideGlobalObjects: false keeps @hono/node-server from replacing the
  // global Request/Response of a process that also runs tokenward and tests.
  // Without custom server options the adaptor builds a plain http.Server.
  const server = createAdaptorServer({ fetch: app.fetch, overrideGlobalObjects: false }) as Server
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

function invalidToken(c: Context<Env>, description: string): Response {
  // error first: the parameter tokenward looks for to refresh and retry once.
  c.header('WWW-Authenticate', `Bearer error="invalid_token", error_description="${description}"`)
  return c.json({ error: 'invalid_token', message: description }, 401)
}

type Verification = { ok: true; claims: JWTPayload } | { ok: false; unavailable: boolean; reason: string }

function tokenVerifier(issuer: string, audience: string): (token: string) => Promise<Verification> {
  let keys: ReturnType<typeof createRemoteJWKSet> | undefined

  // The jwks_uri comes from discovery, loaded on first use so the API may
  // start before the IdP, and again after a failure.
  const loadKeys = async (): Promise<ReturnType<typeof createRemoteJWKSet>> => {
    if (keys) return keys
    const res = await fetch(new URL('.well-known/openid-configuration', issuer.endsWith('/') ? issuer : `${issuer}/`))
    if (!res.ok) throw new Error(`discovery answered ${res.status}`)
    const metadata = (await res.json()) as { issuer?: unknown; jwks_uri?: unknown }
    // RFC 8414 §3.3: the metadata must name the issuer it was fetched for.
    if (metadata.issuer !== issuer || typeof metadata.jwks_uri !== 'string') {
      throw new Error('discovery metadata does not match the issuer')
    }
    keys = createRemoteJWKSet(new URL(metadata.jwks_uri))
    return keys
  }

  return async (token) => {
    let jwks: ReturnType<typeof createRemoteJWKSet>
    try {
      jwks = await loadKeys()
    } catch (err) {
      console.error('demo API: cannot load IdP metadata:', err instanceof Error ? err.message : err)
      return { ok: false, unavailable: true, reason: 'keys unavailable' }
    }
    try {
      const { payload } = await jwtVerify(token, jwks, {
        issuer,
        audience,
        // RFC 9068 §4: a resource server must check typ, so an ID token or
        // another JWT from the same issuer is never taken for an access token.
        typ: 'at+jwt',
        // RFC 8725 §3.1: an explicit allowlist of algorithms.
        algorithms: ['RS256', 'PS256', 'ES256'],
        requiredClaims: ['sub', 'exp', 'iat'],
      })
      return { ok: true, claims: payload }
    } catch (err) {
      if (err instanceof errors.JWTExpired) return { ok: false, unavailable: false, reason: 'The access token expired' }
      if (keysUnavailable(err)) return { ok: false, unavailable: true, reason: 'keys unavailable' }
      return { ok: false, unavailable: false, reason: 'The access token is invalid' }
    }
  }
}

/** A failure to fetch the JWKS, as opposed to a bad token. */
function keysUnavailable(err: unknown): boolean {
  if (err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid) return true
  // jose throws its base JOSEError for a non-200 JWKS response, and lets
  // fetch's own TypeError through for a network failure; jwtVerify itself
  // throws TypeError only for bad options, which are fixed here.
  return err instanceof TypeError || (err instanceof Error && err.constructor === errors.JOSEError)
}
