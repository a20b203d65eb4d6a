// iron-session: authenticated encryption (iron) of the small cookie payload, with
// TTL inside the seal; we use its seal/unseal primitives only, as the cookie carries
// nothing but an opaque handle.
import { sealData, unsealData } from 'iron-session'
import type { Config } from '../config.js'
import { Lru } from '../lru.js'
import { SingleFlight } from '../single-flight.js'

/**
 * Seals and unseals cookie payloads. The first secret seals; every secret is tried
 * on unseal, so operators rotate by prepending a new secret and later dropping the
 * old one (iron-session's numbered password ids depend on list positions, which
 * would break when the oldest secret is removed).
 */
export class CookieSealer {
  readonly #secrets: readonly string[]
  /**
   * The frontend this sealer belongs to (BFF_CONFIG_FILE): sealed into every
   * payload and required on unseal, so a cookie of one frontend is no cookie
   * at another even when both use the same secret (security model S89).
   * Undefined without the file: payloads are exactly as before.
   */
  readonly #frontend: string | undefined
  /**
   * Unsealing derives keys with PBKDF2 on every call, which profiling showed to
   * be the largest per-request cost of a proxied call. A seal is immutable, so
   * the result for a given cookie value can be reused: only successful unseals
   * are kept, for at most a minute, in a bounded LRU.
   */
  readonly #cache = new Lru<string, Readonly<Record<string, unknown>>>(10_000, 60_000)

  constructor(secrets: readonly string[], frontend?: string) {
    if (secrets.length === 0) throw new Error('at least one cookie secret is required')
    this.#secrets = secrets
    this.#frontend = frontend
  }

  seal(data: Record<string, unknown>, ttlSeconds: number): Promise<string> {
    const payload = this.#frontend === undefined ? data : { ...data, fe: this.#frontend }
    return sealData(payload, { password: this.#secrets[0]!, ttl: ttlSeconds })
  }

  /**
   * Null for anything that is not a live seal of ours: tampered, foreign, or
   * expired (iron allows 60 s of clock skew; the server-side TTLs are what
   * actually bound a session or transaction).
   */
  async unseal<T extends Record<string, unknown>>(value: string | undefined, ttlSeconds: number): Promise<T | null> {
    // A seal is a few hundred bytes; refuse anything large before doing crypto on it.
    // Exactly the shape seal() produces: iron-session would ignore anything
    // appended after its `~2` version suffix.
    if (!value || value.length > 2048 || !/^Fe26\.2\*[\w*-]+~2$/.test(value)) return null
    const hit = this.#cache.get(value)
    if (hit) return hit as T
    // Concurrent requests with the same new cookie (a page's burst of calls,
    // a refresh storm) share one unseal.
    return (await this.#unsealing.run(value, () => this.#unsealOnce(value, ttlSeconds))) as T | null
  }

  readonly #unsealing = new SingleFlight<string, Readonly<Record<string, unknown>> | null>()

  async #unsealOnce(value: string, ttlSeconds: number): Promise<Readonly<Record<string, unknown>> | null> {
    for (const password of this.#secrets) {
      try {
        const data = await unsealData<Record<string, unknown>>(value, { password, ttl: ttlSeconds })
        // Another frontend's seal (or one from before BFF_CONFIG_FILE) is not ours.
        if (data && Object.keys(data).length > 0 && data.fe === this.#frontend) {
          const frozen = Object.freeze(data)
          this.#cache.set(value, frozen)
          return frozen
        }
      } catch {
        // A malformed seal: try the next secret, then give up.
      }
    }
    return null
  }
}

export interface CookieOptions {
  maxAge: number
  sameSite: 'Strict' | 'Lax'
}

/**
 * Builds a Set-Cookie value. `__Host-` cookies must be Secure, Path=/ and carry no
 * Domain (RFC 6265bis §4.1.3.2); HttpOnly keeps the handle from scripts
 * (draft-ietf-oauth-browser-based-apps §6.1.3.2, security model S14, S15).
 * A frontend at a path base scopes its cookies to the base (security model S92).
 */
export function serializeCookie(config: Config, name: string, value: string, options: CookieOptions): string {
  const parts = [`${name}=${value}`, `Path=${config.cookie.path}`, `Max-Age=${Math.max(0, Math.floor(options.maxAge))}`, 'HttpOnly']
  if (config.cookie.secure) parts.push('Secure')
  parts.push(`SameSite=${options.sameSite}`)
  return parts.join('; ')
}

/** Same name, Path and Secure as when set, Max-Age=0 (security model S23). */
export function clearCookie(config: Config, name: string, sameSite: 'Strict' | 'Lax'): string {
  return serializeCookie(config, name, '', { maxAge: 0, sameSite })
}
