// ioredis: the maintained Redis client for Node with Sentinel, Cluster, TLS and Lua
// script support (EVALSHA with automatic fallback), all of which the session store needs.
import { createHash } from 'node:crypto'
import { Cluster, Redis, type RedisOptions } from 'ioredis'
import type { Config } from '../../config.js'
import { SessionStoreUnavailableError } from '../../errors.js'
import type { IndexKind } from '../types.js'
import { ACQUIRE_SCRIPT, INDEX_ADD_SCRIPT, JOURNAL_SCRIPT, READ_SCRIPT, RELEASE_SCRIPT, RENEW_SCRIPT, REPLACE_SCRIPT } from './scripts.js'

export type Client = Redis | Cluster

const READY_WAIT_MS = 1500

interface ScriptCommands {
  twRead(key: string, now: number, slide: number): Promise<[Buffer, number] | null>
  twReadBuffer(key: string, now: number, slide: number): Promise<[Buffer, number] | null>
  twReplace(session: string, journal: string, expected: number, value: Buffer, maxTtl: number, slide: number): Promise<number>
  twJournal(lock: string, journal: string, token: string, version: number, ttl: number): Promise<number>
  twAcquire(lock: string, journal: string, token: string, lease: number): Promise<[number, string | null]>
  twRenew(lock: string, token: string, lease: number): Promise<number>
  twRelease(lock: string, token: string): Promise<number>
  twIndexAdd(index: string, sid: string, ttl: number): Promise<number>
}

export type ScriptedClient = Client & ScriptCommands

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
    return new Cluster(
      config.nodes.map((n) => ({ host: n.host, port: n.port })),
      {
        redisOptions: options,
        enableOfflineQueue: false,
      },
    )
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

const hashed = (value: string) => createHash('sha256').update(value).digest('base64url')

/**
 * Key names under the configured prefix. They are part of the stored data's
 * format: existing sessions and Redis Cluster slots depend on them, so they
 * never change. The hash tag `{sid}` keeps a session's keys in one Cluster slot,
 * so scripts that touch several of them stay legal.
 */
export class RedisKeys {
  constructor(readonly prefix: string) {}

  session(sid: string): string {
    return `${this.prefix}s:{${sid}}`
  }

  /** What every session key starts with (for SCAN and tracking invalidations). */
  get sessionPrefix(): string {
    return `${this.prefix}s:{`
  }

  lock(sid: string): string {
    return `${this.prefix}l:{${sid}}`
  }

  journal(sid: string): string {
    return `${this.prefix}j:{${sid}}`
  }

  // Index values (a `sub`, an IdP `sid`) and one-time ids are hashed: no
  // personal data or arbitrary characters in key names.
  index(kind: IndexKind, value: string): string {
    return `${this.prefix}x:${kind}:${hashed(value)}`
  }

  once(id: string): string {
    return `${this.prefix}once:${hashed(id)}`
  }

  transaction(id: string): string {
    return `${this.prefix}t:${id}`
  }

  get channel(): string {
    return `${this.prefix}events`
  }
}

/**
 * One Redis client shared by every concern of the store: the scripts defined
 * on it, the key names, and the rule that turns any failure into a bounded
 * SessionStoreUnavailableError (a 503 that keeps the cookie).
 */
export class RedisConnection {
  readonly redis: ScriptedClient
  readonly keys: RedisKeys
  readonly #onError: () => void
  /**
   * Without an offline queue, a command sent while the client is still
   * connecting (at startup, or reconnecting after an outage) fails at once. Wait
   * a bounded moment for the connection instead, so a blip is not a 503 and an
   * outage still is, within READY_WAIT_MS.
   */
  #readyWait: Promise<void> | undefined

  constructor(redis: Client, prefix: string, options: { onError?: () => void } = {}) {
    this.#onError = options.onError ?? (() => {})
    redis.defineCommand('twRead', { numberOfKeys: 1, lua: READ_SCRIPT })
    redis.defineCommand('twReplace', { numberOfKeys: 2, lua: REPLACE_SCRIPT })
    redis.defineCommand('twAcquire', { numberOfKeys: 2, lua: ACQUIRE_SCRIPT })
    redis.defineCommand('twJournal', { numberOfKeys: 2, lua: JOURNAL_SCRIPT })
    redis.defineCommand('twRenew', { numberOfKeys: 1, lua: RENEW_SCRIPT })
    redis.defineCommand('twRelease', { numberOfKeys: 1, lua: RELEASE_SCRIPT })
    redis.defineCommand('twIndexAdd', { numberOfKeys: 1, lua: INDEX_ADD_SCRIPT })
    this.redis = redis as ScriptedClient
    this.keys = new RedisKeys(prefix)
    // Connection errors surface per command as 503s; an 'error' listener keeps
    // ioredis from reporting them as unhandled.
    redis.on('error', () => {})
  }

  #ready(): Promise<void> {
    const r = this.redis
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

  /** Runs `op` once connected; any failure becomes SessionStoreUnavailableError. */
  async run<T>(op: (redis: ScriptedClient) => Promise<T>): Promise<T> {
    try {
      await this.#ready()
      return await op(this.redis)
    } catch (cause) {
      this.#onError()
      throw new SessionStoreUnavailableError({ cause, logDetail: cause instanceof Error ? cause.message : String(cause) })
    }
  }
}
