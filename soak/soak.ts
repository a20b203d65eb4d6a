// One soak run from start to report: build, start the stack, log the sessions
// in, send traffic while the fault schedule runs, check every surviving
// session, stop everything, and analyse. Shared by `npm run soak` and the
// 60-second test, so both exercise the same machinery.

import { spawnSync } from 'node:child_process'
import { cpus, platform, release, totalmem } from 'node:os'
import { join } from 'node:path'
import { analyze, type MemorySample, type SoakReport } from './analyze.js'
import { runFaults, type FaultRecord } from './faults.js'
import type { SoakOptions } from './options.js'
import { buildTokenward, Cleanup, ROOT, startStack, type Stack } from './stack.js'
import { Traffic } from './traffic.js'
import { sleep } from './sleep.js'

export type { SoakReport } from './analyze.js'

function machine(): Record<string, unknown> {
  const git = spawnSync('git', ['describe', '--always', '--dirty'], { cwd: ROOT, encoding: 'utf8' })
  return {
    cpuModel: cpus()[0]?.model ?? 'unknown',
    cpuCount: cpus().length,
    totalMemoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${platform()} ${release()}`,
    commit: git.status === 0 ? git.stdout.trim() : null,
  }
}

/**
 * Runs a soak and returns its report. `signal` ends the traffic early (Ctrl-C):
 * the report is still produced, marked interrupted. `cli` is an already built
 * `cli.js` (the test builds in its setup); without it the production bundle is
 * built first. Everything started is stopped before this returns or throws.
 */
export async function runSoak(o: SoakOptions, run: { signal?: AbortSignal; cli?: string } = {}): Promise<SoakReport> {
  const { signal } = run
  const cleanup = new Cleanup()
  const startedAt = Date.now()
  const log = o.log
  let stack: Stack | undefined
  try {
    let cli = run.cli
    if (!cli) {
      // Under the repository (so the bundle resolves node_modules), in the
      // directory the tests already use for builds (ignored by git), removed after.
      const outDir = join(ROOT, '.test-dist', `soak-${process.pid}-${startedAt}`)
      log('building the production bundle (tsc -p tsconfig.build.json) ...')
      await buildTokenward(outDir, cleanup)
      cli = join(outDir, 'cli.js')
    }
    stack = await startStack({ accessTokenTtlS: o.accessTokenTtlS, refreshSkewS: o.refreshSkewS, cli, cleanup })
    const [a, b] = stack.instances
    log(
      `redis ${stack.redis.url} (persistent), IdP ${stack.idp.issuer}, upstream ${stack.upstream.url}, tokenward A ${a.url} (pid ${a.current?.pid}, public URL), B ${b.url} (pid ${b.current?.pid})`,
    )

    // Memory of every tokenward process, every 5 s.
    const memory: MemorySample[] = []
    const sample = () => {
      for (const p of stack!.instances) {
        const kb = p.rssKb()
        if (kb !== undefined) memory.push({ at: Date.now(), instance: p.name, incarnation: p.current!.n, pid: p.current!.pid, rssKb: kb })
      }
    }
    const sampler = setInterval(sample, 5000)
    cleanup.add(() => clearInterval(sampler))

    // The echo upstream records every request; count and forget them, or a
    // 10-minute run would hold 100 000 requests' headers.
    const upstream = { requests: 0, withoutAuthorization: 0 }
    const drainUpstream = () => {
      for (const r of stack!.upstream.requests) {
        upstream.requests++
        if (!r.headers.authorization?.startsWith('Bearer ')) upstream.withoutAuthorization++
      }
      stack!.upstream.requests.length = 0
    }
    const drainer = setInterval(drainUpstream, 1000)
    cleanup.add(() => clearInterval(drainer))

    const traffic = new Traffic({
      instances: stack.instances,
      rps: o.rps,
      churnEveryMs: o.churnEveryMs,
      requestTimeoutMs: o.requestTimeoutMs,
      log,
    })
    log(`logging in ${o.sessions} sessions ...`)
    await traffic.loginMany(o.sessions)
    if (traffic.activeCount < o.sessions && !signal?.aborted)
      throw new Error(`only ${traffic.activeCount} of ${o.sessions} sessions logged in`)
    // Logins cost refresh-free token grants; the counts that matter start here.
    sample()
    traffic.start()
    const t0 = traffic.startedAt
    log(`traffic: ${o.rps} req/s for ${o.durationS} s, ${o.faults.length} faults planned`)

    const faultStop = new AbortController()
    const faults: FaultRecord[] = []
    let error: string | undefined
    const faultRun = runFaults(stack, o.faults, t0, faultStop.signal, log, faults).catch((err: Error) => {
      error = err.message
    })
    const progress = setInterval(
      () => {
        const recs = traffic.records
        const failed = recs.reduce((n, r) => n + (r.outcome === 'ok' ? 0 : 1), 0)
        const rss = stack!.instances.map((p) => `${p.name} ${((p.rssKb() ?? 0) / 1024).toFixed(0)} MiB`).join(', ')
        log(
          `+${((Date.now() - t0) / 1000).toFixed(0)} s: ${recs.length} requests, ${failed} failed, ${traffic.activeCount} live sessions, ${traffic.inflight} in flight, ${stack!.idp.counts.refreshGrants} refresh grants, invalid_grant ${stack!.idp.counts.invalidGrants}, RSS ${rss}`,
        )
      },
      o.durationS >= 180 ? 30_000 : 10_000,
    )
    cleanup.add(() => clearInterval(progress))

    // The run: until the duration is up, Ctrl-C, or a fault that cannot be undone.
    const stopEarly = new AbortController()
    signal?.addEventListener('abort', () => stopEarly.abort(), { once: true })
    void faultRun.then(() => {
      if (error) stopEarly.abort()
    })
    await sleep(t0 + o.durationS * 1000 - Date.now(), stopEarly.signal)
    clearInterval(progress)
    faultStop.abort()
    await faultRun
    log('stopping traffic, waiting for requests in flight ...')
    await traffic.stop()
    const tEnd = traffic.stoppedAt
    // After Ctrl-C the terminal's SIGINT has reached redis-server too: a final
    // check would only measure that.
    if (!signal?.aborted) {
      log('final check: every live session calls the API on both instances ...')
      await traffic.finalCheck()
    }
    sample()
    drainUpstream()
    const metrics: Record<string, Record<string, number> | undefined> = {}
    for (const p of stack.instances) metrics[`${p.name}#${p.current?.n}`] = await p.refreshMetrics()
    const idp = { ...stack.idp.counts }
    // Stopped before the analysis so every log line they wrote has been read.
    await Promise.all(stack.instances.map((p) => p.stop()))

    const { log: _log, ...settings } = o
    return analyze({
      options: settings,
      startedAt,
      t0,
      tEnd,
      interrupted: signal?.aborted ?? false,
      records: traffic.records,
      sessions: traffic.sessions,
      skipped: traffic.skipped,
      faults,
      audits: stack.logs.audits,
      warnings: stack.logs.warnings(),
      unparsableLogLines: stack.logs.unparsable,
      idp,
      memory,
      incarnations: Object.fromEntries(stack.instances.map((p) => [p.name, p.incarnations])),
      metrics,
      upstream,
      machine: machine(),
      ...(error ? { error } : {}),
    })
  } catch (err) {
    // Say what the processes said before they are gone.
    for (const p of stack?.instances ?? []) {
      const tail = p.current?.stderrTail
      if (tail) log(`tokenward ${p.name} stderr: ${tail}`)
    }
    throw err
  } finally {
    await cleanup.run()
  }
}
