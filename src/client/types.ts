/** The types of tokenward's browser helper (index.ts); type-only, so the compiled helper stays one file. */

/** ID-token claims as tokenward hands them on (protocol claims removed). */
export interface SessionClaims {
  readonly name?: string
  readonly email?: string
  readonly preferred_username?: string
  readonly [claim: string]: unknown
}

/** A signed-in browser's `GET /auth/session`. Times are epoch seconds. */
export interface Session {
  readonly authenticated: true
  readonly sub: string
  readonly claims: SessionClaims
  /** tokenward's non-secret session reference (`tokenward sessions list`), not the cookie. */
  readonly sid: string
  /**
   * The absolute end: when a new login is needed at the latest, however
   * active the user is. The configured maximum age, or the refresh token's
   * end when the IdP states it and it comes first. Activity never extends it;
   * a refresh that brings a refresh token with a later end may move it later,
   * never past the maximum age.
   */
  readonly expiresAt: number
  /** The end unless an API call or `session()` slides it first. */
  readonly idleExpiresAt: number
  /**
   * The refresh token's end as the IdP stated it (capped at the maximum age),
   * or `null` when it did not say. Absent from tokenward releases before it.
   */
  readonly refreshTokenExpiresAt?: number | null
}

/** What `onSessionEnding` learns: the session needs a new login soon. */
export interface SessionEndingEvent {
  /** Epoch seconds: the session's `expiresAt`. */
  readonly expiresAt: number
  /** Seconds from now to `expiresAt` by this device's clock, at least 0. */
  readonly secondsLeft: number
}

export interface SessionEndingOptions {
  /** How many seconds before `expiresAt` to call back; 60 by default. */
  readonly before?: number
}

/**
 * Why a session ended: the reasons `/auth/events` sends, plus `no_session`
 * when the client found no session after its event stream was refused (the
 * session ended while the stream was down, or there never was one).
 */
export type SessionEndReason =
  | 'logout'
  | 'backchannel_logout'
  | 'frontchannel_logout'
  | 'session_revoked'
  | 'session_expired'
  | 'refresh_token_rejected'
  | 'refresh_failed'
  | 'no_session'
  | (string & {})

export interface SessionEndedEvent {
  readonly reason: SessionEndReason
}

/** What `onLoginRequired` learns about a call tokenward answered with 401 `login_required`. */
export interface LoginRequired {
  /** The URL that was called. */
  readonly url: string
  /** The current path, query and hash: where `login()` would come back to. */
  readonly returnTo: string
}

/** `fetch` as the browser has it; injectable for tests. */
export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>

/** The part of `window.location` the client uses. */
export interface LocationLike {
  readonly pathname: string
  readonly search: string
  readonly hash: string
  assign(url: string): void
}

/** The part of `EventSource` the client uses. */
export interface EventSourceLike {
  readonly readyState: number
  addEventListener(type: string, listener: (event: { readonly data?: unknown }) => void): void
  close(): void
}

export type EventSourceConstructor = new (url: string) => EventSourceLike

export interface BffOptions {
  /**
   * Where tokenward's `/auth` endpoints are, when a reverse proxy mounts it
   * below the origin's root (`'/bff'`); `''` by default. URLs given to
   * `fetch()` are used as they are.
   */
  readonly basePath?: string
  /**
   * Called when tokenward answers a `fetch()` with 401 `login_required`.
   * Default: `login()` back to the current page, once however many calls fail together.
   */
  readonly onLoginRequired?: (event: LoginRequired) => void
  /** Default: the browser's `fetch`. */
  readonly fetch?: FetchLike
  /** Default: `window.location`. */
  readonly location?: LocationLike
  /** Default: the browser's `EventSource`. */
  readonly EventSource?: EventSourceConstructor
}

export interface Bff {
  /** `fetch` with `X-CSRF: 1` and same-origin credentials; a 401 `login_required` also goes to `onLoginRequired`. The response is returned either way. */
  fetch(input: string | URL | Request, init?: RequestInit): Promise<Response>
  /** The current session, or `null` when signed out. `slide: false` leaves the idle timeout alone (for polling). */
  session(options?: { readonly slide?: boolean }): Promise<Session | null>
  /** Navigates to tokenward's login, which comes back to `returnTo` (default: the current path, query and hash). */
  login(returnTo?: string): void
  /** Ends the session at tokenward and the IdP, then navigates to where tokenward says (the IdP's end-session page). */
  logout(): Promise<void>
  /**
   * Calls `callback` once when this browser's session ends elsewhere: another
   * tab's logout, a back-channel logout, an administrator, expiry. Returns
   * the unsubscribe function. This tab's own `logout()` does not call it.
   */
  onSessionEnded(callback: (event: SessionEndedEvent) => void): () => void
  /**
   * Calls `callback` once, `before` seconds (default 60) before the session's
   * absolute end (`expiresAt`), when a new login will be needed whatever the
   * user does: time to save work and sign in again. Reads `/auth/session`
   * without sliding it, and again when the moment comes, since a refresh may
   * have moved the end later. Nothing is called without a session; the end
   * itself comes through `onSessionEnded` (`session_expired`) or a 401
   * `login_required`. Returns the unsubscribe function.
   */
  onSessionEnding(callback: (event: SessionEndingEvent) => void, options?: SessionEndingOptions): () => void
}

/** tokenward answered something other than what the call expects. */
