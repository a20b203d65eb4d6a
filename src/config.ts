import { createPrivateKey, type JsonWebKey } from 'node:crypto'
import { isAbsolute, resolve } from 'node:path'
// zod: schema validation with per-field issues, so every bad variable is reported at once
// without a hand-written validator for nested JSON such as BFF_ROUTES.
import { z } from 'zod'
import { ConfigError } from './errors.js'
import { httpUrl, parseRoutes } from './config-routes.js'
import { parseTrustedProxies } from './client-address.js'
import { authParamsProblems } from './oidc/login-policy.js'

export { RESERVED_PREFIXES } from './protocol.js'

export type TokenMode = 'user' | 'optional' | 'none' | 'client'
export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt'

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
  readonly redirectUri: string
  readonly issuer: string
  readonly clientId: string
  readonly clientSecret: string | undefined
  readonly clientAuth: ClientAuthMethod
  readonly clientPrivateKey: string | undefined
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
  readonly postLogoutRedirect: string
  readonly logoutIdTokenHint: boolean
  readonly cookie: {
    readonly name: string
    readonly transactionName: string
    readonly secure: boolean
    readonly sameSite: 'Strict' | 'Lax'
  }
  readonly staticDir: string | undefined
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
  /** Problems worth a startup warning (not errors). */
  readonly warnings: readonly string[]
}

const DEFAULT_SCOPES = 'openid profile email offline_access'

/**
 * A loopback origin is a "potentially trustworthy" secure context (W3C Secure
 * Contexts §3.1), so browsers keep `Secure` and `__Host-` cookies on it over http.
 */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase()
  return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h)
}

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'], { message: 'must be true or false' })
  .transform((v) => v === 'true' || v === '1' || v === 'yes')

/** Whole seconds, at least `min`, at most ten years (a larger value is a typo, not a policy). */
const seconds = (min: number) =>
  z
    .string()
    .regex(/^\d{1,9}$/, 'must be a whole number of seconds (at most 9 digits)')
    .transform(Number)
    .refine((n) => n >= min && n <= 315_360_000, `must be between ${min} and 315360000`)

