// ioredis: the maintained Redis client for Node with Sentinel, Cluster, TLS and Lua
// script support (EVALSHA with automatic fallback), all of which the session store needs.
import { createHash } from 'node:crypto'
import { Cluster, Redis, type RedisOptions } from 'ioredis'
import type { Config } from '../config.js'
import { SessionStoreUnavailableError } from '../errors.js'
import { ACQUIRE_SCRIPT, INDEX_ADD_SCRIPT, READ_SCRIPT, RELEASE_SCRIPT, RENEW_SCRIPT, REPLACE_SCRIPT } from './redis-scripts.js'
import {
  decodeEntry,
  encodeEntry,
  type IndexKind,
  type ReadOptions,
  type ReplaceResult,
  type SessionEvent,
  type SessionStore,
  type StoredEntry,
  type SubscriptionHooks,
} from './store.js'

type Client = Redis | Cluster

const READY_WAIT_MS = 1500

/** Where Redis sends CLIENT TRACKING invalidations for a RESP2 redirect target. */
const INVALIDATE_CHANNEL = '__redis__:invalidate'

interface ScriptCommands {
  twRead(key: string, now: number, slide: number): Promise<[Buffer, number] | null>
  twReadBuffer(key: string, now: number, slide: number): Promise<[Buffer, number] | null>
  twReplace(session: string, journal: string, expected: number, value: Buffer, maxTtl: number): Promise<number>
  twAcquire(lock: string, journal: string, token: string, lease: number): Promise<[number, string | null]>
  twRenew(lock: string, token: string, lease: number): Promise<number>
  twRelease(lock: string, token: string): Promise<number>
  twIndexAdd(index: string, sid: string, ttl: number): Promise<number>
}

/** Connection options that fail fast instead of queueing forever (security model S66). */
export function redisOptions(): RedisOptions {
  return {
    // Without this ioredis queues commands while disconnected and requests hang;
    // we answer 503 within a bounded time instead and keep the cookie.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 2000,
    connectTimeout: 2000,
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 5), 1000),
  }
}

export function createRedisClient(config: Config['redis']): Client {
  const options = redisOptions()
  if (config.mode === 'cluster') {
    return new Cluster(config.nodes.map((n) => ({ host: n.host, port: n.port })), {
      redisOptions: options,
      enableOfflineQueue: false,
    })
  }
  if (config.mode === 'sentinel') {
    const url = new URL(config.url)
    return new Redis({
      ...options,
      sentinels: config.nodes.map((n) => ({ host: n.host, port: n.port })),
      name: config.sentinelName ?? 'mymaster',
      // Follow +switch-master at once: without it the client keeps writing to the
      // demoted master until the sentinel reconfigures it, and those writes (a
      // new login, a rotated refresh token) are lost in the resync.
      failoverDetector: true,
      password: url.password ? decodeURIComponent(url.password) : undefined,
      username: url.username ? decodeURIComponent(url.username) : undefined,
      ...(url.protocol === 'rediss:' ? { tls: {} } : {}),
    })
  }
  return new Redis(config.url, options)
}

export class RedisSessionStore implements SessionStore {
  readonly kind = 'redis'
  readonly coherentEvents: boolean
  readonly #redis: Client & ScriptCommands
  readonly #prefix: string

  readonly #onError: () => void
  /** Subscriber connections, ended by close() even while still connecting. */
  readonly #subscribers = new Set<Client>()

  constructor(redis: Client, prefix: string, options: { onError?: () => void } = {}) {
    this.#onError = options.onError ?? (() => {})
    redis.defineCommand('twRead', { numberOfKeys: 1, lua: READ_SCRIPT })
    redis.defineCommand('twReplace', { numberOfKeys: 2, lua: REPLACE_SCRIPT })
    redis.defineCommand('twAcquire', { numberOfKeys: 2, lua: ACQUIRE_SCRIPT })
    redis.defineCommand('twRenew', { numberOfKeys: 1, lua: RENEW_SCRIPT })
    redis.defineCommand('twRelease', { numberOfKeys: 1, lua: RELEASE_SCRIPT })
    redis.defineCommand('twIndexAdd', { numberOfKeys: 1, lua: INDEX_ADD_SCRIPT })
    this.#redis = redis as Client & ScriptCommands
    this.#prefix = prefix
    // Standalone and Sentinel: commands and the subscription talk to the same
    // server, which writes a published message or a tracking invalidation into
    // every subscriber's socket before it answers the command that caused it. A
    // Cluster node forwards publishes over the bus later.
    this.coherentEvents = !(redis instanceof Cluster)
    // Connection errors surface per command as 503s; an 'error' listener keeps
    // ioredis from reporting them as unhandled.
    redis.on('error', () => {})
  }

