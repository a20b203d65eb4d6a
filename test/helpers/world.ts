import { randomBytes } from 'node:crypto'
import { inject } from 'vitest'
import type { ClientMetadata } from 'oidc-provider'
import type { DevIdpOptions } from '../../demo/idp.js'
import type { OidcClientOptions } from '../../src/oidc/client.js'
import type { LoadConfigOptions } from '../../src/config.js'
import { startBff, type TestBff } from './bff.js'
import { freePort } from './ports.js'
import { startTestIdp, type TestIdp } from './test-idp.js'
import { startEchoUpstream, type EchoUpstream } from './upstream.js'

export const CLIENT_ID = 'tokenward-test'

export interface World {
  readonly idp: TestIdp
  readonly upstream: EchoUpstream
  readonly bff: TestBff
  readonly clientSecret: string
  /** Another tokenward instance sharing the first one's Redis, keys and secrets. */
  startInstance(env?: Record<string, string | undefined>): Promise<TestBff>
  close(): Promise<void>
}

export interface WorldOptions {
  idp?: Omit<DevIdpOptions, 'clients'>
  /** More metadata for tokenward's client at the IdP; `{publicUrl}` in a string value is replaced by tokenward's URL. */
  clientMetadata?: Partial<ClientMetadata>
  /** Extra BFF_* variables (undefined removes one). */
  env?: Record<string, string | undefined>
  /** Redis to use instead of the run's shared one (e.g. a private server a test may stop). */
  redisUrl?: string
  /** Routes; `{upstream}` in an upstream is replaced by the echo upstream's URL. */
  routes?: Array<Record<string, unknown>>
  /** The IdP client's options of the first instance (e.g. a fetch that routes a public issuer here). */
  oidc?: OidcClientOptions
  /**
   * `https`: tokenward's public URL (and the IdP's registered redirect URIs)
   * say https while the test still talks plain http to its port, as behind a
   * TLS-terminating proxy: what Device Bound Session Credentials need.
   */
  publicScheme?: 'http' | 'https'
  /** Passed to loadConfig (test-only lower bounds). */
  configOptions?: LoadConfigOptions
}

/**
 * A real oidc-provider, a real echo upstream and tokenward on free ports, wired
 * together, with Redis from the global setup under a key prefix of its own.
 */
export async function startWorld(options: WorldOptions = {}): Promise<World> {
  const port = await freePort()
  const publicUrl = `${options.publicScheme ?? 'http'}://127.0.0.1:${port}`
  const clientSecret = randomBytes(24).toString('base64url')
  const idp = await startTestIdp({
    accessTokenTtl: 60,
    ...options.idp,
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: clientSecret,
        redirect_uris: [`${publicUrl}/auth/callback`],
        post_logout_redirect_uris: [`${publicUrl}/`],
        backchannel_logout_uri: `${publicUrl}/auth/backchannel-logout`,
        grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
        backchannel_logout_session_required: true,
        ...Object.fromEntries(
          Object.entries(options.clientMetadata ?? {}).map(([k, v]) => [
            k,
            typeof v === 'string' ? v.replace('{publicUrl}', publicUrl) : v,
          ]),
        ),
      },
    ],
  })
  const upstream = await startEchoUpstream()
  const routes = (options.routes ?? [{ prefix: '/api', upstream: '{upstream}', token: 'user' }]).map((r) => ({
    ...r,
    upstream: String(r.upstream).replace('{upstream}', upstream.url),
  }))
  const redisUrl = options.redisUrl ?? inject('redisUrl')
  const env = options.publicScheme === 'https' ? { BFF_PUBLIC_URL: publicUrl, ...options.env } : options.env
  const bff = await startBff({
    issuer: idp.issuer,
    redisUrl,
    clientId: CLIENT_ID,
    clientSecret,
    port,
    routes,
    env,
    configOptions: options.configOptions,
    ...(options.oidc ? { oidc: options.oidc } : {}),
  })
  const extra: TestBff[] = []
  return {
    idp,
    upstream,
    bff,
    clientSecret,
    async startInstance(env = {}) {
      const other = await startBff({
        issuer: idp.issuer,
        redisUrl,
        clientId: CLIENT_ID,
        clientSecret,
        routes,
        env: { ...bff.env, BFF_PORT: undefined, ...env },
        redisPrefix: bff.env.BFF_REDIS_PREFIX,
        configOptions: options.configOptions,
      })
      extra.push(other)
      return other
    },
    async close() {
      await Promise.allSettled([bff.close(), ...extra.map((b) => b.close()), upstream.close()])
      await idp.close()
    },
  }
}
