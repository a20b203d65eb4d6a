// Development identity provider: a real, certified OpenID Provider
// (oidc-provider) with a throwaway login page, for `npm run demo`, the
// integration tests and the benchmarks. Never for production: any username
// logs in with one shared password, and all state lives in memory.

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { createServer } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { calculateJwkThumbprint, EmbeddedJWK, exportJWK, generateKeyPair, importJWK, jwtVerify, type JWK } from 'jose'
import Provider, { errors } from 'oidc-provider'
import type {
  Account,
  Client,
  ClientMetadata,
  Configuration,
  Interaction,
  KoaContextWithOIDC,
  ResourceServerInstance,
  TokenEndpointGrantContext,
} from 'oidc-provider'

/** RFC 8693 §2.1 grant type and §3 token type identifiers. */
export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange'
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token'
const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt'

/**
 * RFC 8693 token exchange, which oidc-provider does not implement: a client
 * swaps a user's access token (the subject token) for one meant for another
 * API, with the same `sub`. Impersonation semantics only (§1.1: no actor token).
 */
export interface DevIdpTokenExchange {
  /**
   * Where tokens may be exchanged to: each key is a value a client may send as
   * `audience` or `resource` (RFC 8693 §2.1) and becomes the issued token's
   * `aud`; its value lists the scopes the IdP grants there (a `scope` asking
   * for more gets invalid_scope; none asked, all of them). Anything else gets
   * invalid_target (§2.2.2).
   */
  targets: Record<string, readonly string[]>
  /** Client ids given the grant type (default: every configured client). */
  clients?: readonly string[]
  /** Seconds an exchanged token lives (default: the access-token TTL). */
  ttl?: number
}

export interface DevIdpOptions {
  /** 0 (the default) picks a free port. */
  port?: number
  host?: string
  /** Defaults to `http://<host>:<port>`; must be an origin (no path). */
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
}

export interface DevIdpLoginResult {
  acr?: string
  amr?: string[]
  ts?: number
}

export interface DevIdpCounts {
  authorizationCodeGrants: number
  refreshGrants: number
  /** Refresh-token grants that failed, whatever the error. */
  refreshErrors: number
  /** Token-endpoint errors `invalid_grant`, whatever the grant type. */
  invalidGrants: number
  /** Grants actually revoked through the revocation endpoint (RFC 7009). */
  revocations: number
  /** POSTs to the revocation endpoint, successful or not. */
  revocationRequests: number
  /** POSTs to the token endpoint, counted on arrival. */
  tokenRequests: number
  /** Token exchanges (RFC 8693) that issued a token. */
  tokenExchanges: number
  /** Token exchanges refused, whatever the error. */
  tokenExchangeErrors: number
}

export interface DevIdpEvent {
  name: string
  at: number
  detail?: Record<string, unknown>
}

export interface DevIdp {
  issuer: string
  port: number
  provider: Provider
  /** The IdP's private signing key, so tests can forge tokens that differ in exactly one way. */
  signingKey: JWK
  counts: DevIdpCounts
  events: DevIdpEvent[]
  setTokenEndpointDelay(ms: number): void
  /** Closes the listener and drops open connections; provider state survives. */
  stop(): Promise<void>
  /** Listens again on the same port, with the same state. */
  start(): Promise<void>
  close(): Promise<void>
}

const DAY = 24 * 60 * 60

