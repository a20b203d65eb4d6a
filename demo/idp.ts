// Development identity provider: a real, certified OpenID Provider
// (oidc-provider) with a throwaway login page, for `npm run demo`, the
// integration tests and the benchmarks. Never for production: any username
// logs in with one shared password, and all state lives in memory.
//
// This file is the dev IdP's entry (startDevIdp and its options) and its HTTP
// listener; the parts live in demo/idp/: provider.ts (the oidc-provider
// configuration), grants.ts (grant types, refresh tokens, RFC 8693 token
// exchange), accounts.ts (users, claims, acr), interactions.ts and pages.ts
// (the login and consent flow and its HTML), events.ts (counts and event log).

import { createServer } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { JWK } from 'jose'
import Provider, { type ClientMetadata, type Configuration } from 'oidc-provider'
import type { DevIdpLoginResult } from './idp/accounts.js'
import { newCounts, observe, recorder, type DevIdpCounts, type DevIdpEvent } from './idp/events.js'
import { FrontchannelLogout } from './idp/frontchannel.js'
import { implyOfflineConsent, registerTokenExchange, type DevIdpTokenExchange } from './idp/grants.js'
import { handleInteraction } from './idp/interactions.js'
import { errorPage, sendHtml } from './idp/pages.js'
import { optionalRoutePath, routePath } from './idp/paths.js'
import { buildConfiguration, signingKey } from './idp/provider.js'

export type { DevIdpLoginResult } from './idp/accounts.js'
export type { DevIdpCounts, DevIdpEvent } from './idp/events.js'
export { TOKEN_EXCHANGE_GRANT, type DevIdpTokenExchange } from './idp/grants.js'
export { routePath } from './idp/paths.js'

export interface DevIdpOptions {
  /** 0 (the default) picks a free port. */
  port?: number
  host?: string
  /**
   * Defaults to `http://<host>:<port>`. It may name another host and have a
   * path (a tenant's issuer, as Entra ID's `https://login.microsoftonline.com/<tid>/v2.0`):
   * it is only the name the IdP signs with; the endpoints stay at the
   * listener's root, and discovery names them there.
   */
  issuer?: string
  /** grant_types defaults to authorization_code + refresh_token, response_types to code. */
  clients?: ClientMetadata[]
  /** Seconds. */
  accessTokenTtl?: number
  refreshTokenTtl?: number
  idTokenTtl?: number
  sessionTtl?: number
  /** API audience: when set, access tokens are RFC 9068 JWTs for it. */
  resource?: string
  /** The one password every username logs in with. */
  password?: string
  /**
   * Bind tokens to the IdP's browser session (oidc-provider's
   * `expiresWithSession`). Off by default so that ending the IdP session does
   * not silently kill refresh tokens: tests must see tokenward revoke them.
   */
  expiresWithSession?: boolean
  /**
   * Keep `offline_access` in the granted scope without `prompt=consent`
   * (default true); see `implyOfflineConsent` below.
   */
  offlineAccessWithoutConsent?: boolean
  /** Oldest events are dropped beyond this many (long benchmark runs). */
  maxEvents?: number
  /**
   * OpenID Connect Front-Channel Logout 1.0, which oidc-provider lacks
   * (demo/idp/frontchannel.ts): clients may register `frontchannel_logout_uri`
   * and `frontchannel_logout_session_required`, discovery advertises it, and
   * the "signed out" page after a logout at the IdP frames each logged-out
   * client's URI (with `iss` and `sid` when required). Off by default.
   */
  frontchannelLogout?: boolean
  /**
   * Edits the discovery document as it is served (tests of relying parties
   * that read it, e.g. an IdP that does not advertise a grant type it supports).
   */
  discovery?: (document: Record<string, unknown>) => void
  /** Last-minute changes to the oidc-provider configuration (tests). */
  configure?: (configuration: Configuration) => void
  /** RFC 8693 token exchange; off unless set. */
  tokenExchange?: DevIdpTokenExchange
  /**
   * What a login reports besides the account, per username (tests of the
   * relying party's acr and auth_time checks): `acr` and `amr` for the ID
   * token, and `ts`, the authentication time (epoch seconds) that becomes
   * `auth_time`. Unset (the default): none, and the time of the login.
   */
  loginResult?: (username: string) => DevIdpLoginResult | undefined
  /**
   * Sees every request meant for oidc-provider (after the counts above took
   * it) and hands it on with `pass`, or later, or not at all: the hook for
   * test fixtures that make the IdP slow or odd (test/helpers/test-idp.ts).
   */
  intercept?: (req: IncomingMessage, res: ServerResponse, pass: () => void) => void
  /**
   * Called with the provider before it serves its first request, to add Koa
   * middleware (`provider.use`) that sees the parsed endpoints: the hook for
   * test fixtures that shape token responses like other IdPs do
   * (test/helpers/idp-refresh-styles.ts). Koa composes middleware when it
   * starts serving, so later `use` calls would not take effect.
   */
  setup?: (provider: Provider) => void
  /**
   * Mutual TLS (RFC 8705): client authentication by certificate (§2.1 against
   * `ca`, §2.2 self-signed) and certificate-bound tokens (§3). With `aliases`
   * the issuer stays as it is and a second, HTTPS listener that asks for (not
   * requires) client certificates serves the back-channel endpoints,
   * advertised as `mtls_endpoint_aliases` (§5); without, the issuer itself is
   * served over HTTPS and asks for client certificates.
   */
  mtls?: DevIdpMtls
}

export interface DevIdpMtls {
  /** The server's certificate and key (PEM). */
  cert: string
  key: string
  /** The CA (PEM) that verifies clients' certificates for tls_client_auth. */
  ca: string
  aliases: boolean
}

