import { serveStatic } from '@hono/node-server/serve-static'
import { Hono } from 'hono'
import { BffError } from './errors.js'
import { countRequest, mustClose, noteSpan, openRequest, routeLabel } from './http/context.js'
import { errorResponse, logRequestError } from './http/error-response.js'
import { requestHeaders } from './http/headers.js'
import { mapRequest } from './proxy/paths.js'
import { serverSpan, tracingEnabled } from './tracing.js'
import { authRoutes } from './routes/auth.js'
import { sessionRoutes } from './routes/session.js'
import { backchannelRoutes } from './routes/backchannel.js'
import { frontchannelRoutes } from './routes/frontchannel.js'
import { dbscRoutes } from './routes/dbsc.js'
import { eventRoutes } from './routes/events.js'
import { healthRoutes } from './routes/health.js'
import type { AppEnv, Deps } from './types.js'

/**
 * Builds the HTTP application from its dependencies: tokenward's own endpoints
 * (/auth, health, metrics) and static files. Proxied calls never reach it: the
 * proxy entry (proxy/entry.ts) serves them on Node's request. Reads no
 * environment and does no I/O of its own.
 */
export function createApp(deps: Deps): Hono<AppEnv> {
  const app = new Hono<AppEnv>()

  // The request context the proxy entry opens too (http/context.ts). On every
  // path; without a path argument hono types `c` with no `any` in it.
  app.use(async function requestContext(c, next) {
    const incoming = c.env?.incoming
    const rc = openRequest(deps, requestHeaders(c), incoming?.socket.remoteAddress, incoming?.url ?? c.req.path)
    c.set('requestId', rc.requestId)
    c.set('log', rc.log)
    c.set('client', rc.client)
    const status = () => c.res.status
    try {
      if (!tracingEnabled()) await next()
      else
        await serverSpan(requestHeaders(c), c.req.method, c.req.path, rc.requestId, next, () => {
          noteSpan(rc)
          return { route: routeLabel(c.req.path), status: status() }
        })
    } finally {
      c.header('x-request-id', rc.requestId)
      // Answered before its body arrived (see mustClose).
      if (mustClose(incoming)) c.header('connection', 'close')
      countRequest(deps, rc, routeLabel(c.req.path), c.req.method, status())
    }
  })

  app.route('/auth', authRoutes(deps))
  app.route('/auth', sessionRoutes(deps))
  app.route('/auth', backchannelRoutes(deps))
  app.route('/auth', frontchannelRoutes(deps))
  app.route('/auth', eventRoutes(deps))
  if (deps.config.dbsc.enabled) app.route('/auth', dbscRoutes(deps))
  app.route('/', healthRoutes(deps))

  // A path that reaches a route only once normalised (`/x/../api`), or escapes
  // its prefix, is never forwarded: the proxy entry left it here, after
  // tokenward's own endpoints (security model S39).
  app.use('*', async (c, next) => {
    const match = mapRequest(deps.config.routes, c.env?.incoming?.url ?? `${c.req.path}${new URL(c.req.url).search}`)
    if (match.kind === 'refused') throw new BffError('invalid_request', 'The request path is not allowed.', { logDetail: match.reason })
    return next()
  })

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
