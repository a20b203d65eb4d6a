/**
 * tokenward's browser helper: the few calls a single-page app makes to its
 * backend-for-frontend, with tokenward's rules built in, so app code never
 * repeats them: the `X-CSRF: 1` header, same-origin cookies, 401
 * `login_required` handling, and session-end events for open tabs.
 *
 * No dependencies, no storage: the session is tokenward's HTTP-only cookie,
 * so this module keeps nothing in localStorage or sessionStorage and never
 * sees a token.
 *
 * @example
 * ```js
 * import { bff } from 'tokenward/client'
 *
 * const me = await bff.session()
 * if (!me) bff.login()
 * const orders = await (await bff.fetch('/api/orders')).json()
 * bff.onSessionEnded(() => location.assign('/'))
 * ```
 *
 * @module
 */

import type {
  Session,
  SessionEndReason,
  SessionEndedEvent,
  SessionEndingEvent,
  SessionEndingOptions,
  LoginRequired,
  FetchLike,
  LocationLike,
  EventSourceLike,
  EventSourceConstructor,
  BffOptions,
  Bff,
} from './types.js'

export type * from './types.js'

export class BffRequestError extends Error {
  override name = 'BffRequestError'
  /** HTTP status. */
  readonly status: number
  /** tokenward's error code (`csrf_failed`, `session_store_unavailable`, ...), or `invalid_response`. */
  readonly code: string
  /** Seconds, from `Retry-After` (429 and 503 answers). */
  readonly retryAfter: number | undefined

  constructor(message: string, status: number, code: string, retryAfter?: number) {
    super(message)
    this.status = status
    this.code = code
    this.retryAfter = retryAfter
  }
}

const CSRF_HEADER = 'X-CSRF'
/** `EventSource.CLOSED`, not read from the class so that fakes need not define it. */
const EVENT_SOURCE_CLOSED = 2
const RETRY_MIN_MS = 2_000
const RETRY_MAX_MS = 60_000
/** onSessionEnding's default warning time, in seconds. */
const ENDING_BEFORE_S = 60
/** setTimeout's longest delay (2^31 - 1 ms, about 24.8 days); longer waits are done in steps. */
const MAX_TIMER_MS = 2_147_483_647

interface BrowserGlobals {
  readonly fetch?: FetchLike
  readonly location?: LocationLike
  readonly EventSource?: EventSourceConstructor
}

