/**
 * A small bounded map with least-recently-used eviction and an optional
 * time-to-live, for per-process caches on the request path. Map keeps insertion
 * order, so re-inserting on read makes the first key the least recently used.
 */
export class Lru<K, V> {
  readonly #max: number
  readonly #ttlMs: number
  readonly #map = new Map<K, { value: V; until: number }>()

  constructor(max: number, ttlMs = Infinity) {
    this.#max = max
    this.#ttlMs = ttlMs
  }

  get(key: K, now = Date.now()): V | undefined {
    const hit = this.#map.get(key)
    if (!hit) return undefined
    this.#map.delete(key)
    if (hit.until <= now) return undefined
    this.#map.set(key, hit)
    return hit.value
  }

  set(key: K, value: V, now = Date.now()): void {
    this.#map.delete(key)
    this.#map.set(key, { value, until: now + this.#ttlMs })
    if (this.#map.size > this.#max) this.#map.delete(this.#map.keys().next().value!)
  }

  delete(key: K): void {
    this.#map.delete(key)
  }

  clear(): void {
    this.#map.clear()
  }

  get size(): number {
    return this.#map.size
  }
}
