import type { TokenResult } from '../oidc/client.js'
import type { SessionData } from '../session/sessions.js'

/** Errors of a request that certainly never reached the IdP's application. */
const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT'])

/** Whether a failed token request may have been processed by the IdP (so its refresh token may be spent). */
export function mayHaveReachedIdp(err: unknown): boolean {
  let e: unknown = err
  for (let depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string' && NOT_SENT.has(code)) return false
    // An error answer from the IdP: it issued nothing.
    const status = (e as { status?: unknown }).status
    if (typeof status === 'number' && status >= 400) return false
    e = (e as { cause?: unknown }).cause
  }
  return true
}

/**
 * OpenID Connect Core §12.2: a refreshed ID token keeps iss, sub, aud (and azp,
 * auth_time); and, as at login (§3.1.3.7 step 5), an `azp` that is present must
 * be tokenward's client id.
 */
export function idTokenMismatch(data: SessionData, tokens: TokenResult, clientId: string): string | undefined {
  const c = tokens.idClaims
  if (!c) return undefined
  if (c.iss !== data.iss) return 'refreshed ID token changed iss'
  if (c.sub !== data.sub) return 'refreshed ID token changed sub'
  const aud = Array.isArray(c.aud) ? c.aud : [c.aud]
  if (aud.length !== data.aud.length || aud.some((a) => !data.aud.includes(a))) return 'refreshed ID token changed aud'
  if (c.azp !== undefined && c.azp !== clientId) return "refreshed ID token azp is not tokenward's client id"
  if (data.azp !== undefined && c.azp !== undefined && c.azp !== data.azp) return 'refreshed ID token changed azp'
  if (data.authTime !== undefined && c.auth_time !== undefined && c.auth_time !== data.authTime)
    return 'refreshed ID token changed auth_time'
  return undefined
}
