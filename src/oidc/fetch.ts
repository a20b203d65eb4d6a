import type { CustomFetch, FetchBody } from 'openid-client'
import type { IdpOperation, Metrics } from '../metrics.js'

/** The discovered endpoints tokenward calls (RFC 8414 §2 names), for telling its IdP calls apart. */
export interface IdpEndpoints {
  readonly jwks_uri?: string | undefined
  readonly token_endpoint?: string | undefined
  readonly revocation_endpoint?: string | undefined
  readonly pushed_authorization_request_endpoint?: string | undefined
  readonly userinfo_endpoint?: string | undefined
  /** RFC 8705 §5: where a client presenting a certificate sends the same requests. */
  readonly mtls_endpoint_aliases?: Omit<IdpEndpoints, 'mtls_endpoint_aliases' | 'jwks_uri'> | undefined
}

/** Token-endpoint grants by `grant_type` (RFC 6749 §4.1.3, §6, §4.4; RFC 8693 §2.1). */
const GRANTS: Readonly<Record<string, IdpOperation>> = {
  authorization_code: 'code_exchange',
  refresh_token: 'refresh',
  client_credentials: 'client_credentials',
  'urn:ietf:params:oauth:grant-type:token-exchange': 'token_exchange',
}

function sameEndpoint(url: string, endpoint: string | undefined): boolean {
  if (endpoint === undefined || !URL.canParse(endpoint)) return false
  const a = new URL(url)
  const b = new URL(endpoint)
  return a.origin === b.origin && a.pathname === b.pathname
}

function grantType(body: FetchBody): string | null {
  if (body instanceof URLSearchParams) return body.get('grant_type')
  return typeof body === 'string' ? new URLSearchParams(body).get('grant_type') : null
}

/**
 * Which operation an IdP request is, from its URL against the discovered
 * endpoints (and, at the token endpoint, its grant type): a fixed set, so the
 * metrics label stays bounded whatever the IdP's URLs are.
 */
export function idpOperation(url: string, body: FetchBody, endpoints: IdpEndpoints | undefined): IdpOperation {
  if (!URL.canParse(url)) return 'other'
  // Before discovery succeeded, discovery is the only request there is.
  if (endpoints === undefined || new URL(url).pathname.includes('/.well-known/')) return 'discovery'
  if (sameEndpoint(url, endpoints.jwks_uri)) return 'jwks'
  const aliases = endpoints.mtls_endpoint_aliases
  if (aliases) {
    const viaAlias = idpOperation(url, body, { ...aliases, jwks_uri: undefined })
    if (viaAlias !== 'other') return viaAlias
  }
  if (sameEndpoint(url, endpoints.token_endpoint)) return GRANTS[grantType(body) ?? ''] ?? 'other'
  if (sameEndpoint(url, endpoints.revocation_endpoint)) return 'revocation'
  if (sameEndpoint(url, endpoints.pushed_authorization_request_endpoint)) return 'par'
  if (sameEndpoint(url, endpoints.userinfo_endpoint)) return 'userinfo'
  return 'other'
}

/** Discovery documents, key sets and token responses are a few kilobytes. */
export const MAX_IDP_RESPONSE_BYTES = 1024 * 1024
/** Key-set fetches are shared and spaced at least this far apart. */
const JWKS_MIN_INTERVAL_MS = 10_000

/** An IdP response over the size limit: the IdP answered, but not usably. */
export class IdpResponseTooLargeError extends Error {
  constructor(bytes: number | string) {
    super(`identity provider response larger than ${MAX_IDP_RESPONSE_BYTES} bytes (${bytes})`)
    this.name = 'IdpResponseTooLargeError'
  }
}

function limited(res: Response): Response {
  const declared = Number(res.headers.get('content-length') ?? 0)
  if (declared > MAX_IDP_RESPONSE_BYTES) {
    void res.body?.cancel().catch(() => {})
    throw new IdpResponseTooLargeError(declared)
  }
  if (!res.body) return res
  let seen = 0
  const body = res.body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        seen += chunk.byteLength
        if (seen > MAX_IDP_RESPONSE_BYTES) controller.error(new IdpResponseTooLargeError(`${seen}+`))
        else controller.enqueue(chunk)
      },
    }),
  )
  return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers })
}

/**
 * The fetch openid-client uses for every IdP request. It bounds response sizes,
 * so a broken or hostile IdP cannot make tokenward buffer megabytes per login,
 * and it single-flights and spaces out key-set fetches, so a flood of tokens
 * with unknown `kid`s cannot turn into a flood of requests to the IdP
 * (security model S10).
 */
export function createIdpFetch(
  endpoints: () => IdpEndpoints | undefined,
  metrics?: Pick<Metrics, 'idpDuration' | 'idpRequests'>,
  /** What sends the request: with a TLS client certificate (RFC 8705), or the global fetch. */
  transport: (url: string, init: RequestInit) => Promise<Response> = fetch,
): CustomFetch {
  let lastJwks: { at: number; status: number; headers: Headers; body: ArrayBuffer } | undefined
  let inflight: Promise<NonNullable<typeof lastJwks>> | undefined
  /** One request that reaches the IdP, timed until its response headers and counted by outcome. */
  const call = async (url: string, options: Parameters<CustomFetch>[1]): Promise<Response> => {
    const operation = idpOperation(url, options.body, endpoints())
    const started = performance.now()
    try {
      const res = limited(await transport(url, options as RequestInit))
      const outcome = res.status >= 500 ? 'server_error' : res.status >= 400 ? 'client_error' : 'success'
      metrics?.idpRequests.inc({ operation, outcome })
      return res
    } catch (err) {
      metrics?.idpRequests.inc({ operation, outcome: 'failed' })
      throw err
    } finally {
      metrics?.idpDuration.observe({ operation }, (performance.now() - started) / 1000)
    }
  }
  return async (url, options) => {
    const isJwks = options.method === 'GET' && url === endpoints()?.jwks_uri
    if (!isJwks) return call(url, options)
    if (!lastJwks || Date.now() - lastJwks.at >= JWKS_MIN_INTERVAL_MS) {
      inflight ??= (async () => {
        const res = await call(url, options)
        const body = await res.arrayBuffer()
        lastJwks = { at: Date.now(), status: res.status, headers: res.headers, body }
        return lastJwks
      })().finally(() => (inflight = undefined))
      await inflight
    }
    const j = lastJwks!
    return new Response(j.body.slice(0), { status: j.status, headers: j.headers })
  }
}