export async function startDevIdp(options: DevIdpOptions = {}): Promise<DevIdp> {
  const host = options.host ?? '127.0.0.1'
  const password = options.password ?? 'demo'

  // The issuer must contain the real port, so listen before building the
  // Provider; requests arriving in between get a 503.
  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => {
    res.writeHead(503).end()
  }
  const server = createServer((req, res) => handler(req, res))
  const sockets = new Set<Socket>()
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await listen(server, options.port ?? 0, host)
  const port = (server.address() as AddressInfo).port
  const issuer = options.issuer ?? `http://${urlHost(host)}:${port}`
  const counts: DevIdpCounts = {
    authorizationCodeGrants: 0,
    refreshGrants: 0,
    refreshErrors: 0,
    invalidGrants: 0,
    revocations: 0,
    revocationRequests: 0,
    tokenRequests: 0,
    tokenExchanges: 0,
    tokenExchangeErrors: 0,
  }
  const events: DevIdpEvent[] = []
  const maxEvents = options.maxEvents ?? 10_000
  const record = (name: string, detail?: Record<string, unknown>): void => {
    events.push(detail ? { name, at: Date.now(), detail } : { name, at: Date.now() })
    if (events.length > maxEvents) events.splice(0, events.length - maxEvents)
  }
  let provider: Provider
  let key: JWK
  try {
    if (new URL(issuer).pathname !== '/') throw new Error(`dev IdP issuer must be an origin without a path: ${issuer}`)
    key = await signingKey()
    provider = new Provider(issuer, await buildConfiguration(options, key))
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
  if (options.offlineAccessWithoutConsent ?? true) implyOfflineConsent(provider)

  const tokenPath = provider.pathFor('token')
  const revocationPath = provider.pathFor('revocation')
  const callback = provider.callback()
  let tokenDelayMs = 0

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
    if (req.method === 'POST' && path === tokenPath) {
      counts.tokenRequests++
      if (tokenDelayMs > 0) {
        // Held at the door, before oidc-provider sees it: the refresh token is
        // rotated only after the delay, like a slow IdP under load.
        const delay = tokenDelayMs
        setTimeout(() => {
          if (!req.socket.destroyed) void callback(req, res)
        }, delay)
        return
      }
    }
    void callback(req, res)
  }

  return {
    issuer,
    port,
    provider,
    signingKey: key,
    counts,
    events,
    setTokenEndpointDelay(ms) {
      tokenDelayMs = Math.max(0, ms)
    },
    async stop() {
      await closeServer(server, sockets)
    },
    async start() {
      if (!server.listening) await listen(server, port, host)
    },
    async close() {
      await closeServer(server, sockets)
    },
  }
}

// ---------------------------------------------------------------------------
// Configuration

async function buildConfiguration(options: DevIdpOptions, key: JWK): Promise<Configuration> {
  const accessTokenTtl = options.accessTokenTtl ?? 60
  const refreshTokenTtl = options.refreshTokenTtl ?? 14 * DAY
  const sessionTtl = options.sessionTtl ?? 14 * DAY
  const { resource } = options

  const configuration: Configuration = {
    clients: (options.clients ?? []).map((client) => withClientDefaults(client, options.tokenExchange)),
    // Authorization code only: no implicit or hybrid flows (RFC 9700 §2.1.2).
    responseTypes: ['code'],
    jwks: { keys: [key] },
    // oidc-provider refuses outgoing requests (back-channel logout) to loopback
    // and private addresses, as SSRF protection. This IdP serves tokenward on
    // the same machine by design, so its requests go out without that dispatcher.
    fetch: (url, init) => {
      const { dispatcher: _ssrfGuard, ...rest } = init as RequestInit & { dispatcher?: unknown }
      return globalThis.fetch(url, rest)
    },
    // Random per start: cookies of an earlier run are simply not recognised.
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
    },
    // Core §5.4 puts scope-requested claims in the ID token only when no
    // access token is issued; oidc-provider enforces that by default. The dev
    // IdP includes them anyway so a BFF needs no userinfo call (its access
    // token may be a JWT for the API, which userinfo would refuse).
    conformIdTokenClaims: false,
    // PKCE for every client, S256 only (RFC 9700 §2.1.1; oidc-provider 9
    // supports no `plain`).
    pkce: { required: () => true },
    // Every refresh rotates (RFC 9700 §4.14.2), so tests see reuse detection.
    rotateRefreshToken: true,
    // oidc-provider drops `offline_access` without prompt=consent (OpenID
    // Connect Core §11) and then issues no refresh token. An AS may issue one
    // at its discretion (RFC 6749 §1.5): the dev IdP does whenever the client
    // may use the refresh_token grant, whatever the prompt.
    issueRefreshToken: async (_ctx, client, source) =>
      source.kind === 'AuthorizationCode' && client.grantTypeAllowed('refresh_token'),
    expiresWithSession: async () => options.expiresWithSession ?? false,
    ttl: {
      AccessToken: accessTokenTtl,
      ClientCredentials: accessTokenTtl,
      AuthorizationCode: 60,
      IdToken: options.idTokenTtl ?? 3600,
      RefreshToken: refreshTokenTtl,
      Interaction: 10 * 60,
      Session: sessionTtl,
      Grant: Math.max(refreshTokenTtl, sessionTtl),
    },
    interactions: {
      url: async (_ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    findAccount,
    // The dev IdP is reached by servers (tokenward, tests), never by browser
    // scripts, so no CORS at all.
    clientBasedCORS: () => false,
    renderError: async (ctx, out) => {
      ctx.type = 'html'
      ctx.body = errorPage(String(out.error), String(out.error_description ?? ''))
    },
    features: {
      devInteractions: { enabled: false },
      revocation: {
        enabled: true,
        // RFC 7009 §2.1: a client revokes only tokens issued to itself.
        allowedPolicy: async (_ctx, client, token) => {
          if (token.clientId !== client.clientId) throw new errors.InvalidRequest('client is not authorized to revoke the presented token')
          return true
        },
      },
      introspection: {
        enabled: true,
        // RFC 7662 §2.1 leaves this to the AS: any confidential client (a
        // resource server) may introspect; a public one only its own tokens.
        allowedPolicy: async (_ctx, client, token) => client.clientAuthMethod !== 'none' || token.clientId === client.clientId,
      },
      // For tokenward's `client` routes; a client opts in with grant_types.
      clientCredentials: { enabled: true },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: async (ctx, form) => {
          ctx.type = 'html'
          ctx.body = logoutPage(form)
        },
        postLogoutSuccessSource: async (ctx) => {
          ctx.type = 'html'
          ctx.body = loggedOutPage()
        },
      },
      ...(resource ? { resourceIndicators: resourceIndicators(resource, accessTokenTtl) } : {}),
    },
  }
  options.configure?.(configuration)
  return configuration
}

