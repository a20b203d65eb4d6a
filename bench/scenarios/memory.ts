// Scenario 7: does tokenward's resident memory grow with the number of
// requests served? RSS (VmRSS from /proc) of the tokenward process after a
// warm-up, sampled while BENCH_MEMORY_REQUESTS (1,000,000) steady-state GETs
// run, and after them. Growth = (after - after warm-up) / after warm-up.
// No forced GC (tokenward runs as in production): the number includes
// whatever garbage V8 has not collected yet, which is what an operator sees.

import { check, checkLine, fmt, MiB, table, BenchFailure, type ScenarioReport } from '../lib/report.js'
import { rssBytes, sleep } from '../lib/procs.js'
import { load, PATH } from '../lib/servers.js'
import type { Context } from './common.js'

export async function memory(ctx: Context): Promise<ScenarioReport> {
  const env = await ctx.env()
  const { memoryRequests: n, memoryConnections: connections } = ctx.settings
  const pid = env.tokenward.pid
  const url = `${env.tokenward.url}${PATH}`
  const warmupRequests = Math.max(10_000, Math.round(n / 20))

  const initial = rssBytes(pid)
  await load({ url, headers: env.headers, connections, duration: 0, warmup: 0, amount: warmupRequests })
  await sleep(2000)
  const warm = rssBytes(pid)
  ctx.log(
    `  memory: RSS ${fmt(warm / MiB, 1)} MiB after ${warmupRequests} warm-up requests; ${n} more now (about ${fmt(n / 4000, 0)} s at 4k req/s)`,
  )

  const samples: Array<{ atSeconds: number; rssBytes: number }> = []
  const t0 = Date.now()
  const sampler = setInterval(() => {
    try {
      samples.push({ atSeconds: (Date.now() - t0) / 1000, rssBytes: rssBytes(pid) })
    } catch {
      // the process is gone: the load run reports it
    }
  }, 5000)
  let result
  try {
    result = await load({ url, headers: env.headers, connections, duration: 0, warmup: 0, amount: n })
  } finally {
    clearInterval(sampler)
  }
  if ((result.statusCodes['200'] ?? 0) !== result.requests || result.requests < n || result.errors > 0) {
    throw new BenchFailure(
      `memory: tokenward answered ${JSON.stringify(result.statusCodes)} with ${result.errors} errors to ${n} requests\n${env.tokenward.output()}`,
    )
  }
  await sleep(2000)
  const after = rssBytes(pid)
  const peak = Math.max(after, ...samples.map((s) => s.rssBytes))
  const growthPercent = ((after - warm) / warm) * 100
  const targets = [check('memory', `RSS growth over ${n} requests`, growthPercent, '%', '<=', 10)]
  const lines = [
    `${n} GET ${PATH} at ${connections} connections in ${fmt(result.seconds, 0)} s (${fmt(result.rps, 0)} req/s, p99 ${fmt(result.p99Ms, 3)} ms)`,
    '',
    ...table(
      ['tokenward RSS', 'MiB'],
      [
        ['at start of scenario', fmt(initial / MiB, 1)],
        [`after ${warmupRequests} warm-up requests`, fmt(warm / MiB, 1)],
        [`peak while serving ${n}`, fmt(peak / MiB, 1)],
        [`after ${n} requests`, fmt(after / MiB, 1)],
      ],
    ),
    '',
    checkLine(targets[0]!, 1),
  ]
  return {
    name: 'memory',
    lines,
    targets,
    data: {
      requests: result.requests,
      connections,
      warmupRequests,
      seconds: result.seconds,
      rps: result.rps,
      p50Ms: result.p50Ms,
      p99Ms: result.p99Ms,
      rssBytes: { initial, afterWarmup: warm, peak, after },
      growthPercent,
      samples,
    },
    notes: [],
  }
}