export function createBff(options: BffOptions = {}): Bff {
  const base = basePathOf(options.basePath ?? '')
  // Resolved on each use, not at creation, so the module can be imported
  // where these do not exist (server-side rendering, tests).
  const globals = globalThis as unknown as BrowserGlobals
  const send: FetchLike = (input, init) => {
    // Never called as a method of `options` (or anything but the window):
    // the browser's fetch then throws "Illegal invocation".
    const impl = options.fetch ?? globals.fetch?.bind(globalThis)
    if (!impl) throw new TypeError('tokenward/client: no fetch; pass options.fetch')
    return impl(input, init)
  }
  const location = (): LocationLike => {
    const found = options.location ?? globals.location
    if (!found) throw new TypeError('tokenward/client: no location; pass options.location')
    return found
  }
  const here = (): string => {
    const { pathname, search, hash } = location()
    return `${pathname}${search}${hash}`
  }
  const authHeaders = (): Record<string, string> => ({ Accept: 'application/json', [CSRF_HEADER]: '1' })

  let redirecting = false
  const loginOnce = ({ returnTo }: LoginRequired): void => {
    // Parallel calls fail together; the browser goes to the IdP once.
    if (redirecting) return
    redirecting = true
    login(returnTo)
  }

  async function fetchWithSession(input: string | URL | Request, init: RequestInit = {}): Promise<Response> {
    // As in fetch() itself, init.headers replaces a Request's own headers.
    const headers = new Headers(init.headers ?? (typeof Request !== 'undefined' && input instanceof Request ? input.headers : undefined))
    // tokenward refuses proxied calls without it: a cross-site form cannot add
    // it, and a cross-site fetch that does needs a preflight tokenward never grants.
    headers.set(CSRF_HEADER, '1')
    const response = await send(input, { ...init, headers, credentials: 'same-origin' })
    if (response.status === 401 && (await errorOf(response)).error === 'login_required') {
      ;(options.onLoginRequired ?? loginOnce)({ url: urlOf(input), returnTo: here() })
    }
    return response
  }

  async function session({ slide = true }: { readonly slide?: boolean } = {}): Promise<Session | null> {
    const response = await send(`${base}/auth/session${slide ? '' : '?slide=false'}`, {
      headers: authHeaders(),
      credentials: 'same-origin',
    })
    if (response.status === 401 && (await errorOf(response)).error === 'login_required') return null
    if (!response.ok) throw await requestError(response)
    const body: unknown = await response.json().catch(() => undefined)
    if (!isSession(body))
      throw new BffRequestError('tokenward/client: /auth/session answered an unexpected body', response.status, 'invalid_response')
    return body
  }

  function login(returnTo: string = here()): void {
    location().assign(`${base}/auth/login?returnTo=${encodeURIComponent(returnTo)}`)
  }

  let loggingOut = false

  async function logout(): Promise<void> {
    // This tab's own logout comes back on its event stream too; its
    // subscribers must not navigate away from the IdP's end-session page,
    // which is what ends the session at the IdP.
    loggingOut = true
    try {
      const response = await send(`${base}/auth/logout`, { method: 'POST', headers: authHeaders(), credentials: 'same-origin' })
      if (!response.ok) throw await requestError(response)
      const body: unknown = await response.json().catch(() => undefined)
      const redirectTo = isRecord(body) && typeof body.redirectTo === 'string' ? body.redirectTo : undefined
      // Never a javascript: or data: URL, whatever answered.
      if (redirectTo === undefined || !isHttpUrl(redirectTo)) {
        throw new BffRequestError(
          'tokenward/client: /auth/logout answered without a usable redirectTo',
          response.status,
          'invalid_response',
        )
      }
      disconnect()
      location().assign(redirectTo)
    } catch (err) {
      loggingOut = false
      if (subscribers.size > 0 && !active) connect()
      throw err
    }
  }

  // -------------------------------------------------------------------------
  // Session-end events: one EventSource per client, shared by its subscribers.

  const subscribers = new Set<{ readonly callback: (event: SessionEndedEvent) => void }>()
  /** A stream, a session check or a retry timer is under way. */
  let active = false
  /** Bumped on disconnect, so the answer of an abandoned check is ignored. */
  let generation = 0
  let source: EventSourceLike | undefined
  let retryTimer: ReturnType<typeof setTimeout> | undefined
  let failures = 0

  function onSessionEnded(callback: (event: SessionEndedEvent) => void): () => void {
    const subscriber = { callback }
    subscribers.add(subscriber)
    if (!active && !loggingOut) connect()
    return () => {
      subscribers.delete(subscriber)
      if (subscribers.size === 0) disconnect()
    }
  }

  function connect(): void {
    const EventSourceImpl = options.EventSource ?? globals.EventSource
    if (!EventSourceImpl) throw new TypeError('tokenward/client: no EventSource; pass options.EventSource')
    active = true
    const stream = new EventSourceImpl(`${base}/auth/events`)
    source = stream
    stream.addEventListener('session', () => {
      if (source === stream) failures = 0
    })
    stream.addEventListener('session_ended', (event) => {
      if (source === stream) end(reasonOf(event.data))
    })
    stream.addEventListener('error', () => {
      // A dropped connection is CONNECTING: the browser reconnects by itself
      // after the server's `retry`, and gets a 401 if the session ended meanwhile.
      if (source !== stream || stream.readyState !== EVENT_SOURCE_CLOSED) return
      // CLOSED: the server refused the stream (401 without a session, 403,
      // 503 while Redis is down), which EventSource never retries. Ask why.
      source = undefined
      stream.close()
      void check(generation)
    })
  }

  async function check(epoch: number): Promise<void> {
    let current: Session | null | undefined
    try {
      current = await session({ slide: false })
    } catch {
      current = undefined
    }
    if (epoch !== generation) return
    if (current === null) return end('no_session')
    // Signed in, or tokenward unreachable: stream again later, backing off
    // with jitter so that tabs do not all come back at one instant after an outage.
    const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** failures) * (0.5 + Math.random() / 2)
    failures++
    retryTimer = setTimeout(() => {
      retryTimer = undefined
      if (epoch === generation) connect()
    }, delay)
  }

  function end(reason: SessionEndReason): void {
    disconnect()
    if (loggingOut) return
    const notify = [...subscribers]
    // Once: the session is over, and a new one means a new page load or a new subscription.
    subscribers.clear()
    for (const { callback } of notify) {
      try {
        callback({ reason })
      } catch (err) {
        // One failing subscriber must not silence the others; the error still surfaces.
        queueMicrotask(() => {
          throw err
        })
      }
    }
  }

  function disconnect(): void {
    generation++
    active = false
    source?.close()
    source = undefined
    if (retryTimer !== undefined) clearTimeout(retryTimer)
    retryTimer = undefined
    failures = 0
  }

  // -------------------------------------------------------------------------
  // A warning before the absolute end: one timer per subscriber.

  function onSessionEnding(
    callback: (event: SessionEndingEvent) => void,
    { before = ENDING_BEFORE_S }: SessionEndingOptions = {},
  ): () => void {
    let stopped = false
    let timer: ReturnType<typeof setTimeout> | undefined
    const wait = (ms: number) => {
      timer = setTimeout(() => void look(), Math.min(MAX_TIMER_MS, Math.max(0, ms)))
    }
    async function look(): Promise<void> {
      timer = undefined
      let current: Session | null
      try {
        current = await session({ slide: false })
      } catch {
        // tokenward unreachable for now: look again later.
        if (!stopped) wait(RETRY_MAX_MS / 2)
        return
      }
      if (stopped || current === null) return
      // Asked again when the moment comes: a refresh may have moved the end later.
      const left = current.expiresAt * 1000 - Date.now()
      if (left > before * 1000) return wait(left - before * 1000)
      stopped = true
      try {
        callback({ expiresAt: current.expiresAt, secondsLeft: Math.max(0, Math.floor(left / 1000)) })
      } catch (err) {
        // As for onSessionEnded: the error surfaces, not as an unhandled rejection.
        queueMicrotask(() => {
          throw err
        })
      }
    }
    void look()
    return () => {
      stopped = true
      if (timer !== undefined) clearTimeout(timer)
      timer = undefined
    }
  }

  return { fetch: fetchWithSession, session, login, logout, onSessionEnded, onSessionEnding }
}

