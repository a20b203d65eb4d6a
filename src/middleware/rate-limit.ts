import type { MiddlewareHandler } from 'hono'
import { BffError } from '../errors.js'
import { clientIp } from '../http/audit.js'
import type { AppEnv } from '../types.js'

/**
 * A fixed-window counter per key (usually the client IP), in memory. Enough to
 * blunt floods of the anonymous endpoints on one instance; a shared limit across
 * instances belongs in front of tokenward (ingress, WAF).
 */
export class RateLimiter {
  readonly #limit: number
  readonly #windowMs: number
  readonly #maxKeys: number
  readonly #windows = new Map<string, { start: number; count: number }>()

  constructor(options: { limit: number; windowMs: number; maxKeys?: number }) {
    this.#limit = options.limit
    this.#windowMs = options.windowMs
    this.#maxKeys = options.maxKeys ?? 10_000
  }

  /** Counts one request; false when the key is over its limit for the current window. */
  take(key: string, now = Date.now()): boolean {
    let w = this.#windows.get(key)
    if (!w || now - w.start >= this.#windowMs) {
      // Bounded memory: when full, drop the oldest windows first (Map keeps insertion order).
      if (!w && this.#windows.size >= this.#maxKeys) this.#windows.delete(this.#windows.keys().next().value!)
      w = { start: now, count: 0 }
      this.#windows.delete(key)
      this.#windows.set(key, w)
    }
    w.count++
    return w.count <= this.#limit
  }

  /** Seconds until the key's window resets. */
  retryAfter(key: string, now = Date.now()): number {
    const w = this.#windows.get(key)
    return w ? Math.max(1, Math.ceil((w.start + this.#windowMs - now) / 1000)) : 1
  }
}

/** How many of something each key holds at once (open streams, uploads under way), capped per key. */
export class ConcurrencyLimit {
  readonly #max: number
  readonly #held = new Map<string, number>()

  constructor(max: number) {
    this.#max = max
  }

  held(key: string): number {
    return this.#held.get(key) ?? 0
  }

  /** Whether `key` already holds its maximum. */
  full(key: string): boolean {
    return this.held(key) >= this.#max
  }

  /** Takes one for `key` (the caller checked `full`); returns its release, which counts once however often it is called. */
  take(key: string): () => void {
    this.#held.set(key, this.held(key) + 1)
    let released = false
    return () => {
      if (released) return
      released = true
      const n = this.held(key) - 1
      if (n > 0) this.#held.set(key, n)
      else this.#held.delete(key)
    }
  }
}

/** Counts one request of `key`; over the limit, a 429 with Retry-After (RFC 6585 §4). */
export function takeOrRefuse(limiter: RateLimiter, key: string, message: string): void {
  if (!limiter.take(key)) throw new BffError('rate_limited', message, { retryAfter: limiter.retryAfter(key) })
}

/** A Hono middleware limiting requests per client address (see takeOrRefuse). */
export function rateLimit(limiter: RateLimiter, message: string): MiddlewareHandler<AppEnv> {
  return async function rateLimited(c, next) {
    takeOrRefuse(limiter, clientIp(c) ?? 'unknown', message)
    return next()
  }
}
