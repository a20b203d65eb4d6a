// openid-client: panva's certified relying-party library (discovery, PKCE, ID token
// validation, RFC 9207 iss checks, revocation); hand-writing these is where BFFs go wrong.
import * as oidc from 'openid-client'
import type { Config } from '../config.js'
import { BffError, IdpUnavailableError } from '../errors.js'
import type { Logger } from '../log.js'
import { SingleFlight } from '../single-flight.js'
import { DpopKey } from './dpop.js'
import { createIdpFetch } from './fetch.js'
import type { Metrics } from '../metrics.js'
import { describe } from './idp-errors.js'
import { importPrivateKey } from './keys.js'
import { isTemplateOf, TENANT_PLACEHOLDER, TenantIssuers } from './tenants.js'
import { readRefreshLifetime, type RefreshLifetime } from '../tokens/refresh-lifetime.js'

import type { ClientTls } from '../tls/client-tls.js'

/** The token endpoint's answer, normalised. Contains secrets: never log it. */
export interface TokenResult {
  readonly accessToken: string
  readonly tokenType: string
  /** Seconds. */
  readonly expiresIn: number | undefined
  readonly refreshToken: string | undefined
  /** What the response says about the refresh token's lifetime (src/tokens/refresh-lifetime.ts). */
  readonly refreshTokenLifetime: RefreshLifetime | undefined
  readonly scope: string | undefined
  readonly idToken: string | undefined
  readonly idClaims: oidc.IDToken | undefined
}

/** RFC 8693 §2.1 grant type and §3 token type identifiers. */
export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange'
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token'
export const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt'

/** A token-exchange answer (RFC 8693 §2.2.1). Contains secrets: never log it. */
export interface ExchangeResult extends TokenResult {
  /** RFC 8693 §2.2.1 `issued_token_type` (REQUIRED by the RFC, missing at some IdPs). */
  readonly issuedTokenType: string | undefined
}

export interface TokenExchangeRequest {
  /** The session's own access token: RFC 8693 §2.1 `subject_token`. */
  readonly subjectToken: string
  readonly audience?: string | undefined
  readonly resource?: string | undefined
  readonly scopes?: readonly string[] | undefined
}

const silentLogger = { warn() {} } as unknown as Logger

export interface OidcClientOptions {
  /** For warnings (a generated DPoP key). */
  logger?: Logger
  /** Seconds for each request to the IdP. */
  timeout?: number
  customFetch?: oidc.CustomFetch
  /** Where IdP call durations and outcomes are counted. */
  metrics?: Pick<Metrics, 'idpDuration' | 'idpRequests'>
  /** tokenward's TLS client certificate and CA bundle (RFC 8705), when configured. */
  tls?: ClientTls | undefined
}

/**
 * tokenward's relying-party side. Discovery happens lazily and is cached once it
 * succeeds, so tokenward starts (and /healthz answers) while the IdP is down, and
 * /readyz reports it (security model S67).
 */
export class OidcClient {
  readonly #config: Config
  readonly #options: OidcClientOptions
  #configuration: oidc.Configuration | undefined
  readonly #discovery = new SingleFlight<'discovery', oidc.Configuration>()
  #lastError: string | undefined
  #dpop: { key: DpopKey; handle: oidc.DPoPHandle } | undefined
  /** Set when discovery named a `{tenantid}` issuer template (Entra ID multi-tenant). */
  #tenants: TenantIssuers | undefined

  constructor(config: Config, options: OidcClientOptions = {}) {
    this.#config = config
    this.#options = {
      ...options,
      customFetch:
        options.customFetch ??
        createIdpFetch(() => this.#configuration?.serverMetadata(), options.metrics, options.tls ? options.tls.fetch : undefined),
    }
  }

  /** tokenward's DPoP key when BFF_DPOP=true (after discovery), for proofs to upstreams. */
  get dpop(): DpopKey | undefined {
    return this.#dpop?.key
  }

