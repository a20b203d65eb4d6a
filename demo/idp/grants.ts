// The dev IdP's grants beyond oidc-provider's defaults: which grant types a
// client gets, when refresh tokens are issued and how they rotate, and RFC 8693
// token exchange.

import { calculateJwkThumbprint, EmbeddedJWK, importJWK, jwtVerify, type JWK } from 'jose'
import { errors } from 'oidc-provider'
import type {
  Client,
  ClientMetadata,
  Configuration,
  KoaContextWithOIDC,
  Provider,
  ResourceServerInstance,
  TokenEndpointGrantContext,
} from 'oidc-provider'
import type { Recorder } from './events.js'
import { routePath } from './paths.js'

import { certificateThumbprint, peerCertificate } from './mtls.js'

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

export function withClientDefaults(client: ClientMetadata, exchange: DevIdpTokenExchange | undefined): ClientMetadata {
  const grantTypes = client.grant_types ?? ['authorization_code', 'refresh_token']
  const exchanging =
    exchange !== undefined &&
    (exchange.clients ?? [client.client_id]).includes(client.client_id) &&
    !grantTypes.includes(TOKEN_EXCHANGE_GRANT)
  return {
    grant_types: grantTypes,
    // A client-credentials-only client has no redirect URIs and no response types.
    response_types: grantTypes.includes('authorization_code') ? ['code'] : [],
    ...client,
    ...(exchanging ? { grant_types: [...grantTypes, TOKEN_EXCHANGE_GRANT] } : {}),
  }
}

/** When refresh tokens are issued, that they rotate, and whether they end with the IdP's browser session. */
export function refreshTokenPolicy(
  expiresWithSession: boolean,
): Pick<Configuration, 'rotateRefreshToken' | 'issueRefreshToken' | 'expiresWithSession'> {
  return {
    // Every refresh rotates (RFC 9700 §4.14.2), so tests see reuse detection.
    rotateRefreshToken: true,
    // oidc-provider drops `offline_access` without prompt=consent (OpenID
    // Connect Core §11) and then issues no refresh token. An AS may issue one
    // at its discretion (RFC 6749 §1.5): the dev IdP does whenever the client
    // may use the refresh_token grant, whatever the prompt.
    issueRefreshToken: async (_ctx, client, source) => source.kind === 'AuthorizationCode' && client.grantTypeAllowed('refresh_token'),
    expiresWithSession: async () => expiresWithSession,
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
export function implyOfflineConsent(provider: Provider): void {
  const authorizationPath = routePath(provider, 'authorization')
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
  /** RFC 8705 §3.1: the certificate the subject token is bound to, if any. */
  readonly x5t: string | undefined
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
export async function registerTokenExchange(
  provider: Provider,
  options: DevIdpTokenExchange,
  ttl: number,
  key: JWK,
  record: Recorder,
): Promise<void> {
  // The public half of the signing key; the subject token must verify against it.
  const publicKey = await importJWK({ kty: key.kty, n: key.n, e: key.e }, 'RS256')
  const handler = async (ctx: TokenEndpointGrantContext<ExchangeParams>): Promise<void> => {
    const { client, params } = ctx.oidc
    // §2.1: subject_token and subject_token_type are REQUIRED.
    if (!params.subject_token) throw new errors.InvalidRequest('missing required parameter subject_token')
    if (params.subject_token_type !== ACCESS_TOKEN_TYPE) throw new errors.InvalidRequest('unsupported subject_token_type')
    if (params.actor_token !== undefined || params.actor_token_type !== undefined)
      throw new errors.InvalidRequest('delegation (actor_token) is not supported')
    if (
      params.requested_token_type !== undefined &&
      params.requested_token_type !== ACCESS_TOKEN_TYPE &&
      params.requested_token_type !== JWT_TOKEN_TYPE
    ) {
      throw new errors.InvalidRequest('unsupported requested_token_type')
    }
    // §2.1: audience and resource both name the target; §2.2.2: invalid_target when the AS will not issue for it.
    const wanted = [...asList(params.audience), ...asList(params.resource)]
    if (wanted.length === 0) throw new errors.InvalidTarget('audience or resource is required')
    const audience = wanted[0]!
    if (wanted.some((w) => !Object.hasOwn(options.targets, w)))
      throw new errors.InvalidTarget('tokens are not issued for the requested audience')
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
    if (subject.jkt !== undefined && subject.jkt !== jkt)
      throw new errors.InvalidRequest('subject_token is DPoP-bound: the request needs a DPoP proof with its key')

    // RFC 8705 §3: a certificate-bound subject token is exchanged only by a
    // caller presenting that certificate, and the new token is bound to it too.
    const cert = peerCertificate(ctx)
    if (subject.x5t !== undefined && (!cert || certificateThumbprint(cert) !== subject.x5t))
      throw new errors.InvalidRequest('subject_token is certificate-bound: the request needs that client certificate')

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
    if (cert && (subject.x5t !== undefined || client.tlsClientCertificateBoundAccessTokens)) at.setThumbprint('x5t', cert)
    const value = await at.save()
    record('token_exchange', {
      clientId: client.clientId,
      accountId: subject.accountId,
      audience,
      subjectJti: subject.jti,
      tokenType: at.tokenType,
    })
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
async function verifySubject(
  provider: Provider,
  client: Client,
  token: string,
  publicKey: Awaited<ReturnType<typeof importJWK>>,
): Promise<Subject> {
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
    const cnf = claims.cnf as { jkt?: unknown; 'x5t#S256'?: unknown } | undefined
    return {
      accountId: claims.sub,
      grantId: undefined,
      jkt: typeof cnf?.jkt === 'string' ? cnf.jkt : undefined,
      x5t: typeof cnf?.['x5t#S256'] === 'string' ? cnf['x5t#S256'] : undefined,
      jti: typeof claims.jti === 'string' ? claims.jti : undefined,
    }
  }
  // Opaque: the stored token (find() returns nothing once it expired) and its grant, which revocation deletes.
  const at = await provider.AccessToken.find(token)
  if (!at || !at.isValid) throw invalid('is invalid or expired')
  if (at.clientId !== client.clientId) throw invalid('was not issued to this client')
  const grant = await provider.Grant.find(at.grantId)
  if (!grant || grant.accountId !== at.accountId || grant.clientId !== client.clientId)
    throw invalid('belongs to a grant that no longer exists')
  return { accountId: at.accountId, grantId: at.grantId, jkt: at.jkt, x5t: at['x5t#S256'], jti: at.jti }
}

/** RFC 9449 §4.3 checks of the request's DPoP proof; the key's thumbprint, or undefined without a proof. */
async function dpopThumbprint(ctx: KoaContextWithOIDC, provider: Provider): Promise<string | undefined> {
  const proof = ctx.get('DPoP')
  if (!proof) return undefined
  const bad = (why: string) => new errors.InvalidDpopProof(`invalid DPoP proof: ${why}`)
  let header: { jwk?: JWK }
  let claims: Record<string, unknown>
  try {
    ;({ payload: claims, protectedHeader: header } = await jwtVerify(proof, EmbeddedJWK, {
      typ: 'dpop+jwt',
      algorithms: ['ES256', 'EdDSA', 'Ed25519', 'PS256', 'RS256'],
    }))
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
