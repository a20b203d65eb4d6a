import type { Logger } from '../log.js'
import type { SessionEventHub } from '../session/events.js'
import type { Session } from '../session/sessions.js'
import type { SessionRecords } from '../store/types.js'

/** What watching needs: the event hub, the raw session entries (no decryption), the clock and a logger. */
export interface WatchDeps {
  readonly events: Pick<SessionEventHub, 'listen' | 'onClose'>
  readonly store: { readonly records: Pick<SessionRecords, 'read'> }
  readonly now: () => number
  readonly logger: Pick<Logger, 'error'>
}

/**
 * Calls `onEnd(reason)` once when the session ends: an event from any instance
 * (logout, back-channel logout, revoke, rejected refresh) or its expiry, which
 * produces no event and is checked when the session would lapse. Returns a
 * function that stops watching. Used by the event stream and WebSocket proxying.
 */
export async function watchSession(deps: WatchDeps, session: Session, onEnd: (reason: string) => void): Promise<() => void> {
  let stopped = false
  let timer: NodeJS.Timeout | undefined
  const end = (reason: string) => {
    if (stopped) return
    stop()
    onEnd(reason)
  }
  const stopListening = await deps.events.listen(session.sid, (e) => end(e.reason))
  const stopOnClose = deps.events.onClose(() => end('shutdown'))
  // One look at the session's entry, then the next one scheduled.
  const look = async (): Promise<void> => {
    let r: Awaited<ReturnType<SessionRecords['read']>>
    try {
      r = await deps.store.records.read(session.sid, { slideMs: 0, now: deps.now() })
    } catch {
      if (!stopped) check(deps.now() + 5000) // the store is down: look again shortly, keep the connection
      return
    }
    if (stopped) return // stopped while reading: no new timer once nobody listens
    if (!r) return end('session_expired')
    check(Math.min(r.entry.absExp, deps.now() + r.ttlMs))
  }
  const check = (at: number) => {
    timer = setTimeout(
      () => {
        // A failed read is handled in look(); what is left failing is onEnd or
        // unsubscribing, a bug: log it rather than leave an unhandled rejection,
        // which ends the process.
        look().catch((err: unknown) => deps.logger.error({ err, sid: session.sid }, 'watching the session failed'))
      },
      Math.max(100, at - deps.now() + 100),
    )
    timer.unref()
  }
  const stop = () => {
    if (stopped) return
    stopped = true
    clearTimeout(timer)
    stopListening()
    stopOnClose()
  }
  check(Math.min(session.absExp, session.idleExp))
  return stop
}
