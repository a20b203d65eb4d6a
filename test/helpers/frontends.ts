// What the multi-frontend tests (BFF_CONFIG_FILE) share: a frontend's own dev
// IdP with its registered client and a token-verifying upstream, and raw
// requests to the one listener with the Host (and path) a browser would send.
import { request } from 'node:http'
import { startTestIdp, type TestIdp } from './test-idp.js'
import { startEchoUpstream, type EchoUpstream } from './upstream.js'

export interface FrontendIdp {
  clientId: string
  clientSecret: string
  idp: TestIdp
  upstream: EchoUpstream
}

/**
 * A dev IdP for frontend `name` served at `url` (its public URL, base
 * included), with the client `<name>-bff` registered for that URL's
 * callback, post-logout and back-channel URIs, and an echo upstream that
 * accepts only this IdP's access tokens for `resource`.
 */
export async function startFrontendIdp(name: string, url: string, resource: string): Promise<FrontendIdp> {
  const clientId = `${name}-bff`
  const clientSecret = `${name}-secret-${'x'.repeat(24)}`
  const idp = await startTestIdp({
    accessTokenTtl: 60,
    resource,
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: [`${url}/auth/callback`],
        post_logout_redirect_uris: [`${url}/`],
        backchannel_logout_uri: `${url}/auth/backchannel-logout`,
        backchannel_logout_session_required: true,
        grant_types: ['authorization_code', 'refresh_token'],
      },
    ],
  })
  const upstream = await startEchoUpstream()
  upstream.verifyTokens({ issuer: idp.issuer, jwksUri: idp.provider.urlFor('jwks'), audience: resource })
  return { clientId, clientSecret, idp, upstream }
}

export interface RawAnswer {
  status: number
  body: string
  headers: Record<string, string | string[] | undefined>
}

/** A request to 127.0.0.1:`port` with exactly this path and Host, as the SPA sends it (X-CSRF: 1). */
export function hostRequest(
  port: number,
  path: string,
  host: string,
  headers: Record<string, string> = {},
  method = 'GET',
  body?: string,
): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers: { host, 'x-csrf': '1', ...headers } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }))
    })
    req.on('error', reject)
    req.end(body)
  })
}
