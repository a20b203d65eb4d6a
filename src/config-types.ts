/** The validated configuration (loadConfig in config.ts builds it once at startup). */

export type TokenMode = 'user' | 'optional' | 'none' | 'client'
export type ClientAuthMethod =
  'client_secret_basic' | 'client_secret_post' | 'private_key_jwt' | 'tls_client_auth' | 'self_signed_tls_client_auth'

/** RFC 8705 §2: the methods that authenticate tokenward by its TLS client certificate. */
export const MTLS_CLIENT_AUTH: readonly ClientAuthMethod[] = ['tls_client_auth', 'self_signed_tls_client_auth']

export interface RouteConfig {
  /** Normalised: starts with `/`, no trailing slash. */
  readonly prefix: string
  /**
   * The prefix as route matching compares paths once normalised: each segment
   * without `;` parameters, NFKC, case-folded (normaliseSegment in
   * src/proxy/paths.ts). Unique among the routes.
   */
  readonly matchPrefix: string
  /**
   * The matchPrefix of every other route that lies under this one; empty for
   * most routes. Only a route with nested ones can be reached by a path that
   * normalises onto another route, so only those pay for the check.
   */
  readonly nestedPrefixes: readonly string[]
  readonly upstream: URL
  readonly token: TokenMode
  /** Upper-case allowlist; undefined allows every method. */
  readonly methods: readonly string[] | undefined
  readonly scopes: readonly string[] | undefined
  readonly resource: string | undefined
  readonly timeoutMs: number
  readonly maxBodyBytes: number
  /** Whether WebSocket upgrades are proxied on this route. */
  readonly websocket: boolean
  /**
   * RFC 8693 token exchange: the session's access token is swapped at the IdP
   * for one meant for this upstream, which then sees only that token. Only on
   * `user` and `optional` routes, and never with the route's own `resource` or `scopes`.
   */
  readonly tokenExchange: TokenExchangeConfig | undefined
  /**
   * RFC 8705: calls to this upstream present tokenward's TLS client
   * certificate, so certificate-bound access tokens (§3) are usable there.
   * Undefined when the route did not say and tokenward presents no
   * certificate (or the route sends no token); with a certificate, an https
   * token route that did not say is `true` (security model S81).
   */
  readonly mtls: boolean | undefined
}

/** The target of a route's token exchange (RFC 8693 §2.1); at least one of `audience` and `resource`. */
export interface TokenExchangeConfig {
  /** RFC 8693 §2.1 `audience`: the logical name of the upstream, as the IdP knows it. */
  readonly audience: string | undefined
  /** RFC 8693 §2.1 and RFC 8707 `resource`: the upstream's absolute URI. */
  readonly resource: string | undefined
  /** RFC 8693 §2.1 `scope` of the requested token; omitted, the IdP decides. */
  readonly scopes: readonly string[] | undefined
}

export interface EncryptionKey {
  readonly id: string
  readonly key: Buffer
}

export interface Config {
  readonly publicUrl: URL
  readonly publicOrigin: string
  /**
   * The path base of a frontend at a path (BFF_CONFIG_FILE only): '' at the
   * root, else `/seg[/seg...]` without a trailing slash. Every endpoint,
   * route and static file of the frontend is under it (security model S92).
   */
  readonly basePath: string
  readonly redirectUri: string
  readonly issuer: string
  /**
   * BFF_ISSUER_TENANTS: the tenant ids (lower case) a multi-tenant issuer
   * (Entra ID `common`/`organizations`) may sign users in from; empty otherwise.
   */
  readonly issuerTenants: readonly string[]
  readonly clientId: string
  readonly clientSecret: string | undefined
  readonly clientAuth: ClientAuthMethod
  readonly clientPrivateKey: string | undefined
  /**
   * PEM file paths (RFC 8705): tokenward's TLS client certificate and key,
   * presented to the IdP and to `mtls` routes, and a CA bundle that verifies
   * the IdP and upstreams besides Node's roots. Undefined when none is set.
   */
  readonly tls:
    { readonly certFile: string | undefined; readonly keyFile: string | undefined; readonly caFile: string | undefined } | undefined
  readonly scopes: readonly string[]
  readonly authParams: ReadonlyArray<readonly [string, string]>
  /** Pushed Authorization Requests (RFC 9126): when the IdP advertises them, always, or never. */
  readonly par: 'auto' | 'always' | 'never'
  /** DPoP (RFC 9449): sender-constrained tokens; the key PEM/JWK, or undefined for a per-process key. */
  readonly dpop: { readonly enabled: boolean; readonly key: string | undefined }
  readonly routes: readonly RouteConfig[]
  /** Addresses and CIDRs of the proxies in front, whose forwarding headers are believed (client-address.ts). */
  readonly trustedProxies: readonly string[]
  /** First seals, all unseal. */
  readonly cookieSecrets: readonly string[]
  /** First encrypts, all decrypt. */
  readonly encryptionKeys: readonly EncryptionKey[]
  readonly redis: {
    readonly url: string
    readonly prefix: string
    readonly mode: 'standalone' | 'sentinel' | 'cluster'
    readonly nodes: ReadonlyArray<{ host: string; port: number }>
    readonly sentinelName: string | undefined
  }
  readonly session: {
    /** Seconds. */
    readonly idleTimeout: number
    /** Seconds. */
    readonly maxAge: number
    /**
     * Milliseconds an instance may answer from a session it read from Redis
     * without reading it again (0: every request reads Redis). Only used where
     * Redis announces changes to what was read (CLIENT TRACKING; not Cluster).
     */
    readonly cacheMs: number
  }
  /** Seconds. */
  readonly refreshSkew: number
  /** Seconds: oldest acceptable ID token `iat` at the callback. */
  readonly idTokenMaxAge: number
  readonly allowHttp: boolean
  readonly host: string
  readonly port: number
  /** A listener of its own for /metrics (BFF_METRICS_LISTEN); undefined serves it on the main listener. */
  readonly metricsListen: { readonly host: string; readonly port: number } | undefined
  /** One JSON line per answered request at `info` (BFF_ACCESS_LOG). */
  readonly accessLog: boolean
  readonly postLogoutRedirect: string
  readonly logoutIdTokenHint: boolean
  readonly cookie: {
    readonly name: string
    readonly transactionName: string
    /** The cookies' Path: the base path, or `/`. */
    readonly path: string
    readonly secure: boolean
    readonly sameSite: 'Strict' | 'Lax'
  }
  /**
   * Device Bound Session Credentials (W3C webappsec-dbsc; src/session/dbsc.ts).
   * `enabled` only with BFF_DBSC=auto and an https public URL.
   */
  readonly dbsc: {
    readonly enabled: boolean
    /** Seconds the short-lived bound cookie lives (and is accepted). */
    readonly cookieTtl: number
    /** Failed refresh proofs that end the session. */
    readonly maxRejections: number
    readonly cookieName: string
  }
  readonly staticDir: string | undefined
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
  /** Problems worth a startup warning (not errors). */
  readonly warnings: readonly string[]
}
