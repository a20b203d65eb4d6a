import { isAbsolute, resolve } from 'node:path'
import { ConfigError } from './errors.js'
import { DEFAULT_SCOPES, envSchema, unknownVariableProblems, type EnvValues } from './config-env.js'
import { parseKeyring, privateKeyType } from './config-keys.js'
import { parseRoutes } from './config-routes.js'
import { cookieNames, resolveCookieName } from './config-cookie.js'
import { parseTrustedProxies } from './client-address.js'
import { authParamsProblems } from './oidc/login-policy.js'
import { ENTRA_CONSUMERS_TENANT, entraAlias, isTenantId } from './oidc/tenants.js'

export { RESERVED_PREFIXES } from './protocol.js'

export type { ClientAuthMethod, Config, EncryptionKey, RouteConfig, TokenExchangeConfig, TokenMode } from './config-types.js'
import { MTLS_CLIENT_AUTH, type Config, type RouteConfig } from './config-types.js'
import { CertificateError, readCaBundle, readCertificatePair } from './tls/certificate.js'

/**
 * A loopback origin is a "potentially trustworthy" secure context (W3C Secure
 * Contexts §3.1), so browsers keep `Secure` and `__Host-` cookies on it over http.
 */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase()
  return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h)
}

type Env = Record<string, string | undefined>

/** Parses every variable of the schema on its own, keeping those that are valid. */
function parseEach(env: Env): Partial<EnvValues> {
  const out: Record<string, unknown> = {}
  for (const [name, schema] of Object.entries(envSchema.shape)) {
    const r = schema.safeParse(env[name])
    if (r.success) out[name] = r.data
  }
  // Each value came from the same field schema that defines EnvValues.
  return out as Partial<EnvValues>
}

/**
 * `host:port` (an IPv6 address in brackets, RFC 3986 §3.2.2), port 0-65535;
 * the host is returned without brackets, as `listen()` takes it.
 */
export function parseListen(raw: string | undefined, name: string, problems: string[]): { host: string; port: number } | undefined {
  if (raw === undefined) return undefined
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(raw.trim())
  if (!m || Number(m[3]) > 65535) {
    problems.push(`${name} must be host:port (an IPv6 address in brackets), port 0-65535`)
    return undefined
  }
  return { host: m[1] ?? m[2]!, port: Number(m[3]) }
}

/**
 * BFF_ISSUER_TENANTS, checked against BFF_ISSUER: Entra ID's multi-tenant
 * endpoints accept users of every tenant in the world, so they need the list
 * of tenants to let in (security model S79); `/consumers` discovers another
 * issuer than its URL, so it is named by that issuer instead.
 */
function parseIssuerTenants(issuer: string | undefined, raw: string | undefined, problems: string[], warnings: string[]): string[] {
  const tenants = [
    ...new Set(
      (raw ?? '')
        .split(',')
        .map((t) => t.trim().toLowerCase())
        .filter(Boolean),
    ),
  ]
  for (const t of tenants) if (!isTenantId(t)) problems.push(`BFF_ISSUER_TENANTS entry "${t}" must be a tenant id (a GUID)`)
  const alias = issuer ? entraAlias(issuer) : undefined
  if (alias === 'multi-tenant' && tenants.length === 0) {
    problems.push(
      'BFF_ISSUER_TENANTS is required with a multi-tenant BFF_ISSUER (Entra ID common or organizations): the tenant ids whose users may sign in',
    )
  } else if (alias === 'consumers') {
    problems.push(`BFF_ISSUER for personal Microsoft accounts must be https://login.microsoftonline.com/${ENTRA_CONSUMERS_TENANT}/v2.0`)
  } else if (alias === undefined && tenants.length > 0) {
    warnings.push('BFF_ISSUER_TENANTS is ignored: BFF_ISSUER is not a multi-tenant endpoint')
  }
  return tenants
}

/**
 * The TLS client certificate (RFC 8705), checked here so that check-config and
 * startup refuse what the first handshake would (security model S80), and the
 * routes' `mtls` rule (security model S81): once tokenward presents a
 * certificate to the IdP, the IdP may bind the tokens to it (RFC 8705 §3), and
 * a bound token is useless, and so an outage, on a call without the
 * certificate. A route that sends a token and does not say otherwise then
 * presents the certificate to its (https) upstream: a TLS client presents its
 * certificate only when the server asks for one (RFC 8446 §4.3.2), so this
 * costs nothing where the upstream does not verify the binding. A plain-http
 * upstream cannot be given one and must say `"mtls": false`.
 */
