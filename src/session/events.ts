import type { Logger } from '../log.js'
import type { SessionManager } from './sessions.js'
import type { SessionEvent, SessionEventBus } from '../store/types.js'

type Listener = (event: SessionEvent) => void

/**
 * Fans the store's cross-instance session events out to the open
 * `/auth/events` streams of this process. Subscribes on first use, so an
 * instance nobody listens to holds no subscriber connection.
 */
export class SessionEventHub {
  readonly #store: SessionEventBus
  readonly #logger: Logger
  readonly #listeners = new Map<string, Set<Listener>>()
  readonly #closers = new Set<() => void>()
  #subscription: Promise<() => Promise<void>> | undefined
  /** Whether the subscription currently delivers every event. */
  #up = false
  #sessions: SessionManager | undefined

  constructor(store: SessionEventBus, logger: Logger) {
    this.#store = store
    this.#logger = logger
  }

  #subscribe(): Promise<() => Promise<void>> {
    this.#subscription ??= this.#store
      .subscribe((e) => this.#dispatch(e), {
        onUp: () => {
          this.#up = true
          this.#sessions?.enableCache()
        },
        onDown: () => {
          this.#up = false
          this.#sessions?.disableCache()
        },
        onInvalidate: (sid) => this.#sessions?.invalidate(sid),
        onTrackingUnavailable: (reason) =>
          this.#logger.warn(
            { reason },
            'Redis cannot track reads (CLIENT TRACKING, Redis 6+): sessions are read from Redis on every request',
          ),
      })
      .catch((err: unknown) => {
        this.#subscription = undefined
        throw err
      })
    return this.#subscription
  }

  /**
   * Lets `sessions` answer requests from memory while, and only while, every
   * session_ended event reaches this instance (see SessionManager#opened).
   * Subscribes now; resolves once subscribed. A store whose events can lag
   * behind its writes (Redis Cluster) keeps every request reading the store.
   */
  async keepCoherent(sessions: SessionManager): Promise<void> {
    if (!this.#store.coherentEvents) return
    this.#sessions = sessions
    await this.#subscribe()
    if (this.#up) sessions.enableCache()
  }

  /** Calls `listener` for events about `sid` until the returned function is called. */
  async listen(sid: string, listener: Listener): Promise<() => void> {
    await this.#subscribe()
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
    // First, so that nothing this process does from here on sees the session.
    this.#sessions?.invalidate(event.sid)
    for (const listener of this.#listeners.get(event.sid) ?? []) {
      try {
        listener(event)
      } catch (err) {
        this.#logger.warn({ reason: (err as Error).message }, 'session event listener failed')
      }
    }
  }

  async close(): Promise<void> {
    this.#sessions?.disableCache()
    this.#sessions = undefined
    for (const close of [...this.#closers]) close()
    this.#closers.clear()
    const pending = this.#subscription
    this.#subscription = undefined
    this.#up = false
    if (!pending) return
    // A subscription still connecting (Redis down) is not waited for long: it
    // ends itself when it connects, and the store's close() drops its socket.
    const unsubscribed = pending.then(
      (unsubscribe) => unsubscribe(),
      () => {},
    )
    let timer: NodeJS.Timeout | undefined
    await Promise.race([unsubscribed, new Promise<void>((resolve) => (timer = setTimeout(resolve, 500).unref()))])
    clearTimeout(timer)
  }
}
