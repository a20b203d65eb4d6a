import type { DbscAlgorithm, DbscPublicJwk } from './dbsc-proof.js'

/** An access token kept in the session beside the session's own. */
export interface KeptToken {
  readonly accessToken: string
  readonly tokenType: string
  /** Epoch ms; undefined when the IdP did not say. */
  readonly expiresAt: number | undefined
}

/**
 * The device key a session is bound to (Device Bound Session Credentials,
 * src/session/dbsc.ts; security model S84-S87). Public key material only.
 */
export interface BoundDeviceKey {
  readonly alg: DbscAlgorithm
  readonly jwk: DbscPublicJwk
  /** RFC 7638 thumbprint of `jwk`. */
  readonly thumbprint: string
  /** Epoch ms. */
  readonly boundAt: number
  /** Refresh proofs refused so far; BFF_DBSC_MAX_REJECTIONS of them end the session. */
  readonly rejections: number
}

/** What tokenward keeps per session, encrypted, in the store. Never sent to the browser. */
export interface SessionData {
  readonly sub: string
  readonly iss: string
  readonly aud: readonly string[]
  readonly azp?: string | undefined
  readonly authTime?: number | undefined
  /** The IdP's session id (`sid` claim), for back-channel logout. */
  readonly idpSid?: string | undefined
  /** ID token claims shown by /auth/session (protocol-only claims removed). */
  readonly claims: Readonly<Record<string, unknown>>
  /** Epoch ms. */
  readonly createdAt: number
  readonly accessToken: string
  readonly tokenType: string
  /** Epoch ms; undefined when the IdP did not say. */
  readonly accessTokenExpiresAt?: number | undefined
  readonly scope?: string | undefined
  readonly refreshToken?: string | undefined
  /** Epoch ms, from `refresh_token_expires_in` where the IdP sends it. */
  readonly refreshTokenExpiresAt?: number | undefined
  /** Kept only when BFF_LOGOUT_ID_TOKEN_HINT=true. */
  readonly idToken?: string | undefined
  /** Access tokens obtained with the refresh token for routes with their own `resource`/`scopes`, by audienceKey (src/tokens/refresh.ts). */
  readonly audienceTokens?: Readonly<Record<string, KeptToken>> | undefined
  /** Access tokens obtained by RFC 8693 token exchange, by exchangeKey (src/tokens/exchange.ts). */
  readonly exchangedTokens?: Readonly<Record<string, KeptToken>> | undefined
  /** Set once the browser registered a device key; from then on the short-lived bound cookie is required too. */
  readonly dbsc?: BoundDeviceKey | undefined
}

/**
 * The previous release kept exchanged tokens in `audienceTokens` too, under
 * their exchange key (`x:`, no space; an audience key is '' or has a space).
 * Sessions it wrote are moved to the current shape when read; the next write
 * of the session stores that shape.
 */
function isExchangeKey(key: string): boolean {
  return key.startsWith('x:') && !key.includes(' ')
}

/** Session data as stored by this or the previous release, in the current shape. */
export function upgradeSessionData(data: SessionData): SessionData {
  const legacy = Object.keys(data.audienceTokens ?? {}).filter(isExchangeKey)
  if (legacy.length === 0) return data
  const audienceTokens: Record<string, KeptToken> = {}
  const exchangedTokens: Record<string, KeptToken> = {}
  for (const [key, token] of Object.entries(data.audienceTokens ?? {})) {
    if (isExchangeKey(key)) exchangedTokens[key] = token
    else audienceTokens[key] = token
  }
  // A token written in the current shape is the newer one.
  return { ...data, audienceTokens, exchangedTokens: { ...exchangedTokens, ...data.exchangedTokens } }
}
