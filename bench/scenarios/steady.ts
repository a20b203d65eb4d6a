// Scenario 1, the steady state: authenticated GET with a valid access token,
// at a few concurrency levels, against the upstream itself, the plain Node
// proxy, nginx (when installed) and tokenward.

import { check, checkLine, fmt, type ScenarioReport } from '../lib/report.js'
import { PATH } from '../lib/servers.js'
import { find, perCoreLines, ratios, redisCpuLines, rowsTable, runMatrix, type Context } from './common.js'

export async function steady(ctx: Context): Promise<ScenarioReport> {
  const { connections, duration, warmup } = ctx.settings
  const env = await ctx.env()
  // The cache-off instance shows what a request costs when its session was not
  // read in the last BFF_SESSION_CACHE_MS (one Redis round trip): reported, not judged.
  const targets = [...(await env.targets()), await env.tokenwardNoCache()]
  const notes: string[] = []
  const rows = await runMatrix(
    ctx,
    'steady',
    targets,
    connections,
    (t, c) => ({ url: `${t.url}${PATH}`, headers: env.headers, connections: c, duration, warmup }),
    notes,
  )

  const vsPlain = ratios(rows, connections, 'plain-proxy')
  const vsNginx = ratios(rows, connections, 'nginx')
  const noCacheVsPlain = ratios(rows, connections, 'plain-proxy', undefined, 'tokenward-nocache')
  const tw1 = find(rows, 'tokenward', 1)
  const plain1 = find(rows, 'plain-proxy', 1)
  const addedP50Ms = tw1 && plain1 ? tw1.p50Ms - plain1.p50Ms : null

  const targetsMet = [
    ...Object.entries(vsPlain).map(([c, r]) =>
      check('steady', `throughput tokenward / plain-proxy at ${c} connection(s)`, r, '', '>=', 0.6),
    ),
    check('steady', 'added p50 latency over plain-proxy at 1 connection', addedP50Ms, 'ms', '<', 1),
  ]
  const lines = [
    `GET ${PATH} with a session cookie, ${duration} s per run after ${warmup} s warm-up`,
    '',
    ...rowsTable(rows),
    '',
    ...perCoreLines(rows),
    ...redisCpuLines(rows),
  ]
  for (const [c, r] of Object.entries(vsNginx)) lines.push(`throughput tokenward / nginx at ${c} connection(s): ${fmt(r, 2)}`)
  for (const [c, r] of Object.entries(noCacheVsPlain)) {
    lines.push(
      `throughput tokenward with BFF_SESSION_CACHE_MS=0 (a Redis read on every request) / plain-proxy at ${c} connection(s): ${fmt(r, 2)}`,
    )
  }
  for (const t of targetsMet) lines.push(checkLine(t, t.unit === 'ms' ? 3 : 2))
  return {
    name: 'steady',
    lines,
    targets: targetsMet,
    data: {
      path: PATH,
      rows,
      throughputVsPlainProxy: vsPlain,
      throughputVsNginx: vsNginx,
      noCacheThroughputVsPlainProxy: noCacheVsPlain,
      addedP50MsAtConcurrency1: addedP50Ms,
    },
    notes,
  }
}
