/**
 * One error hierarchy. Every refusal tokenward makes is a BffError with a stable
 * `code` of the public contract; only src/http/error-response.ts turns one
 * into HTTP. `logDetail` is for the server log only and must
 * never contain a token, cookie value or secret.
 */

export type BffErrorCode =
  | 'invalid_request'
  | 'login_required'
  | 'step_up_required'
  | 'csrf_failed'
  | 'not_found'
  | 'method_not_allowed'
  | 'misdirected_request'
  | 'payload_too_large'
  | 'rate_limited'
  | 'upstream_unavailable'
  | 'session_store_unavailable'
  | 'idp_unavailable'
  | 'upstream_timeout'
  | 'server_error'

const STATUS: Record<BffErrorCode, number> = {
  invalid_request: 400,
  login_required: 401,
  step_up_required: 401,
  csrf_failed: 403,
  not_found: 404,
  method_not_allowed: 405,
  // RFC 9110 §15.5.20: this server does not serve the request's Host (docs/endpoints.md).
  misdirected_request: 421,
  payload_too_large: 413,
  rate_limited: 429,
  upstream_unavailable: 502,
  session_store_unavailable: 503,
  idp_unavailable: 503,
  upstream_timeout: 504,
  server_error: 500,
}

export interface BffErrorOptions {
  /** Server-side detail for the log; never sent to the client. */
  logDetail?: string
  cause?: unknown
  /** Seconds, for 503 responses. */
  retryAfter?: number
}

export class BffError extends Error {
  readonly code: BffErrorCode
  readonly status: number
  readonly logDetail: string | undefined
  readonly retryAfter: number | undefined

  constructor(code: BffErrorCode, message: string, options: BffErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = this.constructor.name
    this.code = code
    this.status = STATUS[code]
    this.logDetail = options.logDetail
    this.retryAfter = options.retryAfter
  }
}

export class SessionStoreUnavailableError extends BffError {
  constructor(options: BffErrorOptions = {}) {
    super('session_store_unavailable', 'The session store is unavailable, try again shortly.', {
      retryAfter: 2,
      ...options,
    })
  }
}

export class IdpUnavailableError extends BffError {
  constructor(options: BffErrorOptions = {}) {
    super('idp_unavailable', 'The identity provider is unavailable, try again shortly.', {
      retryAfter: 5,
      ...options,
    })
  }
}

export class LoginRequiredError extends BffError {
  constructor(message = 'Authentication is required.', options: BffErrorOptions = {}) {
    super('login_required', message, options)
  }
}

/**
 * The request did not arrive within the time tokenward waits for it: 408
 * (RFC 9110 §15.5.9) with the code of every malformed request, as Node's own
 * request timeout is answered (server.ts). The request's framing is out of
 * sync, so the answer also closes the connection (RFC 9110 §15.5.9, §7.6.1).
 */
export class RequestTimeoutError extends BffError {
  override readonly status = 408

  constructor(message = 'The request body did not arrive in time.', options: BffErrorOptions = {}) {
    super('invalid_request', message, options)
  }
}

export class ConfigError extends Error {
  readonly problems: readonly string[]

  constructor(problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`)
    this.name = 'ConfigError'
    this.problems = problems
  }
}