/** A client for tokenward at this origin's root, using the browser's globals. */
export const bff: Bff = createBff()

function basePathOf(value: string): string {
  const trimmed = value.replace(/\/+$/, '')
  if (trimmed !== '' && (!trimmed.startsWith('/') || trimmed.startsWith('//'))) {
    throw new TypeError(`tokenward/client: basePath must be a path on this origin, like '/bff' (got ${JSON.stringify(value)})`)
  }
  return trimmed
}

function urlOf(input: string | URL | Request): string {
  return typeof input === 'string' ? input : 'href' in input ? input.href : input.url
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function isSession(value: unknown): value is Session {
  return (
    isRecord(value) &&
    value.authenticated === true &&
    typeof value.sub === 'string' &&
    typeof value.sid === 'string' &&
    isRecord(value.claims) &&
    typeof value.expiresAt === 'number' &&
    typeof value.idleExpiresAt === 'number'
  )
}

/** tokenward's JSON error body, read from a clone so the caller can still read the response. */
async function errorOf(response: Response): Promise<{ error?: string; message?: string }> {
  if (!(response.headers.get('content-type') ?? '').includes('json')) return {}
  const body: unknown = await response
    .clone()
    .json()
    .catch(() => undefined)
  if (!isRecord(body)) return {}
  return {
    ...(typeof body.error === 'string' ? { error: body.error } : {}),
    ...(typeof body.message === 'string' ? { message: body.message } : {}),
  }
}

async function requestError(response: Response): Promise<BffRequestError> {
  const { error, message } = await errorOf(response)
  const retryAfter = Number(response.headers.get('retry-after') ?? Number.NaN)
  return new BffRequestError(
    `tokenward answered ${response.status}${error ? ` ${error}` : ''}${message ? `: ${message}` : ''}`,
    response.status,
    error ?? 'http_error',
    Number.isFinite(retryAfter) ? retryAfter : undefined,
  )
}

function reasonOf(data: unknown): SessionEndReason {
  try {
    const parsed: unknown = typeof data === 'string' ? JSON.parse(data) : undefined
    if (isRecord(parsed) && typeof parsed.reason === 'string') return parsed.reason
  } catch {
    // A malformed event still means the session ended.
  }
  return 'unknown'
}

function isHttpUrl(value: string): boolean {
  try {
    // A relative URL keeps the page's scheme, which is http(s) wherever this runs.
    const { protocol } = new URL(value, 'https://relative.invalid')
    return protocol === 'https:' || protocol === 'http:'
  } catch {
    return false
  }
}