  #dpopOption(): { DPoP?: oidc.DPoPHandle } {
    return this.#dpop ? { DPoP: this.#dpop.handle } : {}
  }

  get loaded(): boolean {
    return this.#configuration !== undefined
  }

  /** Why the last discovery failed, for /readyz and `doctor` (no secrets in it). */
  get lastError(): string | undefined {
    return this.#lastError
  }

  get serverMetadata(): oidc.ServerMetadata | undefined {
    return this.#configuration?.serverMetadata()
  }

  /** Discovers the IdP once; concurrent callers share one request. */
  configuration(): Promise<oidc.Configuration> {
    if (this.#configuration) return Promise.resolve(this.#configuration)
    return this.#discovery.run('discovery', () => this.#discover())
  }

  async #discover(): Promise<oidc.Configuration> {
    const c = this.#config
    try {
      const auth = await this.#clientAuth()
      const execute: Array<(config: oidc.Configuration) => void> = [
        // ID token signatures are verified against the IdP's JWKS even on the
        // token-endpoint response: defence in depth beyond TLS (security model S10).
        oidc.enableNonRepudiationChecks,
      ]
      if (c.allowHttp) execute.push(oidc.allowInsecureRequests)
      // Discovery compares the returned `issuer` with the configured one exactly
      // (OpenID Connect Discovery §4.3; security model S5).
      // RFC 8705 §5: a client presenting a certificate uses the IdP's
      // mtls_endpoint_aliases where it advertises them (often a host that asks
      // for client certificates while the browser-facing one does not).
      const metadata = this.#options.tls?.pair ? { use_mtls_endpoint_aliases: true } : undefined
      const configuration = await oidc.discovery(new URL(c.issuer), c.clientId, metadata, auth, {
        execute,
        timeout: this.#options.timeout ?? 10,
        ...(this.#options.customFetch ? { [oidc.customFetch]: this.#options.customFetch } : {}),
      })
      this.#tenants = this.#tenantIssuers(configuration.serverMetadata().issuer)
      if (this.#options.customFetch) configuration[oidc.customFetch] = this.#options.customFetch
      configuration.timeout = this.#options.timeout ?? 10
      if (c.dpop.enabled) {
        const key = await DpopKey.load(c.dpop.key, this.#options.logger ?? silentLogger)
        // openid-client signs the proofs for the token endpoint and retries once on use_dpop_nonce.
        this.#dpop = { key, handle: oidc.getDPoPHandle(configuration, key.keyPair) }
      }
      this.#configuration = configuration
      this.#lastError = undefined
      return configuration
    } catch (err) {
      this.#lastError = describe(err)
      throw new IdpUnavailableError({ cause: err, logDetail: `discovery failed: ${this.#lastError}` })
    }
  }

  /**
   * openid-client accepts a discovered issuer other than the configured one
   * from Entra ID (login.microsoftonline.com) only, and then checks each ID
   * token's `iss` against the template filled in with the token's own `tid`:
   * a user of any tenant in the world would pass. tokenward accepts that
   * template only for the endpoint configured, and only with the tenants of
   * BFF_ISSUER_TENANTS (security model S5, S79); any other difference is refused.
   */
  #tenantIssuers(discovered: string): TenantIssuers | undefined {
    const c = this.#config
    if (URL.canParse(discovered) && new URL(discovered).href === new URL(c.issuer).href) return undefined
    if (!discovered.includes(TENANT_PLACEHOLDER) || !isTemplateOf(discovered, c.issuer)) {
      throw new Error(`the discovered issuer ${discovered} is not BFF_ISSUER (OpenID Connect Discovery 1.0 §4.3)`)
    }
    if (c.issuerTenants.length === 0) {
      throw new Error(`the discovered issuer is the multi-tenant template ${discovered}: BFF_ISSUER_TENANTS must list the allowed tenants`)
    }
    return new TenantIssuers(discovered, c.issuerTenants)
  }

  /**
   * The `iss` values a token from this IdP may carry: BFF_ISSUER, or with a
   * multi-tenant issuer the issuer of each allowed tenant (back-channel logout
   * tokens, security model S79).
   */
  async acceptedIssuers(): Promise<string[]> {
    await this.configuration()
    return this.#tenants ? this.#tenants.issuers : [this.#config.issuer]
  }

  async #clientAuth(): Promise<oidc.ClientAuth> {
    const c = this.#config
    switch (c.clientAuth) {
      case 'client_secret_post':
        return oidc.ClientSecretPost(c.clientSecret)
      case 'private_key_jwt':
        return oidc.PrivateKeyJwt(await importPrivateKey(c.clientPrivateKey ?? ''))
      // RFC 8705 §2.1 and §2.2 look alike on the wire: the request carries only
      // client_id, the certificate in the TLS handshake (ClientTls.fetch)
      // authenticates; the IdP checks it against the registered subject (§2.1)
      // or the registered key set (§2.2).
      case 'tls_client_auth':
      case 'self_signed_tls_client_auth':
        return oidc.TlsClientAuth()
      default:
        return oidc.ClientSecretBasic(c.clientSecret)
    }
  }

  /**
   * The authorization request: code flow with PKCE S256, state and nonce (RFC
   * 9700 §2.1.1). `authParams` are the login's effective parameters
   * (effectiveAuthParams: BFF_AUTH_PARAMS with the request's, floors applied),
   * the same for the front channel and a pushed request.
   */
  async authorizationUrl(params: {
    state: string
    nonce: string
    codeChallenge: string
    authParams: ReadonlyArray<readonly [string, string]>
  }): Promise<URL> {
    const configuration = await this.configuration()
    const p = new URLSearchParams(params.authParams as Array<[string, string]>)
    p.set('redirect_uri', this.#config.redirectUri)
    p.set('scope', this.#config.scopes.join(' '))
    p.set('response_type', 'code')
    p.set('state', params.state)
    p.set('nonce', params.nonce)
    p.set('code_challenge', params.codeChallenge)
    p.set('code_challenge_method', 'S256')
    // RFC 9126: the parameters go to the IdP over the back channel, authenticated
    // as the client; the browser only carries a request_uri.
    const endpoint = configuration.serverMetadata().pushed_authorization_request_endpoint
    const par = this.#config.par
    if (par === 'always' && !endpoint) {
      throw new IdpUnavailableError({ logDetail: 'BFF_PAR=always but the IdP advertises no pushed_authorization_request_endpoint' })
    }
    if (par !== 'never' && endpoint) return oidc.buildAuthorizationUrlWithPAR(configuration, p)
    return oidc.buildAuthorizationUrl(configuration, p)
  }

  /**
   * RFC 9207 §2.4 for an authorization response, error responses included
   * (openid-client checks `iss` only on the way to the token endpoint): an
   * `iss` that is not the issuer is always refused, and so is a missing one
   * when the IdP advertises `authorization_response_iss_parameter_supported`.
   * Returns a log detail for a response to refuse, else undefined.
   */
  async authorizationResponseIssuerProblem(params: URLSearchParams): Promise<string | undefined> {
    const metadata = (await this.configuration()).serverMetadata()
    const values = params.getAll('iss')
    if (values.length > 1) return 'authorization response with more than one iss (RFC 9207)'
    const iss = values[0]
    // A multi-tenant IdP answers with the issuer of the user's tenant: one of the allowed ones (S79).
    const known = this.#tenants ? iss !== undefined && this.#tenants.has(iss) : iss === metadata.issuer
    if (iss !== undefined && !known) return 'authorization response iss is not the issuer: a mix-up (RFC 9207 §2.4)'
    if (iss === undefined && metadata.authorization_response_iss_parameter_supported === true) {
      return 'authorization response without iss although the IdP advertises it (RFC 9207 §2.4)'
    }
    return undefined
  }

  /**
   * Redeems the code. openid-client checks state, `iss` (RFC 9207, when the IdP
   * advertises it), the ID token's iss/aud/azp/exp/nonce and signature. The
   * callback URL is rebuilt from BFF_PUBLIC_URL, never from the Host header.
   */
  async authorizationCodeGrant(search: string, checks: { codeVerifier: string; state: string; nonce: string }): Promise<TokenResult> {
    const configuration = await this.configuration()
    const currentUrl = new URL(`${this.#config.redirectUri}${search}`)
    const tenants = this.#tenants
    const responseIss = currentUrl.searchParams.get('iss') ?? undefined
    if (tenants && responseIss !== undefined) {
      // Checked against the allowed tenants' issuers already
      // (authorizationResponseIssuerProblem); openid-client compares it with the
      // discovered template, so it gets the template, and the ID token below
      // must come from the very tenant the response named.
      currentUrl.searchParams.set('iss', tenants.template)
    }
    const r = await oidc.authorizationCodeGrant(
      configuration,
      currentUrl,
      {
        pkceCodeVerifier: checks.codeVerifier,
        expectedState: checks.state,
        expectedNonce: checks.nonce,
        idTokenExpected: true,
      },
      undefined,
      this.#dpopOption(),
    )
    const result = normalise(r)
    if (tenants) {
      const claims: { iss?: unknown; tid?: unknown } = result.idClaims ?? {}
      const problem =
        tenants.claimsProblem(claims) ??
        (responseIss !== undefined && claims.iss !== responseIss
          ? 'ID token iss is not the authorization response iss (RFC 9207)'
          : undefined)
      if (problem) throw new BffError('invalid_request', 'The sign-in could not be completed. Please start again.', { logDetail: problem })
    }
    return result
  }

  async refreshTokenGrant(refreshToken: string, params?: Record<string, string>): Promise<TokenResult> {
    const configuration = await this.configuration()
    return normalise(await oidc.refreshTokenGrant(configuration, refreshToken, params, this.#dpopOption()))
  }

  /** RFC 6749 §4.4: a token for tokenward itself (`client` routes). */
  async clientCredentialsGrant(params: Record<string, string>): Promise<TokenResult> {
    const configuration = await this.configuration()
    return normalise(await oidc.clientCredentialsGrant(configuration, params, this.#dpopOption()))
  }

  /**
   * RFC 8693 §2.1 token exchange: the user's access token for one meant for
   * another audience (impersonation semantics, no actor token). Sent like every
   * token request, with tokenward's client authentication and, under
   * BFF_DPOP, a DPoP proof (RFC 9449 §5) so the new token is bound to the same key.
   */
  async tokenExchangeGrant(request: TokenExchangeRequest): Promise<ExchangeResult> {
    const configuration = await this.configuration()
    const params: Record<string, string> = {
      subject_token: request.subjectToken,
      subject_token_type: ACCESS_TOKEN_TYPE,
      requested_token_type: ACCESS_TOKEN_TYPE,
    }
    if (request.audience) params.audience = request.audience
    if (request.resource) params.resource = request.resource
    if (request.scopes?.length) params.scope = request.scopes.join(' ')
    const r = await oidc.genericGrantRequest(configuration, TOKEN_EXCHANGE_GRANT, params, this.#dpopOption())
    const issued = (r as { issued_token_type?: unknown }).issued_token_type
    return { ...normalise(r), issuedTokenType: typeof issued === 'string' ? issued : undefined }
  }

  /** RFC 7009 revocation; false when the IdP has no revocation endpoint. */
  async revokeRefreshToken(refreshToken: string): Promise<boolean> {
    const configuration = await this.configuration()
    if (!configuration.serverMetadata().revocation_endpoint) return false
    await oidc.tokenRevocation(configuration, refreshToken, { token_type_hint: 'refresh_token' })
    return true
  }

  /** The IdP's end-session URL, or undefined when the IdP has none (or is not loaded). */
  endSessionUrl(params: { postLogoutRedirectUri: string; idTokenHint?: string | undefined }): string | undefined {
    const configuration = this.#configuration
    if (!configuration?.serverMetadata().end_session_endpoint) return undefined
    const p: Record<string, string> = {
      client_id: this.#config.clientId,
      post_logout_redirect_uri: params.postLogoutRedirectUri,
    }
    if (params.idTokenHint) p.id_token_hint = params.idTokenHint
    return oidc.buildEndSessionUrl(configuration, p).href
  }
}

function normalise(r: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers): TokenResult {
  return {
    accessToken: r.access_token,
    tokenType: r.token_type,
    expiresIn: r.expiresIn(),
    refreshToken: r.refresh_token,
    // Only when a refresh token came: a lifetime without one describes nothing we keep.
    refreshTokenLifetime: r.refresh_token ? readRefreshLifetime(r) : undefined,
    scope: r.scope,
    idToken: r.id_token,
    idClaims: r.claims(),
  }
}
