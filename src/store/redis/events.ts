import { Cluster } from 'ioredis'
import type { SessionEvent, SessionEventBus, SubscriptionHooks } from '../types.js'
import type { Client, RedisConnection } from './connection.js'

/** Where Redis sends CLIENT TRACKING invalidations for a RESP2 redirect target. */
const INVALIDATE_CHANNEL = '__redis__:invalidate'

/**
 * Session events on the channel `<prefix>events`, and, outside Cluster,
 * CLIENT TRACKING announcements of changes to the session keys this instance
 * read, on the same subscriber connection.
 */
export class RedisSessionEvents implements SessionEventBus {
  readonly coherentEvents: boolean
  readonly #c: RedisConnection
  /** Subscriber connections, ended by close() even while still connecting. */
  readonly #subscribers = new Set<Client>()

  constructor(connection: RedisConnection) {
    this.#c = connection
    // Standalone and Sentinel: commands and the subscription talk to the same
    // server, which writes a published message or a tracking invalidation into
    // every subscriber's socket before it answers the command that caused it. A
    // Cluster node forwards publishes over the bus later.
    this.coherentEvents = !(connection.redis instanceof Cluster)
  }

  async publish(event: SessionEvent): Promise<void> {
    await this.#c.run((redis) => redis.publish(this.#c.keys.channel, JSON.stringify(event)))
  }

  async subscribe(listener: (event: SessionEvent) => void, hooks: SubscriptionHooks = {}): Promise<() => Promise<void>> {
    const r = this.#c.redis
    const channel = this.#c.keys.channel
    // A subscribed connection can run nothing else, so it is a dedicated one.
    // RESP2: Redis delivers CLIENT TRACKING invalidations to a RESP2 client as
    // ordinary messages on __redis__:invalidate (ioredis drops RESP3
    // `invalidate` pushes). Subscriptions are renewed by hand after a reconnect,
    // because CLIENT ID must be asked before SUBSCRIBE.
    const sub =
      r instanceof Cluster
        ? r.duplicate(undefined, { enableOfflineQueue: true })
        : r.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null, autoResubscribe: false, protocol: 2 })
    this.#subscribers.add(sub)
    sub.on('error', () => {})
    const sessionKeyPrefix = this.#c.keys.sessionPrefix
    sub.on('messageBuffer', (name: Buffer, message: Buffer | Buffer[] | null) => {
      const from = name.toString()
      if (from === INVALIDATE_CHANNEL) {
        // null: the whole database was flushed.
        if (message === null) return hooks.onInvalidate?.(null)
        for (const key of Array.isArray(message) ? message : [message]) {
          const k = key.toString()
          if (k.startsWith(sessionKeyPrefix) && k.endsWith('}')) hooks.onInvalidate?.(k.slice(sessionKeyPrefix.length, -1))
        }
        return
      }
      if (from !== channel || !Buffer.isBuffer(message)) return
      try {
        const e = JSON.parse(message.toString()) as SessionEvent
        if (typeof e.sid === 'string' && e.type === 'session_ended') listener(e)
      } catch {
        // Not ours: ignore.
      }
    })

    const release = () => {
      this.#subscribers.delete(sub)
      // A message already on the wire may still arrive while the connection
      // closes: an unsubscribed listener must hear nothing more.
      sub.removeAllListeners('messageBuffer')
      sub.disconnect()
    }
    if (r instanceof Cluster) {
      // Events only: a Cluster node forwards publishes over its bus after
      // answering, so they cannot vouch for a cached read (coherentEvents).
      try {
        await sub.subscribe(channel)
      } catch (err) {
        release()
        throw err
      }
      return async () => release()
    }

    // "Up" means: subscribed, and the command connection has CLIENT TRACKING
    // on with invalidations redirected to this subscriber, so any change to a
    // session key this instance has read (by any client: another instance, an
    // operator, FLUSHALL) is announced here before the change is acknowledged.
    // Every connection loss on either side ends "up"; `generation` makes a
    // setup that overlapped one start again instead of declaring "up".
    let up = false
    let stopped = false
    let generation = 0
    let subId: string | undefined
    let trackingRefused = false
    /**
     * Redis said no to CLIENT ID or CLIENT TRACKING (before Redis 6, or an ACL
     * without CLIENT): events still work, the cache stays off, said once. Any
     * other failure is a lost connection, and its next 'ready' tries again.
     */
    const refused = (err: unknown): boolean => {
      if (!(err instanceof Error && /^(NOPERM|ERR)\b/.test(err.message))) return false
      if (!trackingRefused) hooks.onTrackingUnavailable?.(err.message)
      trackingRefused = true
      return true
    }
    const down = () => {
      generation++
      if (!up) return
      up = false
      hooks.onDown?.()
    }
    const track = async (gen: number) => {
      if (subId === undefined) return
      try {
        await r.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', subId, 'NOLOOP')
      } catch (err) {
        refused(err)
        return
      }
      if (!stopped && gen === generation && sub.status === 'ready' && r.status === 'ready' && !up) {
        up = true
        hooks.onUp?.()
      }
    }
    const subscribeAll = async () => {
      const gen = generation
      let id: string | undefined
      try {
        id = String(await sub.client('ID'))
      } catch (err) {
        if (!refused(err)) throw err
      }
      subId = id
      await (id === undefined ? sub.subscribe(channel) : sub.subscribe(channel, INVALIDATE_CHANNEL))
      await track(gen)
    }
    const onSubLost = () => {
      subId = undefined
      down()
    }
    const onSubReady = () => void subscribeAll().catch(() => {}) // a failure is a lost connection: 'ready' comes again
    const onMainLost = () => down()
    const onMainReady = () => void track(generation)
    try {
      await subscribeAll()
    } catch (err) {
      release()
      throw err
    }
    sub.on('close', onSubLost)
    sub.on('end', onSubLost)
    sub.on('reconnecting', onSubLost)
    sub.on('ready', onSubReady)
    r.on('close', onMainLost)
    r.on('ready', onMainReady)
    return async () => {
      stopped = true
      down()
      r.off('close', onMainLost)
      r.off('ready', onMainReady)
      release()
    }
  }

  /** Ends every subscriber connection (the store is closing). */
  close(): void {
    for (const sub of this.#subscribers) sub.disconnect()
    this.#subscribers.clear()
  }
}
