import type { CustomFetch } from 'openid-client'

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
export function createIdpFetch(jwksUri: () => string | undefined): CustomFetch {
  let lastJwks: { at: number; status: number; headers: Headers; body: ArrayBuffer } | undefined
  let inflight: Promise<NonNullable<typeof lastJwks>> | undefined
  return async (url, options) => {
    const isJwks = options.method === 'GET' && url === jwksUri()
    if (!isJwks) return limited(await fetch(url, options))
    if (!lastJwks || Date.now() - lastJwks.at >= JWKS_MIN_INTERVAL_MS) {
      inflight ??= (async () => {
        const res = limited(await fetch(url, options))
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
