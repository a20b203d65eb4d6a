import type { IncomingMessage, ServerResponse } from 'node:http'
import { BffError } from '../errors.js'
import type { RequestContext } from '../http/context.js'
import { sendJson } from '../http/error-response.js'
import { requester } from '../http/audit.js'
import { csrfProblem, refuseCsrf } from '../middleware/csrf.js'
import { routeSession } from '../middleware/session.js'
import { REPLAYABLE_METHODS } from '../protocol.js'
import { SpanKind, traced, traceHeaders, tracingEnabled } from '../tracing.js'
import type { Deps } from '../types.js'
import { privateCacheControl } from './cache-control.js'
import { dpopNonceChallenge, invalidTokenChallenge, stepUpChallenge } from './challenges.js'
import { upstreamCredentials } from './credentials.js'
import { sendUpstream, type ForwardOptions, type UpstreamResponse } from './forward.js'
import type { RouteMatch } from './paths.js'

export type RouteMatched = Extract<RouteMatch, { kind: 'route' }>

export type ProxyHandler = (incoming: IncomingMessage, outgoing: ServerResponse, match: RouteMatched, rc: RequestContext) => Promise<void>

function firstValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v
}

/** Sends upstream, in a client span of its own when tracing is on (its trace context replaces the browser's). */
function sendTraced(o: Omit<ForwardOptions, 'traceHeaders'>, route: RouteMatched['route']): Promise<UpstreamResponse> {
  if (!tracingEnabled()) return sendUpstream(o)
  return traced(
    `upstream ${o.method} ${route.prefix}`,
    { 'http.request.method': o.method, 'server.address': route.upstream.hostname, 'tokenward.route': route.prefix },
    async (span) => {
      const r = await sendUpstream({ ...o, traceHeaders: traceHeaders() })
      span?.setAttribute('http.response.status_code', r.statusCode ?? 0)
      return r
    },
    SpanKind.CLIENT,
  )
}

/**
 * The API proxy for one request on a configured route: checks, session, token,
 * then the upstream, streamed socket to socket. Refusals before anything was
 * sent are thrown as BffErrors for the entry to answer; everything else (the
 * upstream's answer, a step-up challenge) is written to `outgoing` here.
 */
export function createProxyHandler(deps: Deps): ProxyHandler {
  const { config } = deps
  const proto = config.publicUrl.protocol.slice(0, -1)
  const host = config.publicUrl.host
  return async function proxy(incoming, outgoing, match, rc) {
    const { route } = match
    const method = incoming.method ?? 'GET'
    if (route.methods && !route.methods.includes(method)) {
      outgoing.setHeader('allow', route.methods.join(', '))
      throw new BffError('method_not_allowed', `${method} is not allowed on this route.`)
    }
    const csrf = csrfProblem(incoming.headers, config.publicOrigin, 'api')
    if (csrf) {
      refuseCsrf(deps, rc.log, 'api', csrf, {
        ...requester(rc.client.client, incoming.headers['user-agent']),
        outcome: 'failure',
        method,
        path: (incoming.url ?? '/').split('?')[0],
      })
    }

    const length = Number(incoming.headers['content-length'] ?? 0)
    if (length > route.maxBodyBytes) throw new BffError('payload_too_large', 'The request body is too large for this route.')
    const hasBody = incoming.headers['transfer-encoding'] !== undefined || length > 0

    let session = await routeSession(
      deps,
      route.token,
      incoming.headers.cookie,
      rc.log,
      requester(rc.client.client, incoming.headers['user-agent']),
    )
    const forwarded = { for: rc.client.forwardedFor, proto, host }
    let refreshed = false
    let nonceRetried = false
    for (let force = false; ;) {
      const credentials = await upstreamCredentials(deps, route, session, {
        method,
        force,
        // Only a DPoP proof needs the full URL: build it only then.
        get target() {
          return match.target
        },
      })
      session = credentials.session
      const { authorization, dpopProof } = credentials
      const started = performance.now()
      const res = await sendTraced(
        {
          upstream: route.upstream,
          path: match.path,
          method,
          incoming,
          authorization,
          forwarded,
          client: rc.client.client,
          requestId: rc.requestId,
          dpopProof,
          tls: deps.tls?.upstream(route.mtls === true),
          timeoutMs: route.timeoutMs,
          maxBodyBytes: route.maxBodyBytes,
          hasBody,
        },
        route,
      )
      deps.metrics.upstreamDuration.observe({ route: route.prefix, status: res.statusCode ?? 0 }, (performance.now() - started) / 1000)
      const replayable = !hasBody && REPLAYABLE_METHODS.has(method)
      const challenge = res.headers['www-authenticate']
      // RFC 9449 §9: the upstream wants a DPoP nonce; the next proof carries it.
      const newNonce =
        dpopProof !== undefined && deps.oidc.dpop!.rememberNonce(route.upstream.origin, firstValue(res.headers['dpop-nonce']))
      if (res.statusCode === 401 && newNonce && !nonceRetried && replayable && dpopNonceChallenge(challenge)) {
        res.discard()
        nonceRetried = true
        continue
      }
      // One refresh and one retry when the upstream rejects the token itself,
      // only for requests without a body: a streamed body cannot be replayed.
      if (res.statusCode === 401 && !refreshed && authorization !== undefined && replayable && invalidTokenChallenge(challenge)) {
        res.discard()
        refreshed = true
        force = true
        continue
      }
      const stepUp = res.statusCode === 401 ? stepUpChallenge(challenge) : undefined
      if (stepUp) {
        // RFC 9470: the API wants a stronger or fresher authentication. The SPA
        // gets a login URL that asks the IdP for it; after that login the
        // session's tokens carry the new acr / auth_time.
        res.discard()
        sendJson(
          outgoing,
          401,
          {
            error: 'step_up_required',
            message: 'The API requires a stronger or more recent sign-in.',
            loginUrl: `${config.basePath}/auth/login?${new URLSearchParams(stepUp).toString()}`,
            ...stepUp,
          },
          { 'cache-control': 'no-store', 'x-request-id': rc.requestId },
        )
        return
      }
      // One user's answer: never storable by a shared cache (see privateCacheControl).
      res.pipe(
        outgoing,
        session
          ? { 'x-request-id': rc.requestId, 'cache-control': privateCacheControl(res.headers['cache-control']) }
          : { 'x-request-id': rc.requestId },
      )
      return
    }
  }
}
