/**
 * The session cookie's name (BFF_COOKIE_NAME) and the names derived from it.
 * The login-transaction and bound cookies carry the same name with a suffix,
 * so two frontends with different names never overwrite each other's cookies
 * even where a browser sends them the same ones (security model S92).
 */

/** RFC 6265 §4.1.1: a cookie-name is an RFC 2616 token (no separators, no controls). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/** Leaves room for the `-bound` suffix within common header-size limits. */
export const MAX_COOKIE_NAME_LENGTH = 64

export interface CookieNames {
  readonly name: string
  readonly transactionName: string
  readonly boundName: string
}

/** The names of a cookie family: `<name>`, `<name>-tx`, `<name>-bound`. */
export function cookieNames(name: string): CookieNames {
  return { name, transactionName: `${name}-tx`, boundName: `${name}-bound` }
}

/**
 * The session cookie's name: the configured one, or `__Host-tokenward`
 * (`__Secure-tokenward` at a path base, whose cookies carry `Path=<base>`,
 * which `__Host-` forbids; plain `tokenward` where the cookies cannot be
 * Secure). Problems go to `problems`; a configured name without the `__Host-`
 * prefix on a secure origin at the root is allowed with a warning (the prefix
 * is what stops a sibling subdomain from planting the cookie, RFC 6265bis
 * §4.1.3.2).
 */
export function resolveCookieName(
  configured: string | undefined,
  secure: boolean,
  pathBase: boolean,
  problems: string[],
  warnings: string[],
): string {
  if (configured === undefined) return !secure ? 'tokenward' : pathBase ? '__Secure-tokenward' : '__Host-tokenward'
  if (!TOKEN.test(configured)) {
    problems.push("BFF_COOKIE_NAME must be a cookie-name token (letters, digits and !#$%&'*+-.^_`|~; RFC 6265 §4.1.1)")
    return configured
  }
  if (configured.length > MAX_COOKIE_NAME_LENGTH) {
    problems.push(`BFF_COOKIE_NAME must be at most ${MAX_COOKIE_NAME_LENGTH} characters`)
    return configured
  }
  // Browsers match the prefixes case-insensitively (RFC 6265bis §5.7 step 20-21).
  const lower = configured.toLowerCase()
  const prefixed = lower.startsWith('__host-') || lower.startsWith('__secure-')
  if (prefixed && !secure) {
    problems.push(
      'BFF_COOKIE_NAME with a __Host- or __Secure- prefix needs Secure cookies, which a plain-http non-loopback BFF_PUBLIC_URL cannot have',
    )
  } else if (pathBase && lower.startsWith('__host-')) {
    problems.push(
      'BFF_COOKIE_NAME with the __Host- prefix needs Path=/, which a publicUrl with a path base cannot have (RFC 6265bis §4.1.3.2)',
    )
  } else if (secure && !pathBase && !lower.startsWith('__host-')) {
    warnings.push('BFF_COOKIE_NAME is not __Host- prefixed: a sibling subdomain could plant a cookie of that name (RFC 6265bis §4.1.3.2)')
  }
  return configured
}