function parseClientTls(
  env: Env,
  parsed: readonly RouteConfig[],
  problems: string[],
): { tls: Config['tls']; routes: readonly RouteConfig[] } {
  const certFile = env.BFF_TLS_CLIENT_CERT
  const keyFile = env.BFF_TLS_CLIENT_KEY
  const caFile = env.BFF_TLS_CA
  if (Boolean(certFile) !== Boolean(keyFile)) problems.push('BFF_TLS_CLIENT_CERT and BFF_TLS_CLIENT_KEY must be set together')
  if (certFile && keyFile) {
    try {
      readCertificatePair(certFile, keyFile)
    } catch (err) {
      problems.push(err instanceof CertificateError ? err.message : `BFF_TLS_CLIENT_CERT ${certFile} cannot be used`)
    }
  }
  if (caFile) {
    try {
      readCaBundle(caFile)
    } catch (err) {
      problems.push(err instanceof CertificateError ? err.message : `BFF_TLS_CA ${caFile} cannot be used`)
    }
  }
  const presented = Boolean(certFile && keyFile)
  const routes = parsed.map((r) => {
    if (r.mtls === true && !presented) {
      problems.push(`BFF_ROUTES route ${r.prefix} has "mtls": true but BFF_TLS_CLIENT_CERT and BFF_TLS_CLIENT_KEY are not set`)
    }
    if (!presented || r.token === 'none' || r.mtls !== undefined) return r
    // A token route that did not say: the certificate goes to an https upstream.
    if (r.upstream.protocol === 'https:') return Object.freeze({ ...r, mtls: true })
    problems.push(
      `BFF_ROUTES route ${r.prefix} sends access tokens that the IdP may bind to tokenward's client certificate (RFC 8705 §3), but its plain-http upstream cannot be given the certificate: set "mtls": false when the IdP does not bind this client's tokens, or use an https:// upstream`,
    )
    return r
  })
  return { tls: certFile || keyFile || caFile ? Object.freeze({ certFile, keyFile, caFile }) : undefined, routes }
}

/** One path segment of a base: unreserved characters (RFC 3986 §2.3), not a dot segment. */
const BASE_SEGMENT = /^[A-Za-z0-9_~-][A-Za-z0-9._~-]*$/
/** Answered by the process at the root, on any Host (docs/configuration.md). */
const PROCESS_SEGMENTS = new Set(['healthz', 'readyz', 'metrics'])

/**
 * The path base of BFF_PUBLIC_URL ('' for an origin), `/shop/` read as `/shop`.
 * Plain segments only, so that the base a browser scopes cookies to is the
 * base tokenward matches, byte for byte (RFC 6265 §5.1.4).
 */
function parseBasePath(pathname: string, allowed: boolean, problems: string[]): string {
  if (pathname === '/' || pathname === '') return ''
  if (!allowed) {
    problems.push('BFF_PUBLIC_URL must be an origin without path, query or fragment')
    return ''
  }
  const base = pathname.replace(/\/$/, '')
  const segments = base.split('/').slice(1)
  if (!segments.every((s) => BASE_SEGMENT.test(s))) {
    problems.push('BFF_PUBLIC_URL path base must be plain segments of letters, digits and -._~ (no dot segments, no percent-encoding)')
  } else if (PROCESS_SEGMENTS.has(segments[0]!)) {
    problems.push(`BFF_PUBLIC_URL path base /${segments[0]} is a process endpoint`)
  } else if (segments[0] === 'auth') {
    problems.push("BFF_PUBLIC_URL path base /auth would hide a frontend at the root's endpoints")
  }
  return base
}

/**
 * Reads and validates the whole configuration once. Every problem is collected and
 * reported together in one ConfigError naming the variables, so an operator fixes them in one pass.
 */
/** Chromium refreshes a bound cookie about 120 s before it expires (docs/configuration.md). */
export const DBSC_MIN_COOKIE_TTL = 130

