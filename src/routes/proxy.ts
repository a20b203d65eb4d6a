import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response'
import type { MiddlewareHandler } from 'hono'
import { BffError, LoginRequiredError, toErrorResponse } from '../errors.js'
import { csrfProblem, handleFromCookies, logRequestError, refuseCsrf, requester, requestIdFrom } from '../http.js'
import { lazyChild, type Logger } from '../log.js'
import { privateCacheControl } from '../proxy/cache-control.js'
import { upstreamCredentials } from '../proxy/credentials.js'
import { mapRequest, type RouteMatch } from '../proxy/paths.js'
import { sendUpstream } from '../proxy/forward.js'
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

type RouteMatched = Extract<RouteMatch, { kind: 'route' }>

interface ProxyContext {
  readonly requestId: string
  readonly log: Logger
}

/**
 * A refusal of a request whose body is still arriving closes the connection
 * after the answer (RFC 9112 §9.6, RFC 9110 §7.6.1): Node would otherwise read
 * and drop the rest of the body to keep the connection alive, however large it
 * is declared to be, spending bandwidth and CPU on a request already refused.
 */
function closeIfUnread(incoming: IncomingMessage, outgoing: ServerResponse): void {
  if (!incoming.complete && !outgoing.headersSent) outgoing.setHeader('connection', 'close')
}

function sendJson(outgoing: ServerResponse, status: number, body: unknown, headers: Record<string, string>): void {
  const text = JSON.stringify(body)
  outgoing.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers })
  outgoing.end(text)
}

/**
 * The API proxy for one request on a configured route: checks, session, token,
 * then the upstream, streamed socket to socket. Refusals before anything was
 * sent are thrown as BffErrors for the caller to answer; everything else
 * (the upstream's answer, a step-up challenge) is written to `outgoing` here.
 */
export function createProxy(deps: Deps): (incoming: IncomingMessage, outgoing: ServerResponse, match: RouteMatched, ctx: ProxyContext) => Promise<void> {
  const { config } = deps
  const proto = config.publicUrl.protocol.slice(0, -1)
  const host = config.publicUrl.host
  return async function proxy(incoming, outgoing, match, ctx) {
    const { route } = match
    const method = incoming.method ?? 'GET'
    const client = deps.clientAddress(incoming.socket.remoteAddress, incoming.headers)
    if (route.methods && !route.methods.includes(method)) {
      outgoing.setHeader('allow', route.methods.join(', '))
      throw new BffError('method_not_allowed', `${method} is not allowed on this route.`)
    }
    const csrf = csrfProblem(incoming.headers, config)
    if (csrf) {
      refuseCsrf(deps, ctx.log, csrf, {
        ...requester(client.client, incoming.headers['user-agent']),
        outcome: 'failure',
        method,
        path: (incoming.url ?? '/').split('?')[0],
      })
    }

    const length = Number(incoming.headers['content-length'] ?? 0)
    if (length > route.maxBodyBytes) throw new BffError('payload_too_large', 'The request body is too large for this route.')
    const hasBody = incoming.headers['transfer-encoding'] !== undefined || length > 0

    let session: Session | null = null
    if (route.token === 'user' || route.token === 'optional') {
      // API calls slide the idle timeout (CONTRACT.md: sliding, server-side).
      const handle = await handleFromCookies(incoming.headers.cookie, deps)
      session = handle ? await deps.sessions.load(handle, { slide: true }) : null
      if (!session && route.token === 'user') throw new LoginRequiredError()
    }

    const forwarded = { for: client.forwardedFor, proto, host }
    let refreshed = false
    let nonceRetried = false
    for (let force = false; ; ) {
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
      const send = (traceparent: Record<string, string> | undefined) =>
        sendUpstream({
          upstream: route.upstream,
          path: match.path,
          method,
          incoming,
          authorization,
          forwarded,
          client: client.client,
          requestId: ctx.requestId,
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
        res.discard()
        nonceRetried = true
        continue
      }
      // One refresh and one retry when the upstream rejects the token itself,
      // only for requests without a body: a streamed body cannot be replayed.
      if (res.statusCode === 401 && !refreshed && authorization !== undefined && replayable && invalidTokenChallenge(res.headers['www-authenticate'])) {
        res.discard()
        refreshed = true
        force = true
        continue
      }
      const stepUp = res.statusCode === 401 ? stepUpChallenge(res.headers['www-authenticate']) : undefined
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
            loginUrl: `/auth/login?${new URLSearchParams(stepUp).toString()}`,
            ...stepUp,
          },
          { 'cache-control': 'no-store', 'x-request-id': ctx.requestId },
        )
        return
      }
      // One user's answer: never storable by a shared cache (see privateCacheControl).
      res.pipe(
        outgoing,
        session ? { 'x-request-id': ctx.requestId, 'cache-control': privateCacheControl(res.headers['cache-control']) } : { 'x-request-id': ctx.requestId },
      )
      return
    }
  }
}

/** The proxy inside the Hono app (used when tracing is on, and by tests that mount the app). */
export function proxyMiddleware(deps: Deps): MiddlewareHandler<AppEnv> {
  const proxy = createProxy(deps)
  return async function proxyRoute(c, next) {
    const incoming = c.env?.incoming
    const outgoing = c.env?.outgoing
    if (!incoming || !outgoing) return next()
    const match = mapRequest(deps.config.routes, incoming.url ?? '/')
    if (match.kind === 'none') return next()
    if (match.kind === 'refused') {
      throw new BffError('invalid_request', 'The request path is not allowed.', { logDetail: match.reason })
    }
    c.set('route', match.route.prefix)
    await proxy(incoming, outgoing, match, { requestId: c.get('requestId'), log: c.get('log') }).catch((err: unknown) => {
      closeIfUnread(incoming, outgoing)
      throw err
    })
    return RESPONSE_ALREADY_SENT
  }
}

/**
 * The proxy straight on Node's request, without the Hono app: the path every
 * proxied API call takes when tracing is off. It does what the app's request
 * context does for it (request id, refusals as contract JSON, the request
 * metric) and nothing else. Returns false for requests that are not on a
 * route, which the app then serves.
 */
export function directProxy(deps: Deps): (incoming: IncomingMessage, outgoing: ServerResponse) => boolean {
  const proxy = createProxy(deps)
  const { routes } = deps.config
  return (incoming, outgoing) => {
    if (tracingEnabled()) return false
    const match = mapRequest(routes, incoming.url ?? '/')
    if (match.kind !== 'route') return false
    const requestId = requestIdFrom(incoming.headers['x-request-id']) ?? randomUUID()
    const log = lazyChild(deps.logger, { requestId })
    const count = () => deps.metrics.requests.inc({ route: match.route.prefix, method: incoming.method ?? 'GET', status: outgoing.statusCode })
    proxy(incoming, outgoing, match, { requestId, log })
      .then(count, (err: unknown) => {
        logRequestError(log, err, (incoming.url ?? '/').split('?')[0]!)
        if (outgoing.headersSent) outgoing.destroy()
        else {
          closeIfUnread(incoming, outgoing)
          const { status, body, headers } = toErrorResponse(err)
          sendJson(outgoing, status, body, { ...headers, 'x-request-id': requestId })
        }
        count()
      })
      .catch((err: unknown) => {
        // Answering failed too (the socket is gone): nothing left to tell anyone.
        log.warn({ reason: err instanceof Error ? err.message : String(err) }, 'could not answer a proxied request')
        outgoing.destroy()
      })
    return true
  }
}
