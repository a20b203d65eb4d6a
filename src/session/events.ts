import type { Logger } from '../log.js'
import type { SessionEvent, SessionStore } from './store.js'

type Listener = (event: SessionEvent) => void

/**
 * Fans the store's cross-instance session events out to the open
 * `/auth/events` streams of this process. Subscribes on first use, so an
 * instance nobody listens to holds no subscriber connection.
 */
export class SessionEventHub {
  readonly #store: SessionStore
  readonly #logger: Logger
  readonly #listeners = new Map<string, Set<Listener>>()
  readonly #closers = new Set<() => void>()
  #subscription: Promise<() => Promise<void>> | undefined

  constructor(store: SessionStore, logger: Logger) {
    this.#store = store
    this.#logger = logger
  }

  /** Calls `listener` for events about `sid` until the returned function is called. */
  async listen(sid: string, listener: Listener): Promise<() => void> {
    this.#subscription ??= this.#store.subscribe((e) => this.#dispatch(e)).catch((err: unknown) => {
      this.#subscription = undefined
      throw err
    })
    await this.#subscription
    let set = this.#listeners.get(sid)
    if (!set) this.#listeners.set(sid, (set = new Set()))
    set.add(listener)
    return () => {
      set.delete(listener)
      if (set.size === 0 && this.#listeners.get(sid) === set) this.#listeners.delete(sid)
    }
  }

  /** Registers a stream to end when the server shuts down. */
  onClose(close: () => void): () => void {
    this.#closers.add(close)
    return () => this.#closers.delete(close)
  }

  /** Open listeners, for metrics and tests. */
  get size(): number {
    let n = 0
    for (const s of this.#listeners.values()) n += s.size
    return n
  }

  #dispatch(event: SessionEvent): void {
    for (const listener of this.#listeners.get(event.sid) ?? []) {
      try {
        listener(event)
      } catch (err) {
        this.#logger.warn({ reason: (err as Error).message }, 'session event listener failed')
      }
    }
  }

  async close(): Promise<void> {
    for (const close of [...this.#closers]) close()
    this.#closers.clear()
    const unsubscribe = await this.#subscription?.catch(() => undefined)
    this.#subscription = undefined
    await unsubscribe?.()
  }
}
