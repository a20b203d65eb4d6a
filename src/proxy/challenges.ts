import { SCOPE_TOKEN_LIST_RE } from '../protocol.js'

/*
 * What an upstream's 401 asks for, read from its WWW-Authenticate field
 * (RFC 9110 §11.6.1): a fresh token, a DPoP nonce, or a stronger sign-in.
 */

type Field = string | string[] | undefined

function joined(header: Field): string {
  return Array.isArray(header) ? header.join(', ') : (header ?? '')
}

/** RFC 6750 §3.1 (and RFC 9449 §7.1 for DPoP): the resource server says the token is expired, revoked or malformed. */
export function invalidTokenChallenge(header: Field): boolean {
  const v = joined(header)
  return /^\s*(bearer|dpop)\b/i.test(v) && /error\s*=\s*"?invalid_token"?/i.test(v)
}

/** RFC 9449 §9: the resource server wants a DPoP proof with its nonce. */
export function dpopNonceChallenge(header: Field): boolean {
  return /error\s*=\s*"?use_dpop_nonce/i.test(String(header))
}

/** RFC 9470 §3: `Bearer error="insufficient_user_authentication"` with optional acr_values and max_age. */
export function stepUpChallenge(header: Field): { acr_values?: string; max_age?: string } | undefined {
  const v = joined(header)
  if (!/^\s*bearer\b/i.test(v) || !/error\s*=\s*"?insufficient_user_authentication"?/i.test(v)) return undefined
  const out: { acr_values?: string; max_age?: string } = {}
  const acr = /acr_values\s*=\s*"([^"]*)"/i.exec(v)?.[1]
  if (acr && SCOPE_TOKEN_LIST_RE.test(acr)) out.acr_values = acr
  const maxAge = /max_age\s*=\s*"?(\d{1,9})"?/i.exec(v)?.[1]
  if (maxAge) out.max_age = maxAge
  return out
}
