// Child processes and cleanup for the benchmarks. Every child and server is
// registered the moment it exists, so an error or Ctrl-C at any point leaves
// nothing running.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

export const benchDir = join(import.meta.dirname, '..')
export const root = join(benchDir, '..')

const children = new Set<ChildProcess>()
const closers: Array<() => Promise<void> | void> = []

/** Runs `close` at cleanup, after every child has stopped; last registered, first run. */
export function onCleanup(close: () => Promise<void> | void): void {
  closers.push(close)
}

export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  const force = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(force)
}

let cleaning: Promise<void> | undefined
export function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await Promise.allSettled([...children].map(stopChild))
    for (const close of closers.reverse())
      await Promise.resolve()
        .then(close)
        .catch(() => {})
  })()
  return cleaning
}

/** True once cleanup started (after Ctrl-C the children die first; their failures are not news). */
export function isCleaning(): boolean {
  return cleaning !== undefined
}

export function installSignalHandlers(): void {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      console.error(`\n${signal}: stopping everything`)
      void cleanup().finally(() => process.exit(130))
    })
  }
}

export function track(child: ChildProcess): ChildProcess {
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

export interface NodeChild {
  child: ChildProcess
  /** The last 8,000 characters of its stdout and stderr, for error messages. */
  output: () => string
}

/** A node child whose last output is kept for error messages. */
export function startNode(args: string[], env: NodeJS.ProcessEnv = process.env): NodeChild {
  // stdin stays a pipe: bench/plain-proxy.ts and the load generators exit when
  // it closes, i.e. when we die.
  const child = track(spawn(process.execPath, args, { cwd: root, env, stdio: ['pipe', 'pipe', 'pipe'] }))
  let out = ''
  const keep = (d: Buffer): void => {
    out = (out + d.toString()).slice(-8000)
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  return { child, output: () => out }
}

/** A node child running a TypeScript file of bench/ through tsx. */
export function startTs(file: string, args: string[] = []): NodeChild {
  return startNode(['--import', 'tsx', join(benchDir, file), ...args])
}

/**
 * Runs a bench/ TypeScript child to its end and parses the last line of its
 * stdout as JSON; `onLine` sees every line as it arrives.
 */
export async function runTsJson<T>(file: string, args: string[], onLine?: (line: string) => void): Promise<T> {
  const { child, output } = startTs(file, args)
  let stdout = ''
  let seen = 0
  child.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString()
    if (!onLine) return
    let nl: number
    while ((nl = stdout.indexOf('\n', seen)) >= 0) {
      onLine(stdout.slice(seen, nl))
      seen = nl + 1
    }
  })
  const [code] = (await once(child, 'exit')) as [number | null]
  if (code !== 0) throw new Error(`${file} failed (${code}):\n${output()}`)
  const last = stdout.trim().split('\n').at(-1) ?? ''
  return JSON.parse(last) as T
}

export async function waitFor(what: string, check: () => Promise<boolean>, child?: NodeChild, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (child && child.child.exitCode !== null) throw new Error(`${what} exited with ${child.child.exitCode}:\n${child.output()}`)
    if (await check().catch(() => false)) return
    await sleep(100)
  }
  throw new Error(`${what} not ready within ${timeoutMs / 1000} s${child ? `:\n${child.output()}` : ''}`)
}

export const answers200 =
  (url: string, headers: Record<string, string> = {}) =>
  async () =>
    (await fetch(url, { headers })).status === 200

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Resident set size of a process in bytes (Linux: VmRSS from /proc/<pid>/status). */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1]
  if (kb === undefined) throw new Error(`no VmRSS for process ${pid}`)
  return Number(kb) * 1024
}

const CLOCK_TICKS = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })
  return Number(r.stdout?.trim()) || 100
})()

/** CPU time (user + system) a process has used so far, in seconds (Linux: /proc/<pid>/stat). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name, which is in parentheses and may contain spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS
}
