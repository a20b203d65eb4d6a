// What the scenarios share: the context they run in, and "every target at
// every concurrency level" runs with their table and ratios.

import type { MainEnv, Target } from '../lib/env.js'
import type { LoadOptions, LoadResult } from '../lib/load-types.js'
import { BenchFailure, fmt, table } from '../lib/report.js'
import { redisCpuSeconds } from '../lib/redis.js'
import { load, processCpu, type CpuMeter } from '../lib/servers.js'
import type { Settings } from '../lib/settings.js'

export interface Context {
  settings: Settings
  /** The shared environment, started on first use. */
  env(): Promise<MainEnv>
  /** Progress on stderr. */
  log(message: string): void
}

export interface Row extends LoadResult {
  target: Target['name']
  connections: number
}

/**
 * Runs every target at every level, one load-generator child per run. Any
 * answer but 200 from tokenward fails the scenario: error responses are
 * cheap, and a run that measures them flatters tokenward.
 */
export async function runMatrix(
  ctx: Context,
  scenario: string,
  targets: Target[],
  levels: number[],
  options: (target: Target, connections: number) => LoadOptions,
  notes: string[],
): Promise<Row[]> {
  const rows: Row[] = []
  for (const target of targets) {
    for (const connections of levels) {
      const env = await ctx.env()
      const meters: Record<string, CpuMeter> = target.pid !== undefined ? { target: processCpu(target.pid) } : {}
      const isTokenward = target.name === 'tokenward' || target.name === 'tokenward-nocache'
      if (isTokenward) meters.redis = () => redisCpuSeconds(env.redis)
      const result = await load(options(target, connections), meters)
      const row: Row = { target: target.name, connections, ...result }
      rows.push(row)
      ctx.log(
        `  ${scenario} ${target.name} c=${connections}: ${fmt(row.rps, 0)} req/s, p50 ${fmt(row.p50Ms, 3)} ms, p99 ${fmt(row.p99Ms, 3)} ms, status ${JSON.stringify(row.statusCodes)}, errors ${row.errors}`,
      )
      const other = Object.keys(row.statusCodes).filter((code) => code !== '200')
      const wrong = other.length > 0 || row.requests === 0 || row.errors > 0 || (row.badBodies ?? 0) > 0
      if (isTokenward && wrong) {
        throw new BenchFailure(
          `${scenario}: tokenward answered ${JSON.stringify(row.statusCodes)} with ${row.errors} connection errors` +
            `${row.badBodies ? ` and ${row.badBodies} truncated bodies` : ''} at ${connections} connections: not a benchmark of proxying\n${env.tokenward.output()}`,
        )
      }
      if (wrong)
        notes.push(`${target.name} at ${connections} connections answered ${JSON.stringify(row.statusCodes)} with ${row.errors} errors`)
    }
  }
  return rows
}

export const find = (rows: Row[], target: string, connections: number): Row | undefined =>
  rows.find((r) => r.target === target && r.connections === connections)

/** tokenward's throughput divided by a baseline's, per concurrency level. */
export function ratios(
  rows: Row[],
  levels: number[],
  baseline: 'plain-proxy' | 'nginx',
  metric: (r: Row) => number = (r) => r.rps,
  subject: 'tokenward' | 'tokenward-nocache' = 'tokenward',
): Record<string, number> {
  const out: Record<string, number> = {}
  for (const c of levels) {
    const tw = find(rows, subject, c)
    const base = find(rows, baseline, c)
    if (tw && base) out[c] = metric(tw) / metric(base)
  }
  return out
}

export function rowsTable(rows: Row[], extra?: { head: string; cell: (r: Row) => string }): string[] {
  const head = ['target', 'connections', 'req/s', 'p50 ms', 'p99 ms', 'CPU ms/req', 'errors', 'non-2xx']
  if (extra) head.splice(3, 0, extra.head)
  return table(
    head,
    rows.map((r) => {
      const cells = [
        r.target,
        String(r.connections),
        fmt(r.rps, 0),
        fmt(r.p50Ms, 3),
        fmt(r.p99Ms, 3),
        fmt(r.cpuMsPerRequest?.target, 3),
        String(r.errors),
        String(r.non2xx),
      ]
      if (extra) cells.splice(3, 0, extra.cell(r))
      return cells
    }),
  )
}

/** tokenward's Redis cost, from the tokenward rows: Redis CPU µs per request. */
export function redisCpuLines(rows: Row[]): string[] {
  return rows
    .filter((r) => r.target.startsWith('tokenward') && r.cpuMsPerRequest?.redis !== undefined)
    .map((r) => `Redis CPU per ${r.target} request at ${r.connections} connection(s): ${fmt(r.cpuMsPerRequest!.redis! * 1000, 1)} µs`)
}

/** CPU per request of tokenward and what it means: requests per second one core sustains. */
export function perCoreLines(rows: Row[]): string[] {
  return rows
    .filter((r) => r.target.startsWith('tokenward') && r.cpuMsPerRequest?.target !== undefined)
    .map(
      (r) =>
        `${r.target} CPU per request at ${r.connections} connection(s): ${fmt(r.cpuMsPerRequest!.target!, 3)} ms, i.e. about ${fmt(1000 / r.cpuMsPerRequest!.target!, 0)} requests/s per core`,
    )
}