function withClientDefaults(client: ClientMetadata, exchange: DevIdpTokenExchange | undefined): ClientMetadata {
  const grantTypes = client.grant_types ?? ['authorization_code', 'refresh_token']
  const exchanging = exchange !== undefined && (exchange.clients ?? [client.client_id]).includes(client.client_id) && !grantTypes.includes(TOKEN_EXCHANGE_GRANT)
  return {
    grant_types: grantTypes,
    // A client-credentials-only client has no redirect URIs and no response types.
    response_types: grantTypes.includes('authorization_code') ? ['code'] : [],
    ...client,
    ...(exchanging ? { grant_types: [...grantTypes, TOKEN_EXCHANGE_GRANT] } : {}),
  }
}

function resourceIndicators(resource: string, accessTokenTtl: number): NonNullable<Configuration['features']>['resourceIndicators'] {
  return {
    enabled: true,
    defaultResource: async () => resource,
    // Refresh and code exchange without a `resource` parameter still get an
    // access token for the API (RFC 8707 §2.2 leaves the default to the AS).
    useGrantedResource: async () => true,
    getResourceServerInfo: async (_ctx, indicator) => {
      if (indicator !== resource) throw new errors.InvalidTarget()
      return {
        audience: resource,
        scope: 'api',
        accessTokenTTL: accessTokenTtl,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }
    },
  }
}

async function signingKey(): Promise<JWK> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true })
  const jwk = await exportJWK(privateKey)
  // RFC 7638 thumbprint as kid: unique per start, so keys of two IdPs never
  // look alike to a verifier.
  return { ...jwk, kid: await calculateJwkThumbprint(jwk), alg: 'RS256', use: 'sig' }
}

async function findAccount(_ctx: KoaContextWithOIDC, sub: string): Promise<Account> {
  return {
    accountId: sub,
    claims: async () => ({
      sub,
      name: sub.charAt(0).toUpperCase() + sub.slice(1),
      preferred_username: sub,
      email: `${sub}@example.com`,
      email_verified: true,
    }),
  }
}

