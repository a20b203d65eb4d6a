import { randomUUID } from 'node:crypto'
import { serveStatic } from '@hono/node-server/serve-static'
import { Hono, type Context, type Next } from 'hono'
import { BffError } from './errors.js'
import { errorResponse, header, logRequestError, requestIdFrom } from './http.js'
import { lazyChild } from './log.js'
import { context, extractContext, SpanKind, traced, tracingEnabled } from './tracing.js'
import { authRoutes } from './routes/auth.js'
import { backchannelRoutes } from './routes/backchannel.js'
import { eventRoutes } from './routes/events.js'
import { healthRoutes } from './routes/health.js'
import { proxyMiddleware } from './routes/proxy.js'
import type { AppEnv, Deps } from './types.js'

const ENDPOINTS = new Set([
  '/auth/login',
  '/auth/callback',
  '/auth/session',
  '/auth/logout',
  '/auth/events',
  '/auth/backchannel-logout',
  '/healthz',
  '/readyz',
  '/metrics',
])

/** The server span of a request, child of the caller's `traceparent` when there is one. */
function traceRequest(c: Context<AppEnv>, requestId: string, next: Next): Promise<void> {
  const parent = extractContext(c.env?.incoming?.headers ?? {})
  return context.with(parent, () =>
    traced(
      `${c.req.method} ${c.req.path}`,
      { 'http.request.method': c.req.method, 'tokenward.request_id': requestId },
      async (span) => {
        await next()
        const route = c.get('route') ?? routeLabel(c.req.path)
        span?.updateName(`${c.req.method} ${route}`)
        span?.setAttribute('http.route', route)
        span?.setAttribute('http.response.status_code', c.env?.outgoing?.headersSent ? c.env.outgoing.statusCode : c.res.status)
      },
      SpanKind.SERVER,
    ),
  )
}

/** A bounded label for requests that are not proxied (the proxy labels its own). */
function routeLabel(path: string): string {
  return ENDPOINTS.has(path) ? path : 'other'
}

/**
 * Builds the HTTP application from its dependencies. Reads no environment and
 * does no I/O of its own, so tests mount it with whatever deps they need.
 */
export function createApp(deps: Deps): Hono<AppEnv> {
  const app = new Hono<AppEnv>()

  app.use('*', async function requestContext(c, next) {
    const requestId = requestIdFrom(c.env?.incoming ? c.env.incoming.headers['x-request-id'] : header(c, 'x-request-id')) ?? randomUUID()
    c.set('requestId', requestId)
    c.set('log', lazyChild(deps.logger, { requestId }))
    const incoming = c.env?.incoming
    if (incoming) c.set('client', deps.clientAddress(incoming.socket.remoteAddress, incoming.headers))
    try {
      if (!tracingEnabled()) await next()
      else await traceRequest(c, requestId, next)
    } finally {
      const sent = c.env?.outgoing?.headersSent
      // The proxy writes its response straight to the socket; it adds the id itself.
      if (!sent) {
        c.header('x-request-id', requestId)
        // Answered before its body arrived (a refusal, an endpoint that reads
        // no body): close rather than read and discard the rest, however large
        // (RFC 9112 §9.6, §9.3).
        if (incoming && !incoming.complete) c.header('connection', 'close')
      }
      const status = sent ? c.env!.outgoing!.statusCode : c.res.status
      deps.metrics.requests.inc({ route: c.get('route') ?? routeLabel(c.req.path), method: c.req.method, status })
    }
  })

  app.route('/auth', authRoutes(deps))
  app.route('/auth', backchannelRoutes(deps))
  app.route('/auth', eventRoutes(deps))
  app.route('/', healthRoutes(deps))
  app.use('*', proxyMiddleware(deps))

  if (deps.config.staticDir) {
    const root = deps.config.staticDir
    // HTML shows who is signed in: never from a cache, not even the back/forward
    // cache, after a logout (OWASP session management: web content caching).
    const noStoreHtml = serveStatic<AppEnv>({
      root,
      onFound: (path, c) => {
        if (path.endsWith('.html')) c.header('cache-control', 'no-store')
      },
    })
    app.use('*', noStoreHtml)
    // Client-side routing: unknown page paths get the SPA's index.html.
    app.get('*', async (c, next) => {
      if (!(c.req.header('accept') ?? '').includes('text/html')) return next()
      c.header('cache-control', 'no-store')
      return serveStatic<AppEnv>({ root, path: 'index.html' })(c, next)
    })
  }

  app.notFound((c) => errorResponse(c, new BffError('not_found', 'Nothing is served at this path.')))

  app.onError((err, c) => {
    logRequestError(c.get('log') ?? deps.logger, err, c.req.path)
    return errorResponse(c, err)
  })

  return app
}
