/**
 * How long a refresh token lives, as far as the token response says. RFC 6749
 * §5.1 defines no field for it, so IdPs say it in their own ways; tokenward
 * reads, in this order (security model S77):
 *
 * 1. `refresh_token_expires_in`: seconds (Microsoft identity platform, GitHub apps, others);
 * 2. `refresh_expires_in`: seconds, Keycloak's name. Keycloak sends 0 for an
 *    offline token without a fixed expiry, so 0 (like any value that is not a
 *    positive number of seconds) means "not said";
 * 3. the refresh token's own `exp`, when the token is a JWT (Keycloak's are).
 *
 * The first one present and usable wins. The result only plans the session's
 * end: the session's absolute end is the earlier of BFF_SESSION_MAX_AGE and
 * this expiry (security model S20, S77), so a wrong value can make a session
 * end earlier, or later but never past BFF_SESSION_MAX_AGE, and never makes
 * tokenward accept anything it would otherwise refuse.
 */

/** What a token response says about its refresh token's lifetime. */
export type RefreshLifetime =
  | { readonly source: 'refresh_token_expires_in' | 'refresh_expires_in'; readonly seconds: number }
  /** Epoch seconds, from the refresh token's JWT payload. */
  | { readonly source: 'jwt_exp'; readonly exp: number }

/** Longer tokens are not looked into: no IdP issues a refresh token this large, and parsing stays cheap. */
const MAX_JWT_LENGTH = 16 * 1024
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/

/** A positive, finite number of seconds (a JSON number, or a decimal string as some IdPs send `expires_in`), else undefined. */
function seconds(value: unknown): number | undefined {
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^\d{1,12}$/.test(value) ? Number(value) : Number.NaN
  return Number.isFinite(n) && n > 0 ? n : undefined
}

function jsonObject(segment: string): Record<string, unknown> | undefined {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'))
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}

/**
 * The `exp` (epoch seconds) of a refresh token that is a JWS compact
 * serialisation (RFC 7515 §7.1) whose header and payload are JSON objects,
 * else undefined.
 *
 * The JWT is only READ, never verified, and nothing but `exp` is taken from
 * it. A refresh token is opaque to the client (RFC 6749 §1.5, §6): only the
 * IdP that issued it can judge it, and it does so whenever the token is
 * presented. The key to check the signature is often the IdP's own secret
 * (Keycloak signs refresh tokens with HMAC), and a check would prove nothing
 * tokenward needs: the value came straight from the IdP's token endpoint over
 * an authenticated channel, and is used only to plan when the session ends,
 * within BFF_SESSION_MAX_AGE.
 */
export function jwtExp(token: string): number | undefined {
  if (token.length > MAX_JWT_LENGTH || !JWT_SHAPE.test(token)) return undefined
  const [header, payload] = token.split('.') as [string, string, string]
  if (!jsonObject(header)) return undefined
  const exp = jsonObject(payload)?.exp
  return typeof exp === 'number' && Number.isFinite(exp) && exp > 0 ? exp : undefined
}

/** What `response` (a token endpoint's JSON answer) says about its refresh token's lifetime, or undefined. */
export function readRefreshLifetime(response: Readonly<Record<string, unknown>>): RefreshLifetime | undefined {
  for (const source of ['refresh_token_expires_in', 'refresh_expires_in'] as const) {
    const s = seconds(response[source])
    if (s !== undefined) return { source, seconds: s }
  }
  const token = response.refresh_token
  const exp = typeof token === 'string' ? jwtExp(token) : undefined
  return exp === undefined ? undefined : { source: 'jwt_exp', exp }
}

/**
 * The refresh token's expiry in epoch ms, received at `now`, no later than
 * `latest` (the session's latest possible end: creation + BFF_SESSION_MAX_AGE);
 * undefined when the response did not say or said nonsense (an expiry not
 * after `now`, a number too large to be a time).
 */
export function refreshTokenExpiry(
  lifetime: RefreshLifetime | undefined,
  { now, latest }: { readonly now: number; readonly latest: number },
): number | undefined {
  if (lifetime === undefined) return undefined
  const at = Math.floor(lifetime.source === 'jwt_exp' ? lifetime.exp * 1000 : now + lifetime.seconds * 1000)
  if (!Number.isFinite(at) || at <= now) return undefined
  return Math.min(at, latest)
}