/**
 * OpenID Connect Core §11 lets an OP grant `offline_access` without
 * `prompt=consent` when "other conditions" permit it; oidc-provider offers no
 * hook for that and silently drops the scope. Then a refresh request that
 * repeats the configured scopes fails with invalid_scope, unlike at most real
 * IdPs. So an authorization request asking for `offline_access` without any
 * `prompt` gets `prompt=consent` added: the consent interaction that follows
 * is granted automatically (handleInteraction), the user sees nothing.
 */
function implyOfflineConsent(provider: Provider): void {
  const authorizationPath = provider.pathFor('authorization')
  provider.use(async (ctx, next) => {
    if (ctx.method === 'GET' && ctx.path === authorizationPath) {
      const { scope, prompt } = ctx.query
      if (prompt === undefined && typeof scope === 'string' && scope.split(' ').includes('offline_access')) {
        ctx.query = { ...ctx.query, prompt: 'consent' }
      }
    }
    await next()
  })
}

// ---------------------------------------------------------------------------
// RFC 8693 token exchange

interface ExchangeParams {
  subject_token?: string
  subject_token_type?: string
  requested_token_type?: string
  audience?: string | string[]
  actor_token?: string
  actor_token_type?: string
}

interface Subject {
  readonly accountId: string
  /** The grant behind an opaque subject token (JWT access tokens do not carry it). */
  readonly grantId: string | undefined
  /** RFC 9449 §6: the key the subject token is bound to, if any. */
  readonly jkt: string | undefined
  /** Not secret: lets tests tell which subject token was exchanged. */
  readonly jti: string | undefined
}

const asList = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v])

/**
 * Registers the token-exchange grant at the token endpoint (oidc-provider
 * authenticates the client and checks its grant_types before the handler).
 * The handler validates the subject token for real (signature, issuer and
 * expiry of a JWT access token against this IdP's own key, or a lookup of an
 * opaque one and its grant), requires it to have been issued to the calling
 * client, and issues an RFC 9068 JWT access token for the requested audience,
 * signed by this IdP, with the subject's `sub` (RFC 8693 §2.2.1 answer).
 */
