import type { RouteConfig } from '../config.js'
import type { Session } from '../session/sessions.js'
import type { Deps } from '../types.js'
import { BffError } from '../errors.js'
import { boundCertificate } from '../tls/binding.js'

export interface UpstreamCredentials {
  /** `Bearer …` or `DPoP …`; undefined when the route sends no token. */
  readonly authorization: string | undefined
  /** A DPoP proof for this very request (RFC 9449 §7), when the token is DPoP-bound. */
  readonly dpopProof: string | undefined
  /** The session after any refresh. */
  readonly session: Session | null
}

function authorizationHeader(type: string, token: string): string {
  // RFC 6750 §2.1 spells the scheme "Bearer" and RFC 9449 §7.1 "DPoP"; IdPs vary in case.
  const t = type.toLowerCase()
  return `${t === 'bearer' ? 'Bearer' : t === 'dpop' ? 'DPoP' : type} ${token}`
}

/**
 * The token a route sends upstream, by its token mode: tokenward's own for
 * `client` routes (no user session needed, like Duende's client token type), else
 * the session's, restricted to the route's audience when it names one, or one
 * exchanged for the route's `tokenExchange` target (RFC 8693). `force` renews it
 * after the upstream rejected it. Bearer or DPoP by the token's own type, either way.
 */
export async function upstreamCredentials(
  deps: Deps,
  route: RouteConfig,
  session: Session | null,
  request: { method: string; target: URL; force?: boolean },
): Promise<UpstreamCredentials> {
  const force = request.force ?? false
  let token: { token: string; type: string } | undefined
  if (route.token === 'client') {
    token = await deps.clientTokens.accessToken({ scopes: route.scopes, resource: route.resource }, { force })
  } else if (session && route.tokenExchange) {
    // RFC 8693: the upstream gets a token exchanged for it; the session's own
    // (subject) token is sent only to the IdP, never upstream.
    const at = await deps.exchangedTokens.accessToken(session, route.tokenExchange, { force })
    session = at.session
    token = at
  } else if (session) {
    const audience = route.resource || route.scopes?.length ? { resource: route.resource, scopes: route.scopes } : undefined
    const at = await deps.tokens.accessToken(session, { force, audience })
    session = at.session
    token = at
  }
  if (!token) return { authorization: undefined, dpopProof: undefined, session }
  // RFC 8705 §3: tokens can be bound only while tokenward presents a certificate to the IdP.
  const pair = deps.tls?.pair
  const bound = pair ? boundCertificate(token.token) : undefined
  if (bound !== undefined) {
    if (route.mtls !== true) {
      // Startup refuses such routes once a certificate is configured (security
      // model S81); an IdP that binds although the route said "mtls": false
      // ends here: the token would only be refused upstream.
      throw new BffError('upstream_unavailable', 'The upstream API could not be reached.', {
        logDetail: `certificate-bound access token (cnf x5t#S256) for route ${route.prefix}, which has no "mtls": true; not sent (security model S81)`,
      })
    }
    if (bound !== pair!.thumbprint && !force) {
      // Bound to a certificate a reload replaced (security model S82): renew
      // it, with the new certificate, before the upstream refuses it.
      return upstreamCredentials(deps, route, session, {
        method: request.method,
        force: true,
        get target() {
          return request.target
        },
      })
    }
  }
  const dpop = deps.oidc.dpop
  const dpopProof = dpop && token.type.toLowerCase() === 'dpop' ? await dpop.proof(request.method, request.target, token.token) : undefined
  return { authorization: authorizationHeader(token.type, token.token), dpopProof, session }
}
