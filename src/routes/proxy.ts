import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response'
import type { MiddlewareHandler } from 'hono'
import { BffError, LoginRequiredError } from '../errors.js'
import { checkCsrf, clientIp, currentSession } from '../http.js'
import { upstreamCredentials } from '../proxy/credentials.js'
import { mapRequest } from '../proxy/paths.js'
import { pipeResponse, sendUpstream } from '../proxy/forward.js'
import type { Session } from '../session/sessions.js'
import { SpanKind, traced, traceHeaders, tracingEnabled } from '../tracing.js'
import type { AppEnv, Deps } from '../types.js'

/** Methods whose requests a proxy may replay: they carry no body (RFC 9110 §9.2.2). */
const RETRYABLE = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS'])

/** RFC 6750 §3.1 (and RFC 9449 §7.1 for DPoP): the resource server says the token is expired, revoked or malformed. */
function invalidTokenChallenge(header: string | string[] | undefined): boolean {
  const v = Array.isArray(header) ? header.join(', ') : header ?? ''
  return /^\s*(bearer|dpop)\b/i.test(v) && /error\s*=\s*"?invalid_token"?/i.test(v)
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v
}

/** RFC 9470 §3: `Bearer error="insufficient_user_authentication"` with optional acr_values and max_age. */
function stepUpChallenge(header: string | string[] | undefined): { acr_values?: string; max_age?: string } | undefined {
  const v = Array.isArray(header) ? header.join(', ') : header ?? ''
  if (!/^\s*bearer\b/i.test(v) || !/error\s*=\s*"?insufficient_user_authentication"?/i.test(v)) return undefined
  const out: { acr_values?: string; max_age?: string } = {}
  const acr = /acr_values\s*=\s*"([^"]*)"/i.exec(v)?.[1]
  if (acr && /^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$/.test(acr)) out.acr_values = acr
  const maxAge = /max_age\s*=\s*"?(\d{1,9})"?/i.exec(v)?.[1]
  if (maxAge) out.max_age = maxAge
  return out
}

/**
 * The API proxy: requests under a configured route prefix go to its upstream with
 * the session's access token; everything else falls through to the next handler.
 * Needs @hono/node-server's bindings: bodies are piped socket to socket.
 */
export function proxyMiddleware(deps: Deps): MiddlewareHandler<AppEnv> {
  const { config } = deps
  return async function proxy(c, next) {
    const incoming = c.env?.incoming
    const outgoing = c.env?.outgoing
    if (!incoming || !outgoing) return next()
    const match = mapRequest(config.routes, incoming.url ?? '/')
    if (match.kind === 'none') return next()
    if (match.kind === 'refused') {
      throw new BffError('invalid_request', 'The request path is not allowed.', { logDetail: match.reason })
    }
    const { route } = match
    c.set('route', route.prefix)
    const method = c.req.method
    if (route.methods && !route.methods.includes(method)) {
      c.header('allow', route.methods.join(', '))
      throw new BffError('method_not_allowed', `${method} is not allowed on this route.`)
    }
    checkCsrf(c, deps)

    const length = Number(incoming.headers['content-length'] ?? 0)
    if (length > route.maxBodyBytes) throw new BffError('payload_too_large', 'The request body is too large for this route.')
    const hasBody = incoming.headers['transfer-encoding'] !== undefined || length > 0

    let session: Session | null = null
    if (route.token === 'user' || route.token === 'optional') {
      // API calls slide the idle timeout (CONTRACT.md: sliding, server-side).
      session = await currentSession(c, deps, { slide: true })
      if (!session && route.token === 'user') throw new LoginRequiredError()
    }

    const forwarded = { for: clientIp(c), proto: config.publicUrl.protocol.slice(0, -1), host: config.publicUrl.host }
    let refreshed = false
    let nonceRetried = false
    for (let force = false; ; ) {
      const credentials = await upstreamCredentials(deps, route, session, { method, target: match.target, force })
      session = credentials.session
      const { authorization, dpopProof } = credentials
      const started = performance.now()
      const send = (traceparent: Record<string, string> | undefined) =>
        sendUpstream({
          upstream: route.upstream,
          path: match.path,
          method,
          incoming,
          authorization,
          forwarded,
          requestId: c.get('requestId'),
          traceHeaders: traceparent,
          dpopProof,
          timeoutMs: route.timeoutMs,
          maxBodyBytes: route.maxBodyBytes,
          hasBody,
        })
      const res = !tracingEnabled()
        ? await send(undefined)
        : await traced(
            `upstream ${method} ${route.prefix}`,
            { 'http.request.method': method, 'server.address': route.upstream.hostname, 'tokenward.route': route.prefix },
            async (span) => {
              const r = await send(traceHeaders())
              span?.setAttribute('http.response.status_code', r.statusCode ?? 0)
              return r
            },
            SpanKind.CLIENT,
          )
      deps.metrics.upstreamDuration.observe({ route: route.prefix, status: res.statusCode ?? 0 }, (performance.now() - started) / 1000)
      const replayable = !hasBody && RETRYABLE.has(method)
      // RFC 9449 §9: the upstream wants a DPoP nonce; the next proof carries it.
      const newNonce = dpopProof !== undefined && deps.oidc.dpop!.rememberNonce(route.upstream.origin, headerValue(res.headers['dpop-nonce']))
      if (res.statusCode === 401 && newNonce && !nonceRetried && replayable && /error\s*=\s*"?use_dpop_nonce/i.test(String(res.headers['www-authenticate']))) {
        res.resume()
        nonceRetried = true
        continue
      }
      // One refresh and one retry when the upstream rejects the token itself,
      // only for requests without a body: a streamed body cannot be replayed.
      if (res.statusCode === 401 && !refreshed && authorization !== undefined && replayable && invalidTokenChallenge(res.headers['www-authenticate'])) {
        res.resume()
        refreshed = true
        force = true
        continue
      }
      const stepUp = res.statusCode === 401 ? stepUpChallenge(res.headers['www-authenticate']) : undefined
      if (stepUp) {
        // RFC 9470: the API wants a stronger or fresher authentication. The SPA
        // gets a login URL that asks the IdP for it; after that login the
        // session's tokens carry the new acr / auth_time.
        res.resume()
        c.header('cache-control', 'no-store')
        return c.json(
          {
            error: 'step_up_required',
            message: 'The API requires a stronger or more recent sign-in.',
            loginUrl: `/auth/login?${new URLSearchParams(stepUp).toString()}`,
            ...stepUp,
          },
          401,
        )
      }
      pipeResponse(res, outgoing, { 'x-request-id': c.get('requestId') })
      return RESPONSE_ALREADY_SENT
    }
  }
}
