// Tables, targets and the machine description shared by every scenario.

import { spawnSync } from 'node:child_process'
import { cpus as cpuList, loadavg, platform, release, totalmem } from 'node:os'
import { root } from './procs.js'

export const fmt = (n: number | null | undefined, digits: number): string =>
  typeof n === 'number' && Number.isFinite(n) ? n.toFixed(digits) : '-'

/** A plain-text table: the `left` columns named (first by default) left-aligned, the others right-aligned. */
export function table(head: string[], body: string[][], left: number[] = [0]): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)))
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (left.includes(i) ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd()
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)]
}

/** A number compared with one of issue 7's targets. Missing a target never fails a run. */
export interface TargetCheck {
  scenario: string
  name: string
  value: number | null
  unit: string
  /** Human-readable, e.g. `>= 0.60`. */
  target: string
  met: boolean | null
}

export function check(
  scenario: string,
  name: string,
  value: number | null,
  unit: string,
  op: '<=' | '<' | '>=',
  limit: number,
): TargetCheck {
  const met = value === null || !Number.isFinite(value) ? null : op === '<=' ? value <= limit : op === '<' ? value < limit : value >= limit
  return { scenario, name, value, unit, target: `${op} ${limit}${unit ? ` ${unit}` : ''}`, met }
}

export function checkLine(c: TargetCheck, digits = 2): string {
  const verdict = c.met === null ? 'NOT MEASURED' : c.met ? 'met' : 'MISSED'
  return `target ${c.name}: ${fmt(c.value, digits)}${c.unit ? ` ${c.unit}` : ''} (target ${c.target}): ${verdict}`
}

export interface ScenarioReport {
  name: string
  /** Table and summary lines, printed on stdout. */
  lines: string[]
  targets: TargetCheck[]
  /** Everything measured, for the JSON file. */
  data: Record<string, unknown>
  notes: string[]
  /** Wrong behaviour found after measuring (the numbers are still shown): the run exits non-zero. */
  failures?: string[]
}

/** Thrown for wrong behaviour (as opposed to a missed target): the run exits non-zero. */
export class BenchFailure extends Error {}

export function machine() {
  const cpus = cpuList()
  const git = spawnSync('git', ['describe', '--always', '--dirty'], { cwd: root, encoding: 'utf8' })
  return {
    cpuModel: cpus[0]?.model ?? 'unknown',
    cpuCount: cpus.length,
    totalMemoryBytes: totalmem(),
    node: process.version,
    platform: `${platform()} ${release()}`,
    loadAverageAtStart: loadavg(),
    commit: git.status === 0 ? git.stdout.trim() : null,
  }
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[i]!
}

export const MB = 1e6
export const KiB = 1024
export const MiB = 1024 * 1024