const envSchema = z.object({
  BFF_PUBLIC_URL: httpUrl.refine((v) => {
    if (!URL.canParse(v)) return true // reported by httpUrl
    const u = new URL(v)
    return (u.pathname === '/' || u.pathname === '') && !u.search && !u.hash
  }, 'must be an origin without path, query or fragment'),
  BFF_ISSUER: httpUrl,
  BFF_CLIENT_ID: z.string().min(1, 'is required'),
  BFF_CLIENT_SECRET: z.string().min(1).optional(),
  BFF_CLIENT_AUTH: z
    .enum(['client_secret_basic', 'client_secret_post', 'private_key_jwt'])
    .default('client_secret_basic'),
  BFF_CLIENT_PRIVATE_KEY: z.string().min(1).optional(),
  BFF_SCOPES: z.string().default(DEFAULT_SCOPES),
  BFF_AUTH_PARAMS: z.string().default(''),
  BFF_PAR: z.enum(['auto', 'always', 'never']).default('auto'),
  BFF_DPOP: bool.default(false),
  BFF_DPOP_KEY: z.string().min(1).optional(),
  BFF_ROUTES: z.string({ message: 'is required (a JSON array of routes)' }),
  BFF_COOKIE_SECRET: z.string({ message: 'is required' }),
  BFF_ENCRYPTION_KEYS: z.string({ message: 'is required' }),
  BFF_REDIS_URL: z
    .string()
    .default('redis://127.0.0.1:6379')
    .refine((v) => /^rediss?:\/\//.test(v) && URL.canParse(v), 'must be a redis:// or rediss:// URL'),
  BFF_REDIS_PREFIX: z.string().default('tokenward:'),
  BFF_REDIS_MODE: z.enum(['standalone', 'sentinel', 'cluster']).default('standalone'),
  BFF_REDIS_NODES: z.string().optional(),
  BFF_REDIS_SENTINEL_NAME: z.string().min(1).optional(),
  BFF_SESSION_IDLE_TIMEOUT: seconds(1).default(1800),
  BFF_SESSION_MAX_AGE: seconds(1).default(28800),
  BFF_SESSION_CACHE_MS: z
    .string()
    .regex(/^\d{1,5}$/, 'must be a whole number of milliseconds')
    .transform(Number)
    .refine((n) => n <= 10_000, 'must be between 0 and 10000')
    .default(1000),
  BFF_REFRESH_SKEW: seconds(0).default(30),
  BFF_ID_TOKEN_MAX_AGE: seconds(1).default(300),
  BFF_ALLOW_HTTP: bool.default(false),
  BFF_HOST: z.string().min(1).default('0.0.0.0'),
  BFF_TRUSTED_PROXIES: z.string().optional(),
  BFF_PORT: z
    .string()
    .regex(/^\d+$/, 'must be a port number')
    .transform(Number)
    .refine((n) => n >= 0 && n <= 65535, 'must be a port number')
    .optional(),
  PORT: z.string().optional(),
  BFF_POST_LOGOUT_REDIRECT: httpUrl.optional(),
  BFF_LOGOUT_ID_TOKEN_HINT: bool.default(false),
  BFF_COOKIE_SAMESITE: z.enum(['strict', 'lax', 'Strict', 'Lax']).default('strict'),
  BFF_STATIC_DIR: z.string().min(1).optional(),
  BFF_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
})

type Env = Record<string, string | undefined>

/**
 * Reads and validates the whole configuration once. Every problem is collected and
 * reported together in one ConfigError naming the variables, so an operator fixes them in one pass.
 */
export function loadConfig(env: Env): Config {
  const problems: string[] = []
  const warnings: string[] = []
  // Treat empty strings like unset variables, as shells and compose files produce them.
  const cleaned: Env = {}
  for (const [k, v] of Object.entries(env)) if (v !== undefined && v !== '') cleaned[k] = v

  const parsed = envSchema.safeParse(cleaned)
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const name = String(issue.path[0] ?? 'environment')
      const message = issue.code === 'invalid_type' && cleaned[name] === undefined ? 'is required' : issue.message
      problems.push(`${name} ${message}`)
    }
    // Keep going with what parsed, so the nested checks below can report too.
  }
  const e = parsed.success ? parsed.data : undefined

  const allowHttp = e?.BFF_ALLOW_HTTP ?? bool.safeParse(cleaned.BFF_ALLOW_HTTP ?? 'false').data ?? false

  const cookieSecrets = (cleaned.BFF_COOKIE_SECRET ?? '').split(',').map((s) => s.trim()).filter(Boolean)
  if (cleaned.BFF_COOKIE_SECRET !== undefined) {
    if (cookieSecrets.length === 0) problems.push('BFF_COOKIE_SECRET is empty')
    cookieSecrets.forEach((s, i) => {
      if (s.length < 32) problems.push(`BFF_COOKIE_SECRET entry ${i + 1} must be at least 32 characters`)
    })
  }

  const encryptionKeys = parseKeyring(cleaned.BFF_ENCRYPTION_KEYS, problems)
  const routes = parseRoutes(cleaned.BFF_ROUTES, allowHttp, problems)
  const trustedProxies = parseTrustedProxies(cleaned.BFF_TRUSTED_PROXIES, problems)

  const issuer = cleaned.BFF_ISSUER
  if (issuer && URL.canParse(issuer) && new URL(issuer).protocol === 'http:' && !allowHttp) {
    problems.push('BFF_ISSUER must be https:// (set BFF_ALLOW_HTTP=true for development only)')
  }

  const clientAuth = e?.BFF_CLIENT_AUTH ?? 'client_secret_basic'
  if (clientAuth === 'private_key_jwt') {
    if (!cleaned.BFF_CLIENT_PRIVATE_KEY) problems.push('BFF_CLIENT_PRIVATE_KEY is required when BFF_CLIENT_AUTH=private_key_jwt')
    else {
      const type = privateKeyType(cleaned.BFF_CLIENT_PRIVATE_KEY)
      if (!type || !/^(rsa|ec:prime256v1|ed25519)$/.test(type)) problems.push('BFF_CLIENT_PRIVATE_KEY must be a private RSA, P-256 or Ed25519 key (JWK or PKCS#8 PEM)')
    }
  } else if (!cleaned.BFF_CLIENT_SECRET) {
    problems.push(`BFF_CLIENT_SECRET is required when BFF_CLIENT_AUTH=${clientAuth}`)
  }

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

  const scopes = (e?.BFF_SCOPES ?? DEFAULT_SCOPES).split(/\s+/).filter(Boolean)
  if (!scopes.includes('openid')) problems.push('BFF_SCOPES must include openid')

  let port = e?.BFF_PORT
  if (port === undefined && cleaned.PORT !== undefined) {
    if (/^\d+$/.test(cleaned.PORT) && Number(cleaned.PORT) <= 65535) port = Number(cleaned.PORT)
    else problems.push('PORT must be a port number')
  }

  const redisNodes: Array<{ host: string; port: number }> = []
  if (e && e.BFF_REDIS_MODE !== 'standalone') {
    for (const n of (cleaned.BFF_REDIS_NODES ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
      const m = /^(.+):(\d{1,5})$/.exec(n)
      if (m && Number(m[2]) >= 1 && Number(m[2]) <= 65535) redisNodes.push({ host: m[1]!, port: Number(m[2]) })
      else problems.push(`BFF_REDIS_NODES entry "${n}" must be host:port`)
    }
    if (redisNodes.length === 0) problems.push(`BFF_REDIS_NODES is required when BFF_REDIS_MODE=${e.BFF_REDIS_MODE}`)
    if (e.BFF_REDIS_MODE === 'sentinel' && !cleaned.BFF_REDIS_SENTINEL_NAME) {
      problems.push('BFF_REDIS_SENTINEL_NAME is required when BFF_REDIS_MODE=sentinel')
    }
  }

  if (e && e.BFF_SESSION_IDLE_TIMEOUT > e.BFF_SESSION_MAX_AGE) {
    warnings.push('BFF_SESSION_IDLE_TIMEOUT is longer than BFF_SESSION_MAX_AGE; the absolute lifetime wins')
  }

  let cookieSecure = true
  let cookieName = '__Host-tokenward'
  let txName = '__Host-tokenward-tx'
  let publicUrl: URL | undefined
  if (e) {
    publicUrl = new URL(e.BFF_PUBLIC_URL)
    if (publicUrl.protocol === 'http:' && !isLoopbackHost(publicUrl.hostname)) {
      if (!allowHttp) {
        problems.push('BFF_PUBLIC_URL must be https:// (or http://localhost; set BFF_ALLOW_HTTP=true for other plain-http origins in development)')
      } else {
        // Browsers refuse `Secure` cookies (and so `__Host-`) on a plain-http
        // origin that is not loopback (RFC 6265bis §4.1.3.1, §5.7).
        cookieSecure = false
        cookieName = 'tokenward'
        txName = 'tokenward-tx'
        warnings.push('BFF_PUBLIC_URL is plain http on a non-loopback host: cookies lose the __Host- prefix and Secure flag')
      }
    }
    if (allowHttp) warnings.push('BFF_ALLOW_HTTP=true: plain-http issuer and upstreams are allowed; never use this in production')
  }

  let postLogoutRedirect = publicUrl ? `${publicUrl.origin}/` : ''
  if (e?.BFF_POST_LOGOUT_REDIRECT) postLogoutRedirect = e.BFF_POST_LOGOUT_REDIRECT

  if (problems.length > 0 || !e || !publicUrl) throw new ConfigError(problems)

  return Object.freeze({
    publicUrl,
    publicOrigin: publicUrl.origin,
    redirectUri: `${publicUrl.origin}/auth/callback`,
    issuer: e.BFF_ISSUER,
    clientId: e.BFF_CLIENT_ID,
    clientSecret: e.BFF_CLIENT_SECRET,
    clientAuth,
    clientPrivateKey: e.BFF_CLIENT_PRIVATE_KEY,
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
    postLogoutRedirect,
    logoutIdTokenHint: e.BFF_LOGOUT_ID_TOKEN_HINT,
    cookie: {
      name: cookieName,
      transactionName: txName,
      secure: cookieSecure,
      sameSite: e.BFF_COOKIE_SAMESITE.toLowerCase() === 'lax' ? 'Lax' : 'Strict',
    },
    staticDir: e.BFF_STATIC_DIR === undefined ? undefined : isAbsolute(e.BFF_STATIC_DIR) ? e.BFF_STATIC_DIR : resolve(e.BFF_STATIC_DIR),
    logLevel: e.BFF_LOG_LEVEL,
    warnings,
  } satisfies Config)
}

