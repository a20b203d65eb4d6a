// Load generator child of bench/proxy.ts: one autocannon run against one
// target at one concurrency, printed as one JSON line on stdout. It runs in a
// process of its own so that generating load never competes with the servers
// for the same event loop.
//
// Usage: node --import tsx bench/load.ts '<json LoadOptions>'

import { createHistogram } from 'node:perf_hooks'
import autocannon from 'autocannon'

export interface LoadOptions {
  url: string
  headers: Record<string, string>
  connections: number
  /** Seconds measured. */
  duration: number
  /** Seconds run first and thrown away: connection setup, JIT, pools. */
  warmup: number
}

export interface LoadResult {
  requests: number
  /** Responses per second over the measured run. */
  rps: number
  p50Ms: number
  p99Ms: number
  /** Connection errors and timeouts. */
  errors: number
  timeouts: number
  non2xx: number
  statusCodes: Record<string, number>
  seconds: number
}

function run(options: LoadOptions, duration: number, onResponse?: (ms: number) => void): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      { url: options.url, headers: options.headers, connections: options.connections, duration },
      (err: unknown, result) => (err ? reject(err) : resolve(result)),
    )
    if (onResponse) instance.on('response', (_client, _status, _bytes, ms) => onResponse(ms))
  })
}

async function main(): Promise<void> {
  const options = JSON.parse(process.argv[2] ?? '') as LoadOptions
  if (options.warmup > 0) await run(options, options.warmup)
  // autocannon's own latency histogram has 1 ms resolution, too coarse for a
  // loopback request that takes well under a millisecond: keep our own, in µs.
  const latency = createHistogram()
  const result = await run(options, options.duration, (ms) => latency.record(Math.max(1, Math.round(ms * 1000))))
  const statusCodes: Record<string, number> = {}
  for (const [code, stat] of Object.entries(result.statusCodeStats ?? {})) statusCodes[code] = stat.count ?? 0
  const requests = Object.values(statusCodes).reduce((a, b) => a + b, 0)
  const out: LoadResult = {
    requests,
    rps: requests / result.duration,
    p50Ms: latency.count ? latency.percentile(50) / 1000 : NaN,
    p99Ms: latency.count ? latency.percentile(99) / 1000 : NaN,
    errors: result.errors,
    timeouts: result.timeouts,
    non2xx: result.non2xx,
    statusCodes,
    seconds: result.duration,
  }
  process.stdout.write(`${JSON.stringify(out)}\n`)
}

main().catch((err: unknown) => {
  process.stderr.write(`load: ${err instanceof Error ? err.stack : String(err)}\n`)
  process.exit(1)
})
