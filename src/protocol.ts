/**
 * Protocol grammar tokenward checks in more than one place, defined once:
 * OAuth scope tokens, the request methods a proxy may replay, and the paths
 * tokenward answers itself.
 */

/** RFC 6749 §3.3 scope-token: `1*( %x21 / %x23-5B / %x5D-7E )`, printable ASCII without space, `"` or `\`. */
const SCOPE_TOKEN = '[\\x21\\x23-\\x5B\\x5D-\\x7E]+'

/** One scope token (RFC 6749 §3.3). */
export const SCOPE_TOKEN_RE = new RegExp(`^${SCOPE_TOKEN}$`)

/**
 * Scope tokens separated by single spaces, the RFC 6749 §3.3 `scope` syntax,
 * which OIDC Core §3.1.2.1 `acr_values` and RFC 9470 §3 challenges share.
 */
export const SCOPE_TOKEN_LIST_RE = new RegExp(`^${SCOPE_TOKEN}( ${SCOPE_TOKEN})*$`)

/** An HTTP method name as a route's `methods` lists it (RFC 9110 §9.1: a token; tokenward accepts letters). */
export const METHOD_NAME_RE = /^[A-Za-z]+$/

/**
 * Methods whose requests a proxy may send again (after a broken connection, a
 * refreshed token or a new DPoP nonce): idempotent (RFC 9110 §9.2.2) other than
 * PUT, and replayed only when the request has no body, which the callers check
 * (a streamed body cannot be sent twice).
 */
export const REPLAYABLE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'DELETE'])

/** Paths tokenward itself answers; a route may not shadow them. */
export const RESERVED_PREFIXES: readonly string[] = ['/auth', '/healthz', '/readyz', '/metrics']

/** tokenward's own endpoints, the bounded set of labels its request metric uses besides route prefixes. */
export const ENDPOINTS: ReadonlySet<string> = new Set([
  '/auth/login',
  '/auth/callback',
  '/auth/session',
  '/auth/logout',
  '/auth/events',
  '/auth/backchannel-logout',
  '/auth/frontchannel-logout',
  '/healthz',
  '/readyz',
  '/metrics',
])