async function registerTokenExchange(provider: Provider, options: DevIdpTokenExchange, ttl: number, key: JWK, record: Recorder): Promise<void> {
  // The public half of the signing key; the subject token must verify against it.
  const publicKey = await importJWK({ kty: key.kty, n: key.n, e: key.e }, 'RS256')
  const handler = async (ctx: TokenEndpointGrantContext<ExchangeParams>): Promise<void> => {
    const { client, params } = ctx.oidc
    // §2.1: subject_token and subject_token_type are REQUIRED.
    if (!params.subject_token) throw new errors.InvalidRequest('missing required parameter subject_token')
    if (params.subject_token_type !== ACCESS_TOKEN_TYPE) throw new errors.InvalidRequest('unsupported subject_token_type')
    if (params.actor_token !== undefined || params.actor_token_type !== undefined) throw new errors.InvalidRequest('delegation (actor_token) is not supported')
    if (params.requested_token_type !== undefined && params.requested_token_type !== ACCESS_TOKEN_TYPE && params.requested_token_type !== JWT_TOKEN_TYPE) {
      throw new errors.InvalidRequest('unsupported requested_token_type')
    }
    // §2.1: audience and resource both name the target; §2.2.2: invalid_target when the AS will not issue for it.
    const wanted = [...asList(params.audience), ...asList(params.resource)]
    if (wanted.length === 0) throw new errors.InvalidTarget('audience or resource is required')
    const audience = wanted[0]!
    if (wanted.some((w) => !Object.hasOwn(options.targets, w))) throw new errors.InvalidTarget('tokens are not issued for the requested audience')
    if (wanted.some((w) => w !== audience)) throw new errors.InvalidTarget('only a single audience is supported')
    const allowed = options.targets[audience]!
    const requested = params.scope?.split(' ').filter(Boolean)
    const denied = requested?.filter((s) => !allowed.includes(s)) ?? []
    if (denied.length > 0) throw new errors.InvalidScope('requested scope is not granted for this audience', denied.join(' '))
    const scope = (requested ?? allowed).join(' ')

    const subject = await verifySubject(provider, client, params.subject_token, publicKey)
    // RFC 9449: a DPoP proof binds the new token; a bound subject token is only
    // exchanged by the holder of its key (otherwise a stolen bound token could
    // be laundered into an unbound one).
    const jkt = await dpopThumbprint(ctx, provider)
    if (subject.jkt !== undefined && subject.jkt !== jkt) throw new errors.InvalidRequest('subject_token is DPoP-bound: the request needs a DPoP proof with its key')

    const resourceServer: ResourceServerInstance = {
      audience,
      scope,
      scopes: new Set(scope.split(' ').filter(Boolean)),
      identifier: () => audience,
      accessTokenFormat: 'jwt',
      jwt: { sign: { alg: 'RS256' } },
    }
    const at = new provider.AccessToken({
      accountId: subject.accountId,
      client,
      grantId: subject.grantId ?? '',
      gty: 'token_exchange',
      scope: scope || undefined,
      expiresIn: ttl,
      resourceServer,
    })
    if (jkt) at.setThumbprint('jkt', jkt)
    const value = await at.save()
    record('token_exchange', { clientId: client.clientId, accountId: subject.accountId, audience, subjectJti: subject.jti, tokenType: at.tokenType })
    // §2.2.1: access_token, issued_token_type and token_type REQUIRED, expires_in
    // RECOMMENDED, scope when it differs from the request (always sent here).
    ctx.body = {
      access_token: value,
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: at.tokenType,
      expires_in: at.expiration,
      ...(scope ? { scope } : {}),
    }
  }
  provider.registerGrantType<ExchangeParams>(
    TOKEN_EXCHANGE_GRANT,
    handler,
    ['subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'resource', 'scope', 'actor_token', 'actor_token_type'],
    // §2.1: audience and resource may be repeated.
    ['audience', 'resource'],
  )
}

/** The subject token, validated; §2.2.2 makes any problem with it invalid_request. */
async function verifySubject(provider: Provider, client: Client, token: string, publicKey: Awaited<ReturnType<typeof importJWK>>): Promise<Subject> {
  const invalid = (why: string) => new errors.InvalidRequest(`subject_token ${why}`)
  if (token.split('.').length === 3) {
    // An RFC 9068 JWT access token (what this IdP issues with resource
    // indicators on): signature by this IdP's key, `iss`, `typ` and `exp`.
    // oidc-provider keeps no record of JWT access tokens, so like any resource
    // server this cannot see a revoked grant until the token expires.
    let claims: Record<string, unknown>
    try {
      ;({ payload: claims } = await jwtVerify(token, publicKey, { issuer: provider.issuer, typ: 'at+jwt', algorithms: ['RS256'] }))
    } catch {
      throw invalid('is invalid or expired')
    }
    if (typeof claims.sub !== 'string' || !claims.sub) throw invalid('has no subject')
    // RFC 8693 §5: which client may exchange which token is the AS's policy; here, only its own.
    if (claims.client_id !== client.clientId) throw invalid('was not issued to this client')
    const cnf = claims.cnf as { jkt?: unknown } | undefined
    return {
      accountId: claims.sub,
      grantId: undefined,
      jkt: typeof cnf?.jkt === 'string' ? cnf.jkt : undefined,
      jti: typeof claims.jti === 'string' ? claims.jti : undefined,
    }
  }
  // Opaque: the stored token (find() returns nothing once it expired) and its grant, which revocation deletes.
  const at = await provider.AccessToken.find(token)
  if (!at || !at.isValid) throw invalid('is invalid or expired')
  if (at.clientId !== client.clientId) throw invalid('was not issued to this client')
  const grant = await provider.Grant.find(at.grantId)
  if (!grant || grant.accountId !== at.accountId || grant.clientId !== client.clientId) throw invalid('belongs to a grant that no longer exists')
  return { accountId: at.accountId, grantId: at.grantId, jkt: at.jkt, jti: at.jti }
}

/** RFC 9449 §4.3 checks of the request's DPoP proof; the key's thumbprint, or undefined without a proof. */
async function dpopThumbprint(ctx: KoaContextWithOIDC, provider: Provider): Promise<string | undefined> {
  const proof = ctx.get('DPoP')
  if (!proof) return undefined
  const bad = (why: string) => new errors.InvalidDpopProof(`invalid DPoP proof: ${why}`)
  let header: { jwk?: JWK }
  let claims: Record<string, unknown>
  try {
    ;({ payload: claims, protectedHeader: header } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256', 'EdDSA', 'Ed25519', 'PS256', 'RS256'] }))
  } catch {
    throw bad('signature')
  }
  if (claims.htm !== 'POST') throw bad('htm')
  const htu = typeof claims.htu === 'string' ? URL.parse(claims.htu) : null
  if (htu) htu.search = htu.hash = ''
  if (htu?.href !== provider.urlFor('token')) throw bad('htu')
  const now = Math.floor(Date.now() / 1000)
  if (typeof claims.iat !== 'number' || Math.abs(now - claims.iat) > 60) throw bad('iat')
  if (typeof claims.jti !== 'string' || !claims.jti) throw bad('jti')
  if (!(await provider.ReplayDetection.unique(ctx.oidc.client!.clientId, claims.jti, now + 120))) throw bad('replayed')
  return calculateJwkThumbprint(header.jwk!)
}

// ---------------------------------------------------------------------------
// Observability: counts and a token-free event log

type Recorder = (name: string, detail?: Record<string, unknown>) => void

function observe(provider: Provider, counts: DevIdpCounts, record: Recorder): void {
  const grantType = (ctx: KoaContextWithOIDC): string | undefined => {
    const value = ctx.oidc.params?.grant_type
    return typeof value === 'string' ? value : undefined
  }
  provider.on('grant.success', (ctx) => {
    const type = grantType(ctx)
    if (type === 'authorization_code') counts.authorizationCodeGrants++
    if (type === 'refresh_token') counts.refreshGrants++
    if (type === TOKEN_EXCHANGE_GRANT) counts.tokenExchanges++
    record('grant.success', { grantType: type, clientId: ctx.oidc.client?.clientId })
  })
  provider.on('grant.error', (ctx, err) => {
    const type = grantType(ctx)
    if (type === 'refresh_token') counts.refreshErrors++
    if (type === TOKEN_EXCHANGE_GRANT) counts.tokenExchangeErrors++
    if (err.error === 'invalid_grant') counts.invalidGrants++
    record('grant.error', {
      grantType: type,
      clientId: ctx.oidc.client?.clientId,
      error: err.error,
      description: err.error_description,
    })
  })
  provider.on('refresh_token.consumed', (token) => {
    record('refresh_token.consumed', { clientId: token.clientId, accountId: token.accountId, grantId: token.grantId })
  })
  provider.on('grant.revoked', (ctx, grantId) => {
    if (ctx.oidc.route === 'revocation') counts.revocations++
    record('grant.revoked', { grantId, route: ctx.oidc.route })
  })
  provider.on('revocation.error', (ctx, err) => {
    record('revocation.error', { clientId: ctx.oidc.client?.clientId, error: err.error })
  })
  // What a pushed authorization request (RFC 9126) carried, as sent (the body,
  // not oidc-provider's normalised params, which turn max_age=0 into
  // prompt=login), so tests can see parameters the browser never carries.
  provider.on('pushed_authorization_request.success', (ctx, client) => {
    const p: Record<string, unknown> = ctx.oidc.body ?? {}
    const pick = (k: string) => (typeof p[k] === 'string' ? (p[k] as string) : undefined)
    record('pushed_authorization_request.success', {
      clientId: client.clientId,
      state: pick('state'),
      prompt: pick('prompt'),
      acr_values: pick('acr_values'),
      max_age: pick('max_age'),
    })
  })
  provider.on('authorization.error', (ctx, err) => {
    record('authorization.error', { clientId: ctx.oidc.client?.clientId, error: err.error, description: err.error_description })
  })
  provider.on('end_session.success', (ctx) => {
    record('end_session.success', { clientId: ctx.oidc.client?.clientId })
  })
  provider.on('backchannel.success', (_ctx, client, accountId, sid) => {
    record('backchannel.success', { clientId: client.clientId, accountId, sid })
  })
  provider.on('backchannel.error', (_ctx, err, client, accountId, sid) => {
    record('backchannel.error', { clientId: client.clientId, accountId, sid, error: err.message })
  })
  provider.on('server_error', (_ctx, err) => {
    // A bug in the dev IdP or its configuration: never hide it.
    console.error('dev IdP: oidc-provider server_error', err)
    record('server_error', { message: err.message })
  })
}

// ---------------------------------------------------------------------------
// Interactions: the login form and automatic consent

async function handleInteraction(
  provider: Provider,
  password: string,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  loginResult?: (username: string) => DevIdpLoginResult | undefined,
): Promise<void> {
  const match = /^\/interaction\/([\w-]+)(\/login|\/abort)?$/.exec(path)
  if (!match) return sendHtml(res, 404, errorPage('Not found', ''))
  const action = match[2] ?? ''
  const allowed = action === '' ? 'GET' : 'POST'
  if (req.method !== allowed) {
    res.setHeader('Allow', allowed)
    return sendHtml(res, 405, errorPage('Method not allowed', ''))
  }

  let details: Interaction
  try {
    details = await provider.interactionDetails(req, res)
  } catch (err) {
    if (err instanceof errors.SessionNotFound) {
      return sendHtml(res, 400, errorPage(
        'This sign-in has expired',
        'It was completed already or took too long. Go back to the application and sign in again.',
      ))
    }
    throw err
  }
  if (details.uid !== match[1]) return sendHtml(res, 400, errorPage('Sign-in mismatch', 'Start over from the application.'))

  const { prompt } = details
  if (prompt.name === 'consent') {
    // First-party dev IdP: consent is implied, never shown.
    const grantId = await grantConsent(provider, details)
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true })
  }
  if (prompt.name !== 'login') {
    return sendHtml(res, 500, errorPage('Unsupported prompt', `The dev IdP cannot handle "${prompt.name}".`))
  }

  if (action === '') return sendHtml(res, 200, loginPage(details, password))

  if (action === '/abort') {
    return provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'End-user cancelled the sign-in',
    }, { mergeWithLastSubmission: false })
  }

  const form = await readForm(req)
  if (!form) return sendHtml(res, 413, errorPage('Request too large', ''))
  const username = (form.get('username') ?? '').trim()
  const problem = checkCredentials(username, form.get('password') ?? '', password)
  if (problem) return sendHtml(res, 200, loginPage(details, password, problem, username))
  return provider.interactionFinished(req, res, { login: { ...loginResult?.(username), accountId: username } }, { mergeWithLastSubmission: false })
}