/** The private key's type ('rsa', 'ec', ...), or undefined when it is not a parseable private key. */
function privateKeyType(raw: string): string | undefined {
  try {
    const text = raw.trim()
    const key = text.startsWith('{')
      ? createPrivateKey({ key: JSON.parse(text) as JsonWebKey, format: 'jwk' })
      : createPrivateKey(text)
    const curve = key.asymmetricKeyDetails?.namedCurve
    return key.asymmetricKeyType === 'ec' && curve ? `ec:${curve}` : key.asymmetricKeyType
  } catch {
    return undefined
  }
}

function parseKeyring(raw: string | undefined, problems: string[]): EncryptionKey[] {
  if (raw === undefined) return []
  const keys: EncryptionKey[] = []
  const entries = raw.split(',').map((s) => s.trim()).filter(Boolean)
  if (entries.length === 0) problems.push('BFF_ENCRYPTION_KEYS is empty')
  entries.forEach((entry, i) => {
    const m = /^([A-Za-z0-9_-]{1,32}):([A-Za-z0-9+/_-]+={0,2})$/.exec(entry)
    if (!m) {
      problems.push(`BFF_ENCRYPTION_KEYS entry ${i + 1} must be id:base64 (id of letters, digits, - or _)`)
      return
    }
    const key = Buffer.from(m[2]!, m[2]!.includes('-') || m[2]!.includes('_') ? 'base64url' : 'base64')
    if (key.length !== 32) {
      problems.push(`BFF_ENCRYPTION_KEYS entry ${i + 1} (${m[1]}) must decode to 32 bytes, got ${key.length}`)
      return
    }
    if (keys.some((k) => k.id === m[1])) {
      problems.push(`BFF_ENCRYPTION_KEYS has the key id ${m[1]} twice`)
      return
    }
    keys.push({ id: m[1]!, key })
  })
  return keys
}
