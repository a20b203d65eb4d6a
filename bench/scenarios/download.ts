// Scenario 3: a streamed download (BENCH_DOWNLOAD_BYTES, 10 MB by default) per
// request. Throughput in MB/s (10^6 bytes) of response body, and the time to
// the last byte. Every body is checked for its full length.

import { fmt, MB, type ScenarioReport } from '../lib/report.js'
import { DOWNLOAD_PATH } from '../lib/servers.js'
import { ratios, rowsTable, runMatrix, type Context, type Row } from './common.js'

const mbPerS = (r: Row): number => r.bytes / MB / r.seconds

export async function download(ctx: Context): Promise<ScenarioReport> {
  const { downloadConnections: levels, downloadBytes, duration, warmup } = ctx.settings
  const env = await ctx.env()
  const targets = await env.targets()
  const notes: string[] = []
  const rows = await runMatrix(
    ctx,
    'download',
    targets,
    levels,
    (t, c) => ({
      kind: 'stream',
      url: `${t.url}${DOWNLOAD_PATH}`,
      headers: env.headers,
      connections: c,
      duration,
      warmup,
      expectBytes: downloadBytes,
    }),
    notes,
  )
  const vsPlain = ratios(rows, levels, 'plain-proxy', mbPerS)
  const vsNginx = ratios(rows, levels, 'nginx', mbPerS)
  const lines = [
    `GET ${DOWNLOAD_PATH}: ${fmt(downloadBytes / MB, 1)} MB streamed per response, ${duration} s per run; p50/p99 are to the last byte`,
    '',
    ...rowsTable(rows, { head: 'MB/s', cell: (r) => fmt(mbPerS(r), 0) }),
    '',
  ]
  for (const r of rows) {
    if (r.target !== 'upstream' && r.cpuMsPerRequest?.target !== undefined && r.requests > 0) {
      lines.push(
        `${r.target} CPU per MB at ${r.connections} connection(s): ${fmt(r.cpuMsPerRequest.target / (r.bytes / r.requests / MB), 2)} ms`,
      )
    }
  }
  for (const [c, r] of Object.entries(vsPlain)) lines.push(`throughput (MB/s) tokenward / plain-proxy at ${c} connection(s): ${fmt(r, 2)}`)
  for (const [c, r] of Object.entries(vsNginx)) lines.push(`throughput (MB/s) tokenward / nginx at ${c} connection(s): ${fmt(r, 2)}`)
  return {
    name: 'download',
    lines,
    targets: [],
    data: {
      path: DOWNLOAD_PATH,
      bodyBytes: downloadBytes,
      rows: rows.map((r) => ({ ...r, mbPerS: mbPerS(r) })),
      throughputVsPlainProxy: vsPlain,
      throughputVsNginx: vsNginx,
    },
    notes,
  }
}