async function grantConsent(provider: Provider, details: Interaction): Promise<string> {
  const accountId = details.session?.accountId
  const clientId = details.params.client_id
  if (!accountId || typeof clientId !== 'string') throw new Error('consent prompt without account or client')
  const grant = (details.grantId ? await provider.Grant.find(details.grantId) : undefined)
    ?? new provider.Grant({ accountId, clientId })
  const missing = details.prompt.details as {
    missingOIDCScope?: string[]
    missingOIDCClaims?: string[]
    missingResourceScopes?: Record<string, string[]>
  }
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '))
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims)
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '))
  }
  return grant.save()
}

function checkCredentials(username: string, given: string, expected: string): string | undefined {
  if (!username) return 'Enter a username.'
  // Control characters would make confusing `sub` values; anything else,
  // including markup, is allowed so tests can check that it gets escaped.
  if (username.length > 100 || /\p{Cc}/u.test(username)) return 'Use a shorter, printable username.'
  // Compare digests in constant time: nothing about the password leaks
  // through timing, not even its length.
  const a = createHash('sha256').update(given).digest()
  const b = createHash('sha256').update(expected).digest()
  if (!timingSafeEqual(a, b)) return 'Wrong password.'
  return undefined
}

async function readForm(req: IncomingMessage, limit = 16 * 1024): Promise<URLSearchParams | undefined> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    const buffer = chunk as Buffer
    size += buffer.length
    if (size > limit) return undefined
    chunks.push(buffer)
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'))
}

