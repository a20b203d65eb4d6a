// Scenario 2: small POST bodies (BENCH_POST_BYTES of JSON, 1 KiB by default).
// The upstream checks that every byte arrived (x-expect-bytes) and answers 400
// otherwise, so a proxy that mangles bodies cannot pass.

import { fmt, type ScenarioReport } from '../lib/report.js'
import { PATH } from '../lib/servers.js'
import { perCoreLines, ratios, redisCpuLines, rowsTable, runMatrix, type Context } from './common.js'

/** A JSON document of exactly `bytes` bytes. */
export function jsonBody(bytes: number): string {
  const shell = JSON.stringify({ id: 42, items: [{ sku: 'A-1', qty: 2 }], note: '' })
  if (bytes <= shell.length) return shell
  return JSON.stringify({ id: 42, items: [{ sku: 'A-1', qty: 2 }], note: 'x'.repeat(bytes - shell.length) })
}

export async function post(ctx: Context): Promise<ScenarioReport> {
  const { postConnections: levels, postBytes, duration, warmup } = ctx.settings
  const env = await ctx.env()
  const targets = await env.targets()
  const body = jsonBody(postBytes)
  const headers = { ...env.headers, 'content-type': 'application/json', 'x-expect-bytes': String(Buffer.byteLength(body)) }
  const notes: string[] = []
  const rows = await runMatrix(
    ctx,
    'post',
    targets,
    levels,
    (t, c) => ({ url: `${t.url}${PATH}`, method: 'POST', body, headers, connections: c, duration, warmup }),
    notes,
  )
  const vsPlain = ratios(rows, levels, 'plain-proxy')
  const vsNginx = ratios(rows, levels, 'nginx')
  const lines = [
    `POST ${PATH} with ${Buffer.byteLength(body)} bytes of JSON and a session cookie, ${duration} s per run`,
    '',
    ...rowsTable(rows),
    '',
    ...perCoreLines(rows),
    ...redisCpuLines(rows),
  ]
  for (const [c, r] of Object.entries(vsPlain)) lines.push(`throughput tokenward / plain-proxy at ${c} connection(s): ${fmt(r, 2)}`)
  for (const [c, r] of Object.entries(vsNginx)) lines.push(`throughput tokenward / nginx at ${c} connection(s): ${fmt(r, 2)}`)
  return {
    name: 'post',
    lines,
    targets: [],
    data: { path: PATH, bodyBytes: Buffer.byteLength(body), rows, throughputVsPlainProxy: vsPlain, throughputVsNginx: vsNginx },
    notes,
  }
}
