import * as oidc from 'openid-client'
import { BffError, IdpUnavailableError } from '../errors.js'
import { IdpResponseTooLargeError } from './fetch.js'

/** A short, secret-free description of an openid-client or network error. */
export function describe(err: unknown): string {
  if (err instanceof oidc.ResponseBodyError) return `${err.error} (HTTP ${err.status})`
  if (err instanceof oidc.AuthorizationResponseError) return `authorization error ${err.error}`
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code
    const cause = err.cause instanceof Error ? `: ${err.cause.message}` : ''
    return `${typeof code === 'string' ? `${code} ` : ''}${err.message}${cause}`.slice(0, 300)
  }
  return 'unknown error'
}

/** RFC 6749 §5.2: these mean the grant is dead; anything else may be transient. */
export function isFatalGrantError(err: unknown): boolean {
  return err instanceof oidc.ResponseBodyError && (err.error === 'invalid_grant' || err.error === 'invalid_client')
}

/**
 * Transport failures: the request did not get an answer (refused, reset, name
 * resolution, unreachable, a socket or timeout error of undici). Not the
 * undici codes of a bad argument (UND_ERR_INVALID_ARG, ..._NOT_SUPPORTED,
 * ..._INVALID_RETURN_VALUE, ..._REQ_CONTENT_LENGTH_MISMATCH): those are bugs.
 */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
  'UND_ERR_ABORTED',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  'UND_ERR_RES_EXCEEDED_MAX_SIZE',
  'UND_ERR_HEADERS_OVERFLOW',
])

/**
 * oauth4webapi codes (openid-client passes them on) that mean tokenward or the
 * IdP's metadata is misconfigured, not that the IdP refused or sent something
 * invalid: a missing or malformed endpoint, a plain-http endpoint without
 * BFF_ALLOW_HTTP, an endpoint that is not http(s).
 */
const MISCONFIGURATION_CODES = new Set([
  'OAUTH_MISSING_SERVER_METADATA',
  'OAUTH_INVALID_SERVER_METADATA',
  'OAUTH_HTTP_REQUEST_FORBIDDEN',
  'OAUTH_REQUEST_PROTOCOL_FORBIDDEN',
])

/**
 * What went wrong in a request to the IdP:
 * - `unavailable`: the IdP is (for now) not answering usably: a network
 *   failure, a timeout or abort, HTTP 5xx, or `temporarily_unavailable`
 *   (RFC 6749 §4.1.2.1). Answered 503 idp_unavailable with Retry-After.
 * - `refused`: the IdP answered, and the answer is an error (HTTP 4xx, an
 *   OAuth error) or fails validation (ID token, response shape, size).
 * - `bug`: anything else, a programming error or a misconfiguration (a
 *   TypeError for a bad argument, a malformed endpoint, a TLS failure). A 500
 *   server_error, logged at error level; never presented as the IdP's fault.
 *
 * The cause chain is walked: oauth4webapi and openid-client wrap a timed-out or
 * cut-off body (undici's TypeError "terminated", a TimeoutError) in a parse
 * error, and undici wraps a refused connection in TypeError "fetch failed".
 * A TypeError alone proves nothing: openid-client throws one for bad
 * arguments too; only the network code on its cause does. A 5xx is
 * recognised by shape, not by `instanceof Response` (@hono/node-server
 * replaces the global Response class).
 */
export type IdpFailure = 'unavailable' | 'refused' | 'bug'

function causeChain(err: unknown): unknown[] {
  const chain: unknown[] = []
  let e: unknown = err
  while (e !== undefined && e !== null && chain.length < 8 && !chain.includes(e)) {
    chain.push(e)
    e = (e as { cause?: unknown }).cause
  }
  return chain
}

function isHttpResponse(e: unknown): e is { status: number } {
  return (
    typeof e === 'object' &&
    e !== null &&
    typeof (e as { status?: unknown }).status === 'number' &&
    typeof (e as { headers?: unknown }).headers === 'object'
  )
}

export function classifyIdpError(err: unknown): IdpFailure {
  const chain = causeChain(err)
  for (const e of chain) {
    if (e instanceof IdpUnavailableError) return 'unavailable'
    if (e instanceof IdpResponseTooLargeError) return 'refused'
    if (e instanceof oidc.ResponseBodyError) return e.status >= 500 || e.error === 'temporarily_unavailable' ? 'unavailable' : 'refused'
    const name = (e as { name?: unknown }).name
    if (name === 'TimeoutError' || name === 'AbortError') return 'unavailable'
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string' && NETWORK_CODES.has(code)) return 'unavailable'
    // The HTTP answer itself (openid-client's RESPONSE_IS_NOT_CONFORM carries it as the cause).
    if (isHttpResponse(e) && !(e instanceof Error)) return e.status >= 500 ? 'unavailable' : 'refused'
  }
  for (const e of chain) {
    if (e instanceof oidc.AuthorizationResponseError) return 'refused'
    if (e instanceof oidc.WWWAuthenticateChallengeError) return e.status >= 500 ? 'unavailable' : 'refused'
    const code = (e as { code?: unknown }).code
    // oauth4webapi's protocol and validation failures (OperationProcessingError,
    // UnsupportedOperationError, and openid-client's ClientError around them).
    if (e instanceof Error && typeof code === 'string' && code.startsWith('OAUTH_')) {
      return MISCONFIGURATION_CODES.has(code) ? 'bug' : 'refused'
    }
  }
  return 'bug'
}

/** Network failure, timeout or 5xx: the IdP is (for now) unavailable (classifyIdpError). */
export function isTransientIdpError(err: unknown): boolean {
  return classifyIdpError(err) === 'unavailable'
}

/** A bug or misconfiguration met while talking to the IdP: logged at error level by the caller, answered 500. */
export function idpBug(err: unknown, where: string): BffError {
  return new BffError('server_error', 'An unexpected error occurred.', { cause: err, logDetail: `${where}: ${describe(err)}` })
}

/** Maps an IdP failure to the client-facing error: 503 for an outage, `refused()` for an IdP refusal, 500 for a bug. */
export function toIdpError(err: unknown, refused: () => BffError, where = 'identity provider request'): BffError {
  if (err instanceof BffError) return err
  switch (classifyIdpError(err)) {
    case 'unavailable':
      return new IdpUnavailableError({ cause: err, logDetail: describe(err) })
    case 'refused':
      return refused()
    default:
      return idpBug(err, where)
  }
}
