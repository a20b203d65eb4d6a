// npm run soak: mixed traffic from many sessions against two tokenward
// processes while Redis, the IdP and one tokenward process fail and come back.
// SOAK_DURATION (seconds, 600), SOAK_SESSIONS (50), SOAK_RPS (200).
// Prints a summary, writes JSON to soak/results/, and exits 1 when a session
// was lost or the IdP saw an invalid_grant. See soak/README.md.

import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { optionsFromEnv, type SoakOptions } from './options.js'
import { runSoak } from './soak.js'
import { summary } from './analyze.js'

const log = (line: string) => process.stderr.write(`[soak ${new Date().toISOString().slice(11, 19)}] ${line}\n`)

let options: SoakOptions
try {
  options = optionsFromEnv(process.env, log)
} catch (err) {
  log((err as Error).message)
  process.exit(2)
}

const stop = new AbortController()
let signals = 0
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    // First signal: stop the traffic, clean up, still write what was measured.
    // Second: leave at once (tokenward children end with us: see PARENT_GUARD).
    if (++signals > 1) process.exit(130)
    log(`${sig}: stopping; the report will be marked interrupted (again to quit at once)`)
    stop.abort()
  })
}

// A bound on the whole run, whatever hangs: build, logins, the run, the drain, cleanup.
const watchdogMs = (options.durationS + 300) * 1000
const watchdog = setTimeout(() => {
  log(`still running ${watchdogMs / 1000} s after the start: giving up`)
  stop.abort()
  setTimeout(() => process.exit(1), 60_000).unref()
}, watchdogMs)
watchdog.unref()

try {
  const report = await runSoak(options, { signal: stop.signal })
  process.stdout.write(`\n${summary(report)}\n`)
  const dir = join(import.meta.dirname, 'results')
  mkdirSync(dir, { recursive: true })
  const file = join(dir, `soak-${report.startedAt.replace(/[:.]/g, '-')}.json`)
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`)
  process.stdout.write(`\nwritten to ${file}\n`)
  process.exitCode = report.interrupted ? 130 : report.verdict.pass ? 0 : 1
} catch (err) {
  log(`soak failed: ${(err as Error)?.stack ?? String(err)}`)
  process.exitCode = 1
} finally {
  clearTimeout(watchdog)
}