/** Options no environment variable can reach. */
export interface LoadConfigOptions {
  /**
   * Tests only: a lower floor for BFF_DBSC_COOKIE_TTL, to watch a stolen bound
   * cookie die in seconds. Production configuration cannot lower it.
   */
  readonly dbscMinCookieTtl?: number
  /**
   * BFF_CONFIG_FILE: a frontend's publicUrl may carry a path base. The
   * single-frontend environment keeps requiring an origin.
   */
  readonly allowPathBase?: boolean
}

export function loadConfig(env: Env, options: LoadConfigOptions = {}): Config {
  const problems: string[] = []
  const warnings: string[] = []
  // Treat empty strings like unset variables, as shells and compose files produce them.
  const cleaned: Env = {}
  for (const [k, v] of Object.entries(env)) if (v !== undefined && v !== '') cleaned[k] = v

  problems.push(...unknownVariableProblems(env))
  const parsed = envSchema.safeParse(cleaned)
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const name = String(issue.path[0] ?? 'environment')
      const message = issue.code === 'invalid_type' && cleaned[name] === undefined ? 'is required' : issue.message
      problems.push(`${name} ${message}`)
    }
  }
  const e = parsed.success ? parsed.data : undefined
  // Each variable that parsed on its own, so the checks below that depend on one
  // (Redis mode, client authentication, the public URL) report in the same pass
  // even when an unrelated variable is wrong.
  const f = e ?? parseEach(cleaned)

  const allowHttp = f.BFF_ALLOW_HTTP ?? false

  const cookieSecrets = (cleaned.BFF_COOKIE_SECRET ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  if (cleaned.BFF_COOKIE_SECRET !== undefined) {
    if (cookieSecrets.length === 0) problems.push('BFF_COOKIE_SECRET is empty')
    cookieSecrets.forEach((s, i) => {
      if (s.length < 32) problems.push(`BFF_COOKIE_SECRET entry ${i + 1} must be at least 32 characters`)
    })
  }

  const encryptionKeys = parseKeyring(cleaned.BFF_ENCRYPTION_KEYS, problems)
  const parsedRoutes = parseRoutes(cleaned.BFF_ROUTES, allowHttp, problems)
  const trustedProxies = parseTrustedProxies(cleaned.BFF_TRUSTED_PROXIES, problems)
  const metricsListen = parseListen(cleaned.BFF_METRICS_LISTEN, 'BFF_METRICS_LISTEN', problems)

  const issuer = cleaned.BFF_ISSUER
  if (issuer && URL.canParse(issuer) && new URL(issuer).protocol === 'http:' && !allowHttp) {
    problems.push('BFF_ISSUER must be https:// (set BFF_ALLOW_HTTP=true for development only)')
  }
  const issuerTenants = parseIssuerTenants(issuer, cleaned.BFF_ISSUER_TENANTS, problems, warnings)

  const clientAuth = f.BFF_CLIENT_AUTH ?? 'client_secret_basic'
  if (clientAuth === 'private_key_jwt') {
    if (!cleaned.BFF_CLIENT_PRIVATE_KEY) problems.push('BFF_CLIENT_PRIVATE_KEY is required when BFF_CLIENT_AUTH=private_key_jwt')
    else {
      const type = privateKeyType(cleaned.BFF_CLIENT_PRIVATE_KEY)
      if (!type || !/^(rsa|ec:prime256v1|ed25519)$/.test(type))
        problems.push('BFF_CLIENT_PRIVATE_KEY must be a private RSA, P-256 or Ed25519 key (JWK or PKCS#8 PEM)')
    }
  } else if (MTLS_CLIENT_AUTH.includes(clientAuth)) {
    if (!cleaned.BFF_TLS_CLIENT_CERT || !cleaned.BFF_TLS_CLIENT_KEY)
      problems.push(`BFF_TLS_CLIENT_CERT and BFF_TLS_CLIENT_KEY are required when BFF_CLIENT_AUTH=${clientAuth}`)
  } else if (!cleaned.BFF_CLIENT_SECRET) {
    problems.push(`BFF_CLIENT_SECRET is required when BFF_CLIENT_AUTH=${clientAuth}`)
  }

  const { tls, routes } = parseClientTls(cleaned, parsedRoutes, problems)

  // Keys are checked here, not at first use, so check-config catches them.
  if (cleaned.BFF_DPOP_KEY !== undefined && privateKeyType(cleaned.BFF_DPOP_KEY) !== 'ec:prime256v1') {
    problems.push('BFF_DPOP_KEY must be a private P-256 (EC) key, as a JWK or PKCS#8 PEM')
  }

  const authParams: Array<[string, string]> = []
  for (const [k, v] of new URLSearchParams(cleaned.BFF_AUTH_PARAMS ?? '')) {
    // These belong to the protocol; letting configuration override them would
    // break PKCE, state or the redirect URI binding (RFC 9700 §2.1.1).
    if (['response_type', 'client_id', 'redirect_uri', 'state', 'nonce', 'code_challenge', 'code_challenge_method', 'scope'].includes(k)) {
      problems.push(`BFF_AUTH_PARAMS must not set ${k}`)
    } else authParams.push([k, v])
  }
  // prompt, acr_values and max_age are the login policy's floor: malformed ones
  // would silently weaken it (src/oidc/login-policy.ts).
  problems.push(...authParamsProblems(authParams))

  const scopes = (f.BFF_SCOPES ?? DEFAULT_SCOPES).split(/\s+/).filter(Boolean)
  if (!scopes.includes('openid')) problems.push('BFF_SCOPES must include openid')

  let port = f.BFF_PORT
  if (port === undefined && cleaned.PORT !== undefined) {
    if (/^\d+$/.test(cleaned.PORT) && Number(cleaned.PORT) <= 65535) port = Number(cleaned.PORT)
    else problems.push('PORT must be a port number')
  }

  const redisNodes: Array<{ host: string; port: number }> = []
  const redisMode = f.BFF_REDIS_MODE
  if (redisMode && redisMode !== 'standalone') {
    for (const n of (cleaned.BFF_REDIS_NODES ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)) {
      const m = /^(.+):(\d{1,5})$/.exec(n)
      if (m && Number(m[2]) >= 1 && Number(m[2]) <= 65535) redisNodes.push({ host: m[1]!, port: Number(m[2]) })
      else problems.push(`BFF_REDIS_NODES entry "${n}" must be host:port`)
    }
    if (redisNodes.length === 0) problems.push(`BFF_REDIS_NODES is required when BFF_REDIS_MODE=${redisMode}`)
    if (redisMode === 'sentinel' && !cleaned.BFF_REDIS_SENTINEL_NAME) {
      problems.push('BFF_REDIS_SENTINEL_NAME is required when BFF_REDIS_MODE=sentinel')
    }
  }

  if (
    f.BFF_SESSION_IDLE_TIMEOUT !== undefined &&
    f.BFF_SESSION_MAX_AGE !== undefined &&
    f.BFF_SESSION_IDLE_TIMEOUT > f.BFF_SESSION_MAX_AGE
  ) {
    warnings.push('BFF_SESSION_IDLE_TIMEOUT is longer than BFF_SESSION_MAX_AGE; the absolute lifetime wins')
  }

  let cookieSecure = true
  let publicUrl: URL | undefined
  let basePath = ''
  if (f.BFF_PUBLIC_URL !== undefined) {
    publicUrl = new URL(f.BFF_PUBLIC_URL)
    basePath = parseBasePath(publicUrl.pathname, options.allowPathBase === true, problems)
    if (publicUrl.protocol === 'http:' && !isLoopbackHost(publicUrl.hostname)) {
      if (!allowHttp) {
        problems.push(
          'BFF_PUBLIC_URL must be https:// (or http://localhost; set BFF_ALLOW_HTTP=true for other plain-http origins in development)',
        )
      } else {
        // Browsers refuse `Secure` cookies (and so `__Host-`) on a plain-http
        // origin that is not loopback (RFC 6265bis §4.1.3.1, §5.7).
        cookieSecure = false
        warnings.push('BFF_PUBLIC_URL is plain http on a non-loopback host: cookies lose the __Host- prefix and Secure flag')
      }
    }
  }
  const cookies = cookieNames(resolveCookieName(cleaned.BFF_COOKIE_NAME, cookieSecure, basePath !== '', problems, warnings))
  if (allowHttp) {
    warnings.push('BFF_ALLOW_HTTP=true: plain-http issuer and upstreams are allowed; never use this in production')
  }

  const dbscMin = options.dbscMinCookieTtl ?? DBSC_MIN_COOKIE_TTL
  if (f.BFF_DBSC_COOKIE_TTL !== undefined && f.BFF_DBSC_COOKIE_TTL < dbscMin) {
    problems.push(`BFF_DBSC_COOKIE_TTL must be at least ${dbscMin} (browsers refresh a bound cookie about 120 s before it expires)`)
  }
  // DBSC works on secure origins only: browsers ignore it on plain http (security model S84).
  const dbscEnabled = f.BFF_DBSC === 'auto' && publicUrl?.protocol === 'https:' && basePath === ''
  if (f.BFF_DBSC === 'auto' && publicUrl && publicUrl.protocol !== 'https:') {
    warnings.push('BFF_DBSC=auto but BFF_PUBLIC_URL is not https: device-bound sessions are off')
  } else if (f.BFF_DBSC === 'auto' && basePath !== '') {
    // A DBSC session's scope is an origin or a site, not a path: a session of
    // this frontend would claim the other frontends' requests on the origin.
    warnings.push('BFF_DBSC=auto but publicUrl has a path base: device-bound sessions are off for this frontend')
  }

  let postLogoutRedirect = publicUrl ? `${publicUrl.origin}${basePath}/` : ''
  if (f.BFF_POST_LOGOUT_REDIRECT) postLogoutRedirect = f.BFF_POST_LOGOUT_REDIRECT

  if (problems.length > 0 || !e || !publicUrl) throw new ConfigError(problems)

  return Object.freeze({
    publicUrl,
    publicOrigin: publicUrl.origin,
    basePath,
    redirectUri: `${publicUrl.origin}${basePath}/auth/callback`,
    issuer: e.BFF_ISSUER,
    issuerTenants,
    clientId: e.BFF_CLIENT_ID,
    clientSecret: e.BFF_CLIENT_SECRET,
    clientAuth,
    clientPrivateKey: e.BFF_CLIENT_PRIVATE_KEY,
    tls,
    scopes,
    authParams,
    par: e.BFF_PAR,
    dpop: { enabled: e.BFF_DPOP, key: e.BFF_DPOP_KEY },
    routes,
    trustedProxies,
    cookieSecrets,
    encryptionKeys,
    redis: {
      url: e.BFF_REDIS_URL,
      prefix: e.BFF_REDIS_PREFIX,
      mode: e.BFF_REDIS_MODE,
      nodes: redisNodes,
      sentinelName: e.BFF_REDIS_SENTINEL_NAME,
    },
    session: { idleTimeout: e.BFF_SESSION_IDLE_TIMEOUT, maxAge: e.BFF_SESSION_MAX_AGE, cacheMs: e.BFF_SESSION_CACHE_MS },
    refreshSkew: e.BFF_REFRESH_SKEW,
    idTokenMaxAge: e.BFF_ID_TOKEN_MAX_AGE,
    allowHttp,
    host: e.BFF_HOST,
    port: port ?? 3000,
    metricsListen,
    accessLog: e.BFF_ACCESS_LOG,
    postLogoutRedirect,
    logoutIdTokenHint: e.BFF_LOGOUT_ID_TOKEN_HINT,
    cookie: {
      name: cookies.name,
      transactionName: cookies.transactionName,
      path: basePath || '/',
      secure: cookieSecure,
      sameSite: e.BFF_COOKIE_SAMESITE.toLowerCase() === 'lax' ? 'Lax' : 'Strict',
    },
    dbsc: {
      enabled: dbscEnabled,
      cookieTtl: e.BFF_DBSC_COOKIE_TTL,
      maxRejections: e.BFF_DBSC_MAX_REJECTIONS,
      cookieName: cookies.boundName,
    },
    staticDir: e.BFF_STATIC_DIR === undefined ? undefined : isAbsolute(e.BFF_STATIC_DIR) ? e.BFF_STATIC_DIR : resolve(e.BFF_STATIC_DIR),
    logLevel: e.BFF_LOG_LEVEL,
    warnings,
  } satisfies Config)
}