// ---------------------------------------------------------------------------
// Pages: plain HTML, no external resources, everything echoed is escaped

const CSS = `
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:grid;place-items:center;background:#f3f4f6;color:#111827;
font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{width:min(380px,92vw);background:#fff;border-radius:12px;padding:28px 28px 20px;
box-shadow:0 1px 3px rgba(0,0,0,.08),0 8px 24px rgba(0,0,0,.06)}
h1{font-size:1.25rem;margin:0 0 4px}
.brand{font-size:.8rem;letter-spacing:.06em;text-transform:uppercase;color:#6b7280;margin:0 0 16px}
label{display:block;font-weight:600;font-size:.9rem;margin:14px 0 4px}
input{width:100%;padding:9px 11px;border:1px solid #d1d5db;border-radius:8px;font:inherit}
input:focus{outline:2px solid #2563eb;outline-offset:1px}
.actions{display:flex;gap:8px;margin-top:20px}
button{flex:1;padding:10px 12px;border-radius:8px;border:1px solid transparent;font:inherit;font-weight:600;cursor:pointer}
.primary{background:#2563eb;color:#fff}.primary:hover{background:#1d4ed8}
.secondary{background:#fff;color:#374151;border-color:#d1d5db}.secondary:hover{background:#f9fafb}
.hint{font-size:.85rem;color:#4b5563;background:#eff6ff;border-radius:8px;padding:8px 10px;margin:0}
.error{font-size:.9rem;color:#991b1b;background:#fef2f2;border-radius:8px;padding:8px 10px;margin:12px 0 0}
.meta{font-size:.8rem;color:#6b7280;margin:16px 0 0;word-break:break-word}
`

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${escapeHtml(title)} · tokenward dev IdP</title>
<style>${CSS}</style>
</head>
<body>
<main>
<p class="brand">tokenward dev IdP</p>
${body}
</main>
</body>
</html>
`
}

function loginPage(details: Interaction, password: string, error?: string, username = ''): string {
  const uid = escapeHtml(details.uid)
  const clientId = escapeHtml(String(details.params.client_id ?? ''))
  const scope = escapeHtml(String(details.params.scope ?? ''))
  return page('Sign in', `<h1>Sign in</h1>