  get client(): Client {
    return this.#redis
  }

  // The hash tag keeps a session's keys in one Cluster slot, so scripts that touch
  // several of them stay legal.
  #sessionKey(sid: string): string {
    return `${this.#prefix}s:{${sid}}`
  }

  #lockKey(sid: string): string {
    return `${this.#prefix}l:{${sid}}`
  }

  #journalKey(sid: string): string {
    return `${this.#prefix}j:{${sid}}`
  }

  // Index values (a `sub`, an IdP `sid`) are hashed: no personal data or
  // arbitrary characters in key names.
  #indexKey(kind: IndexKind, value: string): string {
    return `${this.#prefix}x:${kind}:${createHash('sha256').update(value).digest('base64url')}`
  }

  #transactionKey(id: string): string {
    return `${this.#prefix}t:${id}`
  }

  /**
   * Without an offline queue, a command sent while the client is still
   * connecting (at startup, or reconnecting after an outage) fails at once. Wait
   * a bounded moment for the connection instead, so a blip is not a 503 and an
   * outage still is, within READY_WAIT_MS.
   */
  #readyWait: Promise<void> | undefined

  #ready(): Promise<void> {
    const r = this.#redis
    if (r.status === 'ready') return Promise.resolve()
    if (r.status === 'end' || r.status === 'close') return Promise.reject(new Error(`redis connection is ${r.status}`))
    // One listener for every waiting command, however many there are.
    this.#readyWait ??= new Promise<void>((resolve, reject) => {
      const done = (err?: Error) => {
        clearTimeout(timer)
        r.off('ready', onReady)
        this.#readyWait = undefined
        if (err) reject(err)
        else resolve()
      }
      const onReady = () => done()
      const timer = setTimeout(() => done(new Error('redis not ready')), READY_WAIT_MS)
      r.once('ready', onReady)
    })
    return this.#readyWait
  }

  async #run<T>(op: () => Promise<T>): Promise<T> {
    try {
      await this.#ready()
      return await op()
    } catch (cause) {
      this.#onError()
      throw new SessionStoreUnavailableError({ cause, logDetail: cause instanceof Error ? cause.message : String(cause) })
    }
  }

  async createSession(sid: string, entry: StoredEntry, ttlMs: number): Promise<boolean> {
    const ttl = Math.max(1, Math.min(ttlMs, entry.absExp - Date.now()))
    const r = await this.#run(() => this.#redis.set(this.#sessionKey(sid), encodeEntry(entry), 'PX', ttl, 'NX'))
    return r === 'OK'
  }

  async readSession(sid: string, { slideMs, now }: ReadOptions): Promise<{ entry: StoredEntry; ttlMs: number } | null> {
    const r = await this.#run(() => this.#redis.twReadBuffer(this.#sessionKey(sid), now, slideMs))
    if (!r) return null
    const entry = decodeEntry(r[0])
    return entry ? { entry, ttlMs: Number(r[1]) } : null
  }

  async replaceSession(sid: string, expectedVersion: number, entry: StoredEntry, maxTtlMs: number): Promise<ReplaceResult> {
    const r = await this.#run(() =>
      this.#redis.twReplace(this.#sessionKey(sid), this.#journalKey(sid), expectedVersion, encodeEntry(entry), Math.max(1, Math.floor(maxTtlMs))),
    )
    return r === 1 ? 'ok' : r === -1 ? 'conflict' : 'missing'
  }

  async deleteSession(sid: string): Promise<boolean> {
    // Sent together without waiting in between; the session key's result is the answer.
    const [deleted] = await this.#run(() =>
      Promise.all([this.#redis.del(this.#sessionKey(sid)), this.#redis.del(this.#lockKey(sid)), this.#redis.del(this.#journalKey(sid))]),
    )
    return deleted > 0
  }

  async acquireRefreshLock(sid: string, token: string, leaseMs: number): Promise<{ acquired: boolean; journal: number | null }> {
    const [ok, journal] = await this.#run(() => this.#redis.twAcquire(this.#lockKey(sid), this.#journalKey(sid), token, leaseMs))
    return { acquired: ok === 1, journal: journal === null ? null : Number(journal) }
  }

  async renewRefreshLock(sid: string, token: string, leaseMs: number): Promise<boolean> {
    return (await this.#run(() => this.#redis.twRenew(this.#lockKey(sid), token, leaseMs))) === 1
  }

  async releaseRefreshLock(sid: string, token: string): Promise<void> {
    await this.#run(() => this.#redis.twRelease(this.#lockKey(sid), token))
  }

  async writeRefreshJournal(sid: string, version: number, ttlMs: number): Promise<void> {
    await this.#run(() => this.#redis.set(this.#journalKey(sid), String(version), 'PX', Math.max(1, Math.floor(ttlMs))))
  }

  async clearRefreshJournal(sid: string): Promise<void> {
    await this.#run(() => this.#redis.del(this.#journalKey(sid)))
  }

  async addToIndex(kind: IndexKind, value: string, sid: string, absExp: number): Promise<void> {
    await this.#run(() => this.#redis.twIndexAdd(this.#indexKey(kind, value), sid, Math.max(1000, absExp - Date.now())))
  }

  async removeFromIndex(kind: IndexKind, value: string, sid: string): Promise<void> {
    await this.#run(() => this.#redis.srem(this.#indexKey(kind, value), sid))
  }

  async readIndex(kind: IndexKind, value: string): Promise<string[]> {
    const key = this.#indexKey(kind, value)
    const sids = await this.#run(() => this.#redis.smembers(key))
    // Members live in other Cluster slots than the index, so no script: check
    // each session key, then prune the ones that expired.
    const exists = await this.#run(() => Promise.all(sids.map((sid) => this.#redis.exists(this.#sessionKey(sid)))))
    const gone = sids.filter((_, i) => exists[i] === 0)
    if (gone.length > 0) await this.#run(() => this.#redis.srem(key, ...gone))
    return sids.filter((_, i) => exists[i] === 1)
  }

  async rememberOnce(id: string, ttlMs: number): Promise<boolean> {
    const key = `${this.#prefix}once:${createHash('sha256').update(id).digest('base64url')}`
    return (await this.#run(() => this.#redis.set(key, '1', 'PX', Math.max(1000, Math.floor(ttlMs)), 'NX'))) === 'OK'
  }

  async publish(event: SessionEvent): Promise<void> {
    await this.#run(() => this.#redis.publish(this.#channel, JSON.stringify(event)))
  }

  async subscribe(listener: (event: SessionEvent) => void, hooks: SubscriptionHooks = {}): Promise<() => Promise<void>> {
    const r = this.#redis
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
    const sessionKeyPrefix = `${this.#prefix}s:{`
    sub.on('messageBuffer', (channel: Buffer, message: Buffer | Buffer[] | null) => {
      const name = channel.toString()
      if (name === INVALIDATE_CHANNEL) {
        // null: the whole database was flushed.
        if (message === null) return hooks.onInvalidate?.(null)
        for (const key of Array.isArray(message) ? message : [message]) {
          const k = key.toString()
          if (k.startsWith(sessionKeyPrefix) && k.endsWith('}')) hooks.onInvalidate?.(k.slice(sessionKeyPrefix.length, -1))
        }
        return
      }
      if (name !== this.#channel || !Buffer.isBuffer(message)) return
      try {
        const e = JSON.parse(message.toString()) as SessionEvent
        if (typeof e.sid === 'string' && e.type === 'session_ended') listener(e)
      } catch {
        // Not ours: ignore.
      }
    })

    const release = () => {
      this.#subscribers.delete(sub)
      sub.disconnect()
    }
    if (r instanceof Cluster) {
      // Events only: a Cluster node forwards publishes over its bus after
      // answering, so they cannot vouch for a cached read (coherentEvents).
      try {
        await sub.subscribe(this.#channel)
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
      await (id === undefined ? sub.subscribe(this.#channel) : sub.subscribe(this.#channel, INVALIDATE_CHANNEL))
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

  get #channel(): string {
    return `${this.#prefix}events`
  }

  async countSessions(): Promise<number | undefined> {
    const r = this.#redis
    // Cluster: each master holds a share of the keys.
    const nodes = r instanceof Cluster ? r.nodes('master') : [r]
    let n = 0
    for (const node of nodes) {
      let cursor = '0'
      do {
        const [next, keys] = await this.#run(() => node.scan(cursor, 'MATCH', `${this.#prefix}s:*`, 'COUNT', 1000))
        cursor = next
        n += keys.length
      } while (cursor !== '0')
    }
    return n
  }

  async putTransaction(id: string, payload: Buffer, ttlMs: number): Promise<void> {
    await this.#run(() => this.#redis.set(this.#transactionKey(id), payload, 'PX', ttlMs))
  }

  async takeTransaction(id: string): Promise<Buffer | null> {
    return this.#run(() => this.#redis.getdelBuffer(this.#transactionKey(id)))
  }

  async ping(): Promise<void> {
    await this.#run(() => this.#redis.ping())
  }

  async close(): Promise<void> {
    for (const sub of this.#subscribers) sub.disconnect()
    this.#subscribers.clear()
    try {
      await this.#redis.quit()
    } catch {
      this.#redis.disconnect()
    }
  }
}
