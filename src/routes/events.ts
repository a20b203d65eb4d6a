import { Hono } from 'hono'
import { streamSSE, type SSEStreamingApi } from 'hono/streaming'
import { BffError } from '../errors.js'
import { checkCsrf } from '../middleware/csrf.js'
import { ConcurrencyLimit } from '../middleware/rate-limit.js'
import { currentSession } from '../middleware/session.js'
import { watchSession } from '../lifecycle/watch.js'
import type { AppEnv, Deps } from '../types.js'

const HEARTBEAT_MS = 25_000
/**
 * Open streams per session on one instance. A page needs one per tab; each
 * stream holds a socket and a subscription, so a stolen or scripted cookie must
 * not be able to open thousands.
 */
const MAX_STREAMS_PER_SESSION = 16

/**
 * `GET /auth/events`: server-sent events that tell an open tab its session
 * ended (logout in another tab, back-channel logout, an administrator's revoke,
 * a rejected refresh, or expiry), on whichever instance it happened. Reading it
 * neither slides the idle timeout nor needs the X-CSRF header (EventSource
 * cannot send one), so it is limited to same-origin requests by Fetch Metadata
 * and Origin instead.
 */
export function eventRoutes(deps: Deps): Hono<AppEnv> {
  const app = new Hono<AppEnv>()
  const open = new ConcurrencyLimit(MAX_STREAMS_PER_SESSION)

  app.get('/events', async (c) => {
    checkCsrf(c, deps, 'stream')
    const session = await currentSession(c, deps, { slide: false })
    if (!session) throw new BffError('login_required', 'No active session.')
    if (open.full(session.sid)) {
      throw new BffError('rate_limited', 'Too many open event streams for this session.', {
        retryAfter: 5,
        logDetail: `${open.held(session.sid)} streams open`,
      })
    }
    const release = open.take(session.sid)

    c.header('cache-control', 'no-store')
    c.header('x-accel-buffering', 'no')
    const serve = async (stream: SSEStreamingApi): Promise<void> => {
      let finish!: () => void
      const done = new Promise<void>((resolve) => (finish = resolve))
      let ended = false
      const end = async (reason: string) => {
        if (ended) return
        ended = true
        await stream.writeSSE({ event: 'session_ended', data: JSON.stringify({ reason }) }).catch(() => {})
        finish()
      }

      const stopWatching = await watchSession(deps, session, (reason) => {
        // On shutdown the stream just closes; the browser reconnects elsewhere.
        if (reason === 'shutdown') finish()
        else void end(reason)
      })
      const heartbeat = setInterval(() => void stream.write(': keep-alive\n\n').catch(() => finish()), HEARTBEAT_MS)
      stream.onAbort(() => finish())

      await stream.writeSSE({
        event: 'session',
        data: JSON.stringify({ authenticated: true, expiresAt: Math.floor(session.absExp / 1000) }),
        retry: 5000,
      })
      await done
      clearInterval(heartbeat)
      stopWatching()
    }
    return streamSSE(c, async (stream) => {
      try {
        await serve(stream)
      } finally {
        release()
      }
    })
  })

  return app
}
