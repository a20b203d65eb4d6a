// The dev IdP's oidc-provider configuration: flows, claims, lifetimes,
// features and the signing key.

import { randomBytes } from 'node:crypto'
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose'
import { errors, type Configuration } from 'oidc-provider'
import type { DevIdpOptions } from '../idp.js'
import { CLAIMS, findAccount } from './accounts.js'
import { refreshTokenPolicy, withClientDefaults } from './grants.js'
import type { FrontchannelLogout } from './frontchannel.js'
import { mutualTls } from './mtls.js'
import { errorPage, loggedOutCsp, loggedOutPage, logoutPage } from './pages.js'

const DAY = 24 * 60 * 60

/**
 * `frontchannel`: front-channel logout, when the dev IdP offers it
 * (DevIdpOptions.frontchannelLogout); `mtlsAliasOrigin`: where the RFC 8705 §5
 * aliases are served, when DevIdpOptions.mtls asks for them.
 */
export async function buildConfiguration(
  options: DevIdpOptions,
  key: JWK,
  extras: { frontchannel?: FrontchannelLogout | undefined; mtlsAliasOrigin?: string | undefined } = {},
): Promise<Configuration> {
  const { frontchannel, mtlsAliasOrigin } = extras
  const accessTokenTtl = options.accessTokenTtl ?? 60
  const refreshTokenTtl = options.refreshTokenTtl ?? 14 * DAY
  const sessionTtl = options.sessionTtl ?? 14 * DAY
  const { resource } = options

  const configuration: Configuration = {
    clients: (options.clients ?? []).map((client) => withClientDefaults(client, options.tokenExchange)),
    // Authorization code only: no implicit or hybrid flows (RFC 9700 §2.1.2).
    responseTypes: ['code'],
    jwks: { keys: [key] },
    // oidc-provider refuses outgoing requests (back-channel logout) to loopback
    // and private addresses, as SSRF protection. This IdP serves tokenward on
    // the same machine by design, so its requests go out without that dispatcher.
    fetch: (url, init) => {
      const { dispatcher: _ssrfGuard, ...rest } = init as RequestInit & { dispatcher?: unknown }
      return globalThis.fetch(url, rest)
    },
    // Random per start: cookies of an earlier run are simply not recognised.
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    claims: CLAIMS,
    // Core §5.4 puts scope-requested claims in the ID token only when no
    // access token is issued; oidc-provider enforces that by default. The dev
    // IdP includes them anyway so a BFF needs no userinfo call (its access
    // token may be a JWT for the API, which userinfo would refuse).
    conformIdTokenClaims: false,
    // PKCE for every client, S256 only (RFC 9700 §2.1.1; oidc-provider 9
    // supports no `plain`).
    pkce: { required: () => true },
    ...refreshTokenPolicy(options.expiresWithSession ?? false),
    ttl: {
      AccessToken: accessTokenTtl,
      ClientCredentials: accessTokenTtl,
      AuthorizationCode: 60,
      IdToken: options.idTokenTtl ?? 3600,
      RefreshToken: refreshTokenTtl,
      Interaction: 10 * 60,
      Session: sessionTtl,
      Grant: Math.max(refreshTokenTtl, sessionTtl),
    },
    interactions: {
      url: async (_ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    findAccount,
    // The dev IdP is reached by servers (tokenward, tests), never by browser
    // scripts, so no CORS at all.
    clientBasedCORS: () => false,
    renderError: async (ctx, out) => {
      ctx.type = 'html'
      ctx.body = errorPage(String(out.error), String(out.error_description ?? ''))
    },
    features: {
      devInteractions: { enabled: false },
      revocation: {
        enabled: true,
        // RFC 7009 §2.1: a client revokes only tokens issued to itself.
        allowedPolicy: async (_ctx, client, token) => {
          if (token.clientId !== client.clientId) throw new errors.InvalidRequest('client is not authorized to revoke the presented token')
          return true
        },
      },
      introspection: {
        enabled: true,
        // RFC 7662 §2.1 leaves this to the AS: any confidential client (a
        // resource server) may introspect; a public one only its own tokens.
        allowedPolicy: async (_ctx, client, token) => client.clientAuthMethod !== 'none' || token.clientId === client.clientId,
      },
      // For tokenward's `client` routes; a client opts in with grant_types.
      clientCredentials: { enabled: true },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: async (ctx, form) => {
          await frontchannel?.offer(ctx)
          ctx.type = 'html'
          ctx.body = logoutPage(form)
        },
        postLogoutSuccessSource: async (ctx) => {
          const frames = frontchannel?.take(ctx) ?? []
          ctx.type = 'html'
          ctx.set('Content-Security-Policy', loggedOutCsp(frames))
          ctx.body = loggedOutPage(frames)
        },
      },
      ...(resource ? { resourceIndicators: resourceIndicators(resource, accessTokenTtl) } : {}),
    },
  }
  frontchannel?.configure(configuration)
  if (options.mtls) mutualTls(configuration, mtlsAliasOrigin)
  options.configure?.(configuration)
  return configuration
}

function resourceIndicators(resource: string, accessTokenTtl: number): NonNullable<Configuration['features']>['resourceIndicators'] {
  return {
    enabled: true,
    defaultResource: async () => resource,
    // Refresh and code exchange without a `resource` parameter still get an
    // access token for the API (RFC 8707 §2.2 leaves the default to the AS).
    useGrantedResource: async () => true,
    getResourceServerInfo: async (_ctx, indicator) => {
      if (indicator !== resource) throw new errors.InvalidTarget()
      return {
        audience: resource,
        scope: 'api',
        accessTokenTTL: accessTokenTtl,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }
    },
  }
}

export async function signingKey(): Promise<JWK> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true })
  const jwk = await exportJWK(privateKey)
  // RFC 7638 thumbprint as kid: unique per start, so keys of two IdPs never
  // look alike to a verifier.
  return { ...jwk, kid: await calculateJwkThumbprint(jwk), alg: 'RS256', use: 'sig' }
}
