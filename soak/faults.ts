// The fault schedule: one fault at a time, at planned moments after traffic
// starts. Each fault is undone even when the run is stopped early, so cleanup
// never meets a paused Redis or a stopped IdP it does not expect.

import type { FaultKind, PlannedFault } from './options.js'
import type { Stack } from './stack.js'
import { sleep } from './sleep.js'

export interface FaultRecord {
  kind: FaultKind
  holdMs: number
  /** Epoch ms: the fault began (kill sent, SIGSTOP sent, IdP listener closed). */
  start: number
  /** Epoch ms: the component is back (Redis answers PING, IdP listens, tokenward /readyz is 200). */
  end?: number
  detail: string
  error?: string
}

async function inject(stack: Stack, f: PlannedFault, rec: FaultRecord, stop: AbortSignal): Promise<void> {
  const victim = stack.instances[1]
  switch (f.kind) {
    case 'redis_restart':
      // SIGKILL, like a crash; the append-only file (fsync always) brings the data back.
      await stack.redis.stop()
      await sleep(f.holdMs, stop)
      await stack.redis.start()
      return
    case 'redis_pause':
      // SIGSTOP: connections stay open and nothing answers, the nastier outage.
      stack.redis.pause()
      try {
        await sleep(f.holdMs, stop)
      } finally {
        stack.redis.resume()
      }
      return
    case 'idp_stop':
      await stack.idp.stop()
      try {
        await sleep(f.holdMs, stop)
      } finally {
        await stack.idp.start()
      }
      return
    case 'tokenward_kill':
      // Always B: A lives through the whole run, so its memory and its logs
      // cover everything, and A's port is the IdP's redirect URI.
      rec.detail = `tokenward ${victim.name} pid ${victim.current?.pid} SIGKILL`
      await victim.kill()
      await sleep(f.holdMs, stop)
      await victim.start()
      rec.detail += `, restarted as pid ${victim.current?.pid}`
      return
  }
}

/**
 * Runs the plan relative to `t0` (epoch ms), appending to `done` as it goes (so
 * a failure still leaves the record); resolves when the last fault is undone or
 * the run stops.
 */
export async function runFaults(
  stack: Stack,
  plan: readonly PlannedFault[],
  t0: number,
  stop: AbortSignal,
  log: (line: string) => void,
  done: FaultRecord[],
): Promise<void> {
  for (const f of plan) {
    await sleep(t0 + f.at - Date.now(), stop)
    if (stop.aborted) break
    const rec: FaultRecord = { kind: f.kind, holdMs: f.holdMs, start: Date.now(), detail: f.kind }
    done.push(rec)
    log(`fault ${f.kind} at +${((rec.start - t0) / 1000).toFixed(1)} s (${f.holdMs} ms)`)
    try {
      await inject(stack, f, rec, stop)
      rec.end = Date.now()
      log(`  ${f.kind} recovered after ${((rec.end - rec.start) / 1000).toFixed(1)} s${rec.detail !== f.kind ? `: ${rec.detail}` : ''}`)
    } catch (err) {
      rec.error = (err as Error)?.message ?? String(err)
      log(`  ${f.kind} failed: ${rec.error}`)
      // A component that did not come back invalidates the rest of the run.
      throw new Error(`fault ${f.kind} could not be undone: ${rec.error}`, { cause: err })
    }
  }
}
