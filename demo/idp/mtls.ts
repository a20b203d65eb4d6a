// The dev IdP's RFC 8705 support: reading the client certificate from the TLS
// socket (HTTPS is terminated by this process, not by a proxy in front), the
// oidc-provider mTLS feature, and the mtls_endpoint_aliases listener.

import { createHash, X509Certificate } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { TLSSocket } from 'node:tls'
import type { Configuration } from 'oidc-provider'

/** The client certificate of the request's TLS connection, if it presented one. */
export function peerCertificate(ctx: { req: IncomingMessage }): X509Certificate | undefined {
  const socket = ctx.req.socket
  if (!(socket instanceof TLSSocket)) return undefined
  const raw = socket.getPeerCertificate(false)?.raw
  return raw ? new X509Certificate(raw) : undefined
}

/** RFC 8705 §3.1 x5t#S256 of a certificate. */
export function certificateThumbprint(cert: X509Certificate): string {
  return createHash('sha256').update(cert.raw).digest('base64url')
}

/**
 * The oidc-provider mTLS feature: both client-authentication methods,
 * certificate-bound tokens, and tls_client_auth comparing the registered
 * subject DN with the certificate's; with an alias origin, the back-channel
 * endpoints are advertised there (RFC 8705 §5).
 */
export function mutualTls(configuration: Configuration, aliasOrigin: string | undefined): void {
  const peer = peerCertificate
  configuration.clientAuthMethods = [
    'client_secret_basic',
    'client_secret_post',
    'private_key_jwt',
    'tls_client_auth',
    'self_signed_tls_client_auth',
  ]
  configuration.features = {
    ...configuration.features,
    mTLS: {
      enabled: true,
      certificateBoundAccessTokens: true,
      tlsClientAuth: true,
      selfSignedTlsClientAuth: true,
      getCertificate: (ctx) => peer(ctx),
      // Verified against the listener's `ca` during the handshake.
      certificateAuthorized: (ctx) => ctx.req.socket instanceof TLSSocket && ctx.req.socket.authorized,
      certificateSubjectMatches: (ctx, property, expected) => {
        const cert = peer(ctx)
        if (!cert || property !== 'tls_client_auth_subject_dn') return false
        // RFC 4514 writes the most specific RDN first; Node lists them in certificate order.
        return cert.subject.split('\n').reverse().join(',') === expected
      },
    },
  }
  if (aliasOrigin) {
    configuration.discovery = {
      ...configuration.discovery,
      mtls_endpoint_aliases: {
        token_endpoint: `${aliasOrigin}/token`,
        revocation_endpoint: `${aliasOrigin}/token/revocation`,
        introspection_endpoint: `${aliasOrigin}/token/introspection`,
        userinfo_endpoint: `${aliasOrigin}/me`,
        pushed_authorization_request_endpoint: `${aliasOrigin}/request`,
      },
    }
  }
}
