/**
 * Concurrent callers with the same key share one call: a keyed map of the
 * promises in flight, each removed as soon as it settles, so a rejection is
 * shared by the callers that were waiting and then forgotten (the next caller
 * starts afresh), and nothing is kept once the work is done.
 */
export class SingleFlight<K, V> {
  readonly #flights = new Map<K, Promise<V>>()
  readonly #limit: number
  readonly #full: () => Error

  /**
   * `limit`: at most this many different keys in flight at once; a call for a
   * new key beyond it is rejected with `full()` at once rather than joining a
   * pile-up. Callers joining a flight already under way are never refused.
   */
  constructor(options: { limit?: number; full?: () => Error } = {}) {
    this.#limit = options.limit ?? Infinity
    this.#full = options.full ?? (() => new Error('too many calls in flight'))
  }

  /** The call in flight for `key`, or a new one started with `start`. */
  run(key: K, start: () => Promise<V>): Promise<V> {
    const flying = this.#flights.get(key)
    if (flying) return flying
    if (this.#flights.size >= this.#limit) return Promise.reject(this.#full())
    let p: Promise<V>
    try {
      p = start()
    } catch (err) {
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- start's own throw, passed on unchanged as an async function would
      return Promise.reject(err)
    }
    this.#flights.set(key, p)
    const done = () => {
      if (this.#flights.get(key) === p) this.#flights.delete(key)
    }
    p.then(done, done)
    return p
  }

  /** The call in flight for `key`, if any. */
  get(key: K): Promise<V> | undefined {
    return this.#flights.get(key)
  }

  /** Keys in flight right now. */
  get size(): number {
    return this.#flights.size
  }
}
