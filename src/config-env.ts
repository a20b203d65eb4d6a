// zod: schema validation with per-field issues, so every bad variable is reported at once
// without a hand-written validator for nested JSON such as BFF_ROUTES.
import { z } from 'zod'
import { httpUrl } from './config-routes.js'

export const DEFAULT_SCOPES = 'openid profile email offline_access'

/** The environment as tokenward reads it: one schema, so every problem is reported at once. */
export const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'], { message: 'must be true or false' })
  .transform((v) => v === 'true' || v === '1' || v === 'yes')

/** Whole seconds, at least `min`, at most ten years (a larger value is a typo, not a policy). */
const seconds = (min: number) =>
  z
    .string()
    .regex(/^\d{1,9}$/, 'must be a whole number of seconds (at most 9 digits)')
    .transform(Number)
    .refine((n) => n >= min && n <= 315_360_000, `must be between ${min} and 315360000`)

export const envSchema = z.object({
  BFF_PUBLIC_URL: httpUrl.refine((v) => {
    if (!URL.canParse(v)) return true // reported by httpUrl
    const u = new URL(v)
    return !u.search && !u.hash
  }, 'must be an origin without path, query or fragment'),
  BFF_ISSUER: httpUrl,
  BFF_ISSUER_TENANTS: z.string().optional(),
  BFF_CLIENT_ID: z.string().min(1, 'is required'),
  BFF_CLIENT_SECRET: z.string().min(1).optional(),
  BFF_CLIENT_AUTH: z
    .enum(['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'tls_client_auth', 'self_signed_tls_client_auth'])
    .default('client_secret_basic'),
  BFF_CLIENT_PRIVATE_KEY: z.string().min(1).optional(),
  BFF_TLS_CLIENT_CERT: z.string().min(1).optional(),
  BFF_TLS_CLIENT_KEY: z.string().min(1).optional(),
  BFF_TLS_CA: z.string().min(1).optional(),
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
  BFF_METRICS_LISTEN: z.string().optional(),
  BFF_ACCESS_LOG: bool.default(false),
  BFF_PORT: z
    .string()
    .regex(/^\d+$/, 'must be a port number')
    .transform(Number)
    .refine((n) => n >= 0 && n <= 65535, 'must be a port number')
    .optional(),
  PORT: z.string().optional(),
  BFF_POST_LOGOUT_REDIRECT: httpUrl.optional(),
  BFF_LOGOUT_ID_TOKEN_HINT: bool.default(false),
  // Checked in loadConfig (src/config-cookie.ts): the rules depend on BFF_PUBLIC_URL.
  BFF_COOKIE_NAME: z.string().optional(),
  BFF_COOKIE_SAMESITE: z.enum(['strict', 'lax', 'Strict', 'Lax']).default('strict'),
  BFF_STATIC_DIR: z.string().min(1).optional(),
  BFF_DBSC: z.enum(['auto', 'off']).default('auto'),
  // The minimum (130 s, above Chromium's refresh threshold of about 120 s) is checked in loadConfig.
  BFF_DBSC_COOKIE_TTL: seconds(1).default(600),
  BFF_DBSC_MAX_REJECTIONS: z
    .string()
    .regex(/^\d{1,3}$/, 'must be a whole number')
    .transform(Number)
    .refine((n) => n >= 1, 'must be between 1 and 999')
    .default(3),
  BFF_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  // Several frontends from one file (src/config-file.ts, docs/configuration.md); read before loadConfig.
  BFF_CONFIG_FILE: z.string().min(1).optional(),
  BFF_CONFIG_WATCH: bool.default(false),
})

/** Every variable tokenward reads, derived from the schema so the list cannot drift from it. */
export const KNOWN_VARIABLES: readonly string[] = Object.keys(envSchema.shape)

/** Edit distance (insertions, deletions, substitutions), for "did you mean" suggestions. */
export function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    prev = row
  }
  return prev[b.length]!
}

/** The known variable a misspelt one most likely meant: the nearest within two edits, letter case ignored. */
export function suggestVariable(name: string, known: readonly string[] = KNOWN_VARIABLES): string | undefined {
  const upper = name.toUpperCase()
  let best: { name: string; d: number } | undefined
  for (const k of known) {
    const d = levenshtein(upper, k)
    if (d <= 2 && (!best || d < best.d)) best = { name: k, d }
  }
  return best?.name
}

/**
 * A BFF_* variable tokenward does not know is a typo until proven otherwise: accepting it
 * silently means the setting the operator meant (say BFF_REDIS_URL) quietly keeps its default.
 */
export function unknownVariableProblems(env: Record<string, string | undefined>): string[] {
  const problems: string[] = []
  for (const name of Object.keys(env).sort()) {
    if (!name.startsWith('BFF_') || KNOWN_VARIABLES.includes(name)) continue
    const suggestion = suggestVariable(name)
    problems.push(`${name} is not a tokenward variable${suggestion ? ` (did you mean ${suggestion}?)` : ''}`)
  }
  return problems
}

export type EnvValues = z.output<typeof envSchema>