<p class="hint">Any username, password <strong>${escapeHtml(password)}</strong>.</p>
${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${uid}/login">
<label for="username">Username</label>
<input id="username" name="username" autocomplete="username" required autofocus value="${escapeHtml(username)}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<!-- Sign in first: Enter submits with the first submit button (HTML implicit submission). -->
<div class="actions">
<button class="primary" type="submit">Sign in</button>
<button class="secondary" type="submit" formaction="/interaction/${uid}/abort" formnovalidate>Cancel</button>
</div>
</form>
<p class="meta">Application: ${clientId}<br>Scope: ${scope}</p>`)
}

function logoutPage(form: string): string {
  // `form` is oidc-provider's own hidden form (id op.logoutForm, with its
  // xsrf token); the buttons submit it from outside.
  return page('Sign out', `<h1>Sign out?</h1>
<p>Do you want to sign out of the tokenward dev IdP?</p>
${form}
<div class="actions">
<button class="secondary" type="submit" form="op.logoutForm">Stay signed in</button>
<button class="primary" type="submit" form="op.logoutForm" name="logout" value="yes" autofocus>Yes, sign me out</button>
</div>`)
}

function loggedOutPage(): string {
  return page('Signed out', '<h1>Signed out</h1>\n<p>You are signed out of the tokenward dev IdP. You can close this tab.</p>')
}

function errorPage(title: string, message: string): string {
  return page(title, `<h1>${escapeHtml(title)}</h1>\n${message ? `<p>${escapeHtml(message)}</p>` : ''}`)
}

function sendHtml(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, {
    'Content-Type': 'text/html; charset=utf-8',
    'Cache-Control': 'no-store',
    // No scripts on these pages at all; inline <style> only. frame-ancestors
    // against clickjacking of the login form. No form-action: Chrome applies
    // it to the redirect chain back to the client, which is another origin.
    'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
    'X-Content-Type-Options': 'nosniff',
  })
  res.end(html)
}

function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
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
