import type { HttpBindings } from '@hono/node-server'
import type { ClientAddress, ClientAddressResolver } from './client-address.js'
import type { Config } from './config.js'
import type { CookieSealer } from './session/cookie.js'
import type { DeviceBinding } from './session/dbsc.js'
import type { SessionManager } from './session/sessions.js'
import type { OidcClient } from './oidc/client.js'
import type { Logger } from './log.js'
import type { Metrics } from './metrics.js'
import type { TokenService } from './tokens/refresh.js'
import type { RefreshLease } from './tokens/lease.js'
import type { ClientTokenService } from './tokens/client-credentials.js'
import type { TokenExchanger } from './tokens/exchange.js'
import type { TransactionStore } from './session/transactions.js'
import type { SessionTerminator } from './lifecycle/terminate.js'
import type { SessionEventHub } from './session/events.js'
import type { Store } from './store/types.js'
import type { ClientTls } from './tls/client-tls.js'

/** Everything the app needs, built once by createDeps (or by tests). */
export interface Deps {
  readonly config: Config
  readonly logger: Logger
  /** The backend (Redis or memory): for health checks and shutdown; the services below take the parts they use. */
  readonly store: Store
  readonly sessions: SessionManager
  readonly oidc: OidcClient
  readonly cookies: CookieSealer
  readonly tokens: TokenService
  /**
   * The per-session refresh lease: a session write that is not a refresh
   * takes it too, since any session write clears the refresh journal
   * (src/tokens/lease.ts, security model S35).
   */
  readonly lease: RefreshLease
  /** RFC 8693 tokens for routes with a `tokenExchange` target. */
  readonly exchangedTokens: TokenExchanger
  readonly clientTokens: ClientTokenService
  readonly transactions: TransactionStore
  readonly terminator: SessionTerminator
  readonly events: SessionEventHub
  readonly metrics: Metrics
  /** Device Bound Session Credentials: challenges and the bound cookie (src/session/dbsc.ts). */
  readonly dbsc: DeviceBinding
  /** Who the client is, through the trusted proxies (BFF_TRUSTED_PROXIES). */
  readonly clientAddress: ClientAddressResolver
  /** tokenward's TLS client certificate and CA bundle (RFC 8705), when BFF_TLS_* are set. */
  readonly tls: ClientTls | undefined
  readonly now: () => number
}

export interface AppEnv {
  /** Present when served by @hono/node-server; absent under app.request() in unit tests. */
  Bindings: Partial<HttpBindings>
  Variables: {
    requestId: string
    log: Logger
    /** The client's address as the trusted proxies tell it (set by the request context). */
    client?: ClientAddress
  }
}
