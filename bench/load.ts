// Load generator child of the benchmarks (load() in bench/lib/servers.ts
// starts it): one run against one target at one concurrency. It prints
// `measuring` when the warm-up is over, then the result as one JSON line. It runs in a process of its own so that generating load never
// competes with the servers for the same event loop.
//
// Usage: node --import tsx bench/load.ts '<json LoadOptions>'

import { Agent, request } from 'node:http'
import { createHistogram, performance, type RecordableHistogram } from 'node:perf_hooks'
import autocannon from 'autocannon'
import type { LoadOptions, LoadResult } from './lib/load-types.js'

// ---------------------------------------------------------------------------
// autocannon: small requests

function cannon(
  options: LoadOptions,
  limit: { duration: number } | { amount: number },
  onResponse?: (ms: number, bytes: number) => void,
): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: options.url,
        headers: options.headers,
        method: options.method ?? 'GET',
        ...(options.body !== undefined ? { body: options.body } : {}),
        connections: options.connections,
        ...limit,
      },
      (err: Error | null, result) => (err ? reject(err) : resolve(result)),
    )
    if (onResponse) instance.on('response', (_client, _status, bytes, ms) => onResponse(ms, bytes))
  })
}

async function runCannon(options: LoadOptions): Promise<LoadResult> {
  if (options.amount !== undefined) {
    if ((options.warmupAmount ?? 0) > 0) await cannon(options, { amount: options.warmupAmount! })
  } else if (options.warmup > 0) {
    await cannon(options, { duration: options.warmup })
  }
  measuring()
  // autocannon's own latency histogram has 1 ms resolution, too coarse for a
  // loopback request that takes well under a millisecond: keep our own, in µs.
  const latency = createHistogram()
  let bytes = 0
  const started = performance.now()
  const result = await cannon(
    options,
    options.amount !== undefined ? { amount: options.amount } : { duration: options.duration },
    (ms, b) => {
      latency.record(Math.max(1, Math.round(ms * 1000)))
      bytes += b
    },
  )
  const seconds = options.amount !== undefined ? (performance.now() - started) / 1000 : result.duration
  const statusCodes: Record<string, number> = {}
  for (const [code, stat] of Object.entries(result.statusCodeStats ?? {})) statusCodes[code] = stat.count ?? 0
  const requests = Object.values(statusCodes).reduce((a, b) => a + b, 0)
  return {
    requests,
    rps: requests / seconds,
    ...percentiles(latency),
    errors: result.errors,
    timeouts: result.timeouts,
    non2xx: result.non2xx,
    statusCodes,
    seconds,
    bytes,
  }
}

// ---------------------------------------------------------------------------
// stream: large responses, node:http with a keep-alive agent, one loop per connection

interface StreamTally {
  latency: RecordableHistogram
  requests: number
  bytes: number
  errors: number
  badBodies: number
  statusCodes: Record<string, number>
}

function getOnce(url: URL, options: LoadOptions, agent: Agent): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', headers: options.headers, agent }, (res) => {
      let bytes = 0
      res.on('data', (chunk: Buffer) => (bytes += chunk.length))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }))
      res.on('error', reject)
      res.on('aborted', () => reject(new Error('response aborted')))
    })
    req.on('error', reject)
    req.end(options.body)
  })
}

async function streamFor(options: LoadOptions, seconds: number, tally?: StreamTally): Promise<number> {
  const url = new URL(options.url)
  const agent = new Agent({ keepAlive: true, maxSockets: options.connections })
  const started = performance.now()
  const end = started + seconds * 1000
  const worker = async (): Promise<void> => {
    while (performance.now() < end) {
      const t0 = performance.now()
      try {
        const { status, bytes } = await getOnce(url, options, agent)
        if (!tally) continue
        tally.latency.record(Math.max(1, Math.round((performance.now() - t0) * 1000)))
        tally.requests++
        tally.bytes += bytes
        tally.statusCodes[status] = (tally.statusCodes[status] ?? 0) + 1
        if (options.expectBytes !== undefined && status === 200 && bytes !== options.expectBytes) tally.badBodies++
      } catch {
        if (tally) tally.errors++
      }
    }
  }
  await Promise.all(Array.from({ length: options.connections }, worker))
  agent.destroy()
  return (performance.now() - started) / 1000
}

async function runStream(options: LoadOptions): Promise<LoadResult> {
  if (options.warmup > 0) await streamFor(options, options.warmup)
  measuring()
  const tally: StreamTally = { latency: createHistogram(), requests: 0, bytes: 0, errors: 0, badBodies: 0, statusCodes: {} }
  const seconds = await streamFor(options, options.duration, tally)
  const non2xx = Object.entries(tally.statusCodes)
    .filter(([code]) => !code.startsWith('2'))
    .reduce((a, [, n]) => a + n, 0)
  return {
    requests: tally.requests,
    rps: tally.requests / seconds,
    ...percentiles(tally.latency),
    errors: tally.errors,
    timeouts: 0,
    non2xx,
    statusCodes: tally.statusCodes,
    seconds,
    bytes: tally.bytes,
    badBodies: tally.badBodies,
  }
}

/** Tells the parent the measured part starts now (it samples the target's CPU time). */
function measuring(): void {
  process.stdout.write('measuring\n')
}

function percentiles(latency: RecordableHistogram): { p50Ms: number; p99Ms: number } {
  return {
    p50Ms: latency.count ? latency.percentile(50) / 1000 : NaN,
    p99Ms: latency.count ? latency.percentile(99) / 1000 : NaN,
  }
}

async function main(): Promise<void> {
  const options = JSON.parse(process.argv[2] ?? '') as LoadOptions
  const out = options.kind === 'stream' ? await runStream(options) : await runCannon(options)
  process.stdout.write(`${JSON.stringify(out)}\n`)
}

main().catch((err: unknown) => {
  process.stderr.write(`load: ${err instanceof Error ? err.stack : String(err)}\n`)
  process.exit(1)
})