export interface DevIdp {
  issuer: string
  port: number
  provider: Provider
  /** The IdP's private signing key, so tests can forge tokens that differ in exactly one way. */
  signingKey: JWK
  counts: DevIdpCounts
  events: DevIdpEvent[]
  /** Closes the listener and drops open connections; provider state survives. */
  stop(): Promise<void>
  /** Listens again on the same port, with the same state. */
  start(): Promise<void>
  close(): Promise<void>
}

export async function startDevIdp(options: DevIdpOptions = {}): Promise<DevIdp> {
  const host = options.host ?? '127.0.0.1'
  const password = options.password ?? 'demo'

  // The issuer must contain the real port, so listen before building the
  // Provider; requests arriving in between get a 503.
  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => {
    res.writeHead(503).end()
  }
  const { mtls } = options
  // Asks for a client certificate without requiring one: the IdP decides per
  // client (RFC 8705 §2), and browsers on the same host are not asked to pick one.
  const tlsOptions = mtls ? { cert: mtls.cert, key: mtls.key, ca: mtls.ca, requestCert: true, rejectUnauthorized: false } : undefined
  const serve = (req: IncomingMessage, res: ServerResponse): void => handler(req, res)
  const server: Server = tlsOptions && !mtls?.aliases ? createHttpsServer(tlsOptions, serve) : createServer(serve)
  const aliasServer: Server | undefined = tlsOptions && mtls?.aliases ? createHttpsServer(tlsOptions, serve) : undefined
  const sockets = new Set<Socket>()
  for (const s of [server, aliasServer]) {
    s?.on('connection', (socket: Socket) => {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
    })
  }
  await listen(server, options.port ?? 0, host)
  if (aliasServer) await listen(aliasServer, 0, host)
  const port = (server.address() as AddressInfo).port
  const scheme = tlsOptions && !mtls?.aliases ? 'https' : 'http'
  const issuer = options.issuer ?? `${scheme}://${urlHost(host)}:${port}`
  const aliasOrigin = aliasServer ? `https://${urlHost(host)}:${(aliasServer.address() as AddressInfo).port}` : undefined
  const counts = newCounts()
  const events: DevIdpEvent[] = []
  const record = recorder(events, options.maxEvents ?? 10_000)
  let provider: Provider
  let key: JWK
  const frontchannel = options.frontchannelLogout ? new FrontchannelLogout() : undefined
  try {
    key = await signingKey()
    provider = new Provider(issuer, await buildConfiguration(options, key, { frontchannel, mtlsAliasOrigin: aliasOrigin }))
    // Before the first client lookup below: clients are checked against the registered grant types.
    if (options.tokenExchange) {
      await registerTokenExchange(provider, options.tokenExchange, options.tokenExchange.ttl ?? options.accessTokenTtl ?? 60, key, record)
    }
    // oidc-provider checks static client metadata only on first use; a typo
    // in a test's client should fail here, not as an odd error mid-flow.
    for (const client of options.clients ?? []) await provider.Client.find(client.client_id)
  } catch (err) {
    await closeServer(server, sockets)
    throw err
  }

  observe(provider, counts, record)
  frontchannel?.attach(provider)
  const editDiscovery = options.discovery
  if (editDiscovery) {
    const discoveryPath = '/.well-known/openid-configuration'
    // Koa middleware around oidc-provider's routes: the body is still an object here.
    provider.use(async (ctx, next) => {
      await next()
      if (ctx.path === discoveryPath && ctx.body && typeof ctx.body === 'object') editDiscovery(ctx.body as Record<string, unknown>)
    })
  }
  if (options.offlineAccessWithoutConsent ?? true) implyOfflineConsent(provider)

  options.setup?.(provider)
  const tokenPath = routePath(provider, 'token')
  // Undefined when a test turned revocation off (an IdP without it, as Entra ID).
  const revocationPath = optionalRoutePath(provider, 'revocation')
  const callback = provider.callback()
  const { intercept } = options

  handler = (req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/'
    if (path.startsWith('/interaction/')) {
      handleInteraction(provider, password, req, res, path, options.loginResult).catch((err: unknown) => {
        console.error('dev IdP: interaction handler failed', err)
        if (!res.headersSent) sendHtml(res, 500, errorPage('Something went wrong', 'See the dev IdP output.'))
        else res.destroy()
      })
      return
    }
    if (req.method === 'POST' && path === revocationPath) counts.revocationRequests++
    if (req.method === 'POST' && path === tokenPath) counts.tokenRequests++
    const pass = (): void => void callback(req, res)
    if (intercept) intercept(req, res, pass)
    else pass()
  }

  return {
    issuer,
    port,
    provider,
    signingKey: key,
    counts,
    events,
    async stop() {
      await closeServer(server, sockets)
    },
    async start() {
      if (!server.listening) await listen(server, port, host)
    },
    async close() {
      if (aliasServer) await closeServer(aliasServer, sockets)
      await closeServer(server, sockets)
    },
  }
}

// ---------------------------------------------------------------------------
// Listener plumbing

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err)
    server.once('error', onError)
    server.listen(port, host, () => {
      server.off('error', onError)
      resolve()
    })
  })
}

function closeServer(server: Server, sockets: Set<Socket>): Promise<void> {
  if (!server.listening) return Promise.resolve()
  return new Promise((resolve) => {
    server.close(() => resolve())
    // Keep-alive connections would otherwise keep the IdP reachable.
    for (const socket of sockets) socket.destroy()
    sockets.clear()
  })
}

function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '::') return '127.0.0.1'
  return host.includes(':') ? `[${host}]` : host
}
