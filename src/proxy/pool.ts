// undici: Node's own HTTP/1.1 client (the engine under its fetch), used
// directly through its dispatcher API, which streams both ways with
// backpressure at a fraction of http.request's per-request cost (the steady
// benchmark measured about 20 µs less CPU per proxied call; bench/README.md).
import { Pool } from 'undici'
import type { UpstreamTls } from '../tls/client-tls.js'

/**
 * One connection pool per upstream origin and TLS material. Idle connections
 * are dropped after 4 s (or sooner when the upstream's Keep-Alive header says
 * so), before common server keep-alive timeouts (Node's 5 s) close them under a
 * reused request. Certificates are always verified (security model S47): no
 * rejectUnauthorized override. Timeouts are per request (headersTimeout);
 * bodies may stream for as long as they last (event streams, downloads).
 *
 * On an `mtls` route the pool presents tokenward's client certificate (RFC
 * 8705); a pool is never shared between certificate generations, so after a
 * rotation new requests get connections with the new certificate while the
 * old pool finishes what it carries and closes (retirePools).
 */
const pools = new Map<string, Pool>()
export const POOL_CONNECTIONS = 512

export function poolFor(upstream: URL, tls?: UpstreamTls): Pool {
  const key = tls ? `${upstream.origin} ${tls.id}` : upstream.origin
  let pool = pools.get(key)
  if (!pool) {
    pool = new Pool(upstream.origin, {
      connections: POOL_CONNECTIONS,
      keepAliveTimeout: 4000,
      keepAliveMaxTimeout: 4000,
      bodyTimeout: 0,
      headersTimeout: 0,
      ...(tls && upstream.protocol === 'https:'
        ? { connect: { ...(tls.cert ? { cert: tls.cert, key: tls.key } : {}), ...(tls.ca ? { ca: [...tls.ca] } : {}) } }
        : {}),
    })
    pools.set(key, pool)
  }
  return pool
}

/**
 * Closes the pools of a TLS material a reload replaced: requests in flight on
 * them finish (undici's close waits for them), new ones already use new pools.
 */
export function retirePools(tlsId: string): void {
  for (const [key, pool] of pools) {
    if (!key.endsWith(` ${tlsId}`)) continue
    pools.delete(key)
    void pool.close().catch(() => {})
  }
}
