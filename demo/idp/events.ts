// The dev IdP's observability for tests, benchmarks and the soak run: counts
// of what happened at the token and revocation endpoints and a token-free
// event log.

import type { KoaContextWithOIDC, Provider } from 'oidc-provider'
import { TOKEN_EXCHANGE_GRANT } from './grants.js'

export interface DevIdpCounts {
  authorizationCodeGrants: number
  refreshGrants: number
  /** Refresh-token grants that failed, whatever the error. */
  refreshErrors: number
  /** Token-endpoint errors `invalid_grant`, whatever the grant type. */
  invalidGrants: number
  /** Grants actually revoked through the revocation endpoint (RFC 7009). */
  revocations: number
  /** POSTs to the revocation endpoint, successful or not. */
  revocationRequests: number
  /** POSTs to the token endpoint, counted on arrival. */
  tokenRequests: number
  /** Token exchanges (RFC 8693) that issued a token. */
  tokenExchanges: number
  /** Token exchanges refused, whatever the error. */
  tokenExchangeErrors: number
}

export interface DevIdpEvent {
  name: string
  at: number
  detail?: Record<string, unknown>
}

export type Recorder = (name: string, detail?: Record<string, unknown>) => void

export function newCounts(): DevIdpCounts {
  return {
    authorizationCodeGrants: 0,
    refreshGrants: 0,
    refreshErrors: 0,
    invalidGrants: 0,
    revocations: 0,
    revocationRequests: 0,
    tokenRequests: 0,
    tokenExchanges: 0,
    tokenExchangeErrors: 0,
  }
}

/** Appends to `events`, dropping the oldest beyond `maxEvents`. */
export function recorder(events: DevIdpEvent[], maxEvents: number): Recorder {
  return (name, detail) => {
    events.push(detail ? { name, at: Date.now(), detail } : { name, at: Date.now() })
    if (events.length > maxEvents) events.splice(0, events.length - maxEvents)
  }
}

export function observe(provider: Provider, counts: DevIdpCounts, record: Recorder): void {
  const grantType = (ctx: KoaContextWithOIDC): string | undefined => {
    const value = ctx.oidc.params?.grant_type
    return typeof value === 'string' ? value : undefined
  }
  provider.on('grant.success', (ctx) => {
    const type = grantType(ctx)
    if (type === 'authorization_code') counts.authorizationCodeGrants++
    if (type === 'refresh_token') counts.refreshGrants++
    if (type === TOKEN_EXCHANGE_GRANT) counts.tokenExchanges++
    record('grant.success', { grantType: type, clientId: ctx.oidc.client?.clientId })
  })
  provider.on('grant.error', (ctx, err) => {
    const type = grantType(ctx)
    if (type === 'refresh_token') counts.refreshErrors++
    if (type === TOKEN_EXCHANGE_GRANT) counts.tokenExchangeErrors++
    if (err.error === 'invalid_grant') counts.invalidGrants++
    record('grant.error', {
      grantType: type,
      clientId: ctx.oidc.client?.clientId,
      error: err.error,
      description: err.error_description,
    })
  })
  provider.on('refresh_token.consumed', (token) => {
    record('refresh_token.consumed', { clientId: token.clientId, accountId: token.accountId, grantId: token.grantId })
  })
  provider.on('grant.revoked', (ctx, grantId) => {
    if (ctx.oidc.route === 'revocation') counts.revocations++
    record('grant.revoked', { grantId, route: ctx.oidc.route })
  })
  provider.on('revocation.error', (ctx, err) => {
    record('revocation.error', { clientId: ctx.oidc.client?.clientId, error: err.error })
  })
  // What a pushed authorization request (RFC 9126) carried, as sent (the body,
  // not oidc-provider's normalised params, which turn max_age=0 into
  // prompt=login), so tests can see parameters the browser never carries.
  provider.on('pushed_authorization_request.success', (ctx, client) => {
    const p: Record<string, unknown> = ctx.oidc.body ?? {}
    const pick = (k: string) => (typeof p[k] === 'string' ? (p[k] as string) : undefined)
    record('pushed_authorization_request.success', {
      clientId: client.clientId,
      state: pick('state'),
      prompt: pick('prompt'),
      acr_values: pick('acr_values'),
      max_age: pick('max_age'),
    })
  })
  provider.on('authorization.error', (ctx, err) => {
    record('authorization.error', { clientId: ctx.oidc.client?.clientId, error: err.error, description: err.error_description })
  })
  provider.on('end_session.success', (ctx) => {
    record('end_session.success', { clientId: ctx.oidc.client?.clientId })
  })
  provider.on('backchannel.success', (_ctx, client, accountId, sid) => {
    record('backchannel.success', { clientId: client.clientId, accountId, sid })
  })
  provider.on('backchannel.error', (_ctx, err, client, accountId, sid) => {
    record('backchannel.error', { clientId: client.clientId, accountId, sid, error: err.message })
  })
  provider.on('server_error', (_ctx, err) => {
    // A bug in the dev IdP or its configuration: never hide it.
    console.error('dev IdP: oidc-provider server_error', err)
    record('server_error', { message: err.message })
  })
}
