import { clientAddressResolver } from './client-address.js'
import type { Config } from './config.js'
import { Keyring } from './crypto/keyring.js'
import type { Logger } from './log.js'
import { Metrics } from './metrics.js'
import { OidcClient, type OidcClientOptions } from './oidc/client.js'
import { SessionTerminator } from './lifecycle/terminate.js'
import { CookieSealer } from './session/cookie.js'
import { DeviceBinding } from './session/dbsc.js'
import { SessionManager } from './session/sessions.js'
import { SessionEventHub } from './session/events.js'
import { TransactionStore } from './session/transactions.js'
import { MemoryStore } from './store/memory/store.js'
import { createRedisClient, RedisStore } from './store/redis/store.js'
import type { Store } from './store/types.js'
import { ClientTokenService } from './tokens/client-credentials.js'
import { TokenExchanger } from './tokens/exchange.js'
import { RefreshLease } from './tokens/lease.js'
import { TokenService } from './tokens/refresh.js'
import type { Deps } from './types.js'
import { retirePools } from './proxy/pool.js'
import { ClientTls } from './tls/client-tls.js'

export interface DepsOptions {
  logger: Logger
  /** An existing store (tests, demo); otherwise Redis from the configuration. */
  store?: Store | 'redis' | 'memory'
  oidc?: OidcClientOptions
  now?: () => number
  /**
   * The frontend's name when BFF_CONFIG_FILE declares the frontends: binds its
   * cookies (security model S89) and labels its metrics. Undefined without the file.
   */
  frontend?: string
}

export function createStore(config: Config, kind: 'redis' | 'memory', metrics?: Metrics): Store {
  if (kind === 'memory') return new MemoryStore()
  return new RedisStore(createRedisClient(config.redis), config.redis.prefix, { onError: () => metrics?.storeErrors.inc() })
}

/** Counting sessions scans the store: do it at most every 30 s, whatever the scrape rate. */
function cachedCount(count: () => Promise<number | undefined>): () => Promise<number | undefined> {
  let last: { at: number; value: Promise<number | undefined> } | undefined
  return () => {
    if (!last || Date.now() - last.at > 30_000) last = { at: Date.now(), value: count().catch(() => undefined) }
    return last.value
  }
}

/** Wires the dependencies once at startup. Does not wait for Redis or the IdP. */
export function createDeps(config: Config, options: DepsOptions): Deps {
  const now = options.now ?? Date.now
  const { logger } = options
  // The store reports to the metrics, and the metrics count the store's sessions:
  // that count is read when the metrics are scraped, after `store` is set below.
  const metrics = new Metrics({ activeSessions: cachedCount(() => store.records.count()), frontend: options.frontend })
  const store: Store = typeof options.store === 'object' ? options.store : createStore(config, options.store ?? 'redis', metrics)
  const keyring = new Keyring(config.encryptionKeys)
  const sessions = new SessionManager({
    store,
    keyring,
    idleTimeoutMs: config.session.idleTimeout * 1000,
    maxAgeMs: config.session.maxAge * 1000,
    cacheMs: config.session.cacheMs,
    now,
    onUndecryptable: (sid, err) => logger.warn({ sid, reason: err.message }, 'session entry cannot be decrypted; treated as no session'),
  })
  // Read once here (loadConfig checked the files); reloaded by watch() and SIGHUP (server.ts, cli.ts).
  const tls = config.tls ? new ClientTls(config.tls, logger) : undefined
  if (tls) {
    tls.onRetire(retirePools)
    metrics.clientCertificate(config.clientAuth, () => tls.pair?.notAfter)
  } else metrics.clientCertificate(config.clientAuth, () => undefined)
  const oidc = new OidcClient(config, { timeout: 10, logger, metrics, tls, ...options.oidc })
  const terminator = new SessionTerminator({ sessions, events: store.events, oidc, logger })
  // One lease for refresh and token exchange alike: both write the session, and a write clears the refresh journal.
  const lease = new RefreshLease({ leases: store.leases, leaseMs: 5000, logger, now })
  const cookies = new CookieSealer(config.cookieSecrets, options.frontend)
  const maxInflight = 1000
  const tokens = new TokenService({ config, sessions, oidc, logger, terminator, lease, metrics, now, maxInflight })
  return {
    config,
    logger,
    store,
    sessions,
    oidc,
    cookies,
    tokens,
    lease,
    exchangedTokens: new TokenExchanger({ config, sessions, oidc, logger, now, tokens, lease, maxInflight }),
    clientTokens: new ClientTokenService({ oidc, logger, skewSeconds: config.refreshSkew, now }),
    transactions: new TransactionStore(store.transactions, keyring),
    terminator,
    events: new SessionEventHub(store.events, logger),
    metrics,
    dbsc: new DeviceBinding({ config, cookies, challenges: store.transactions, now }),
    clientAddress: clientAddressResolver(config.trustedProxies),
    tls,
    now,
  }
}
