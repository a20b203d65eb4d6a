// Runs the chosen scenarios one after the other, prints each one's table and
// targets on stdout (progress on stderr), and writes one JSON file to
// bench/results/. Missing a target never fails the run; wrong behaviour
// (non-200 in the steady state, a refresh count that differs from the session
// count, ...) does, after everything else has run and been written.

import { mkdirSync, writeFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { download } from '../scenarios/download.js'
import { memory } from '../scenarios/memory.js'
import { post } from '../scenarios/post.js'
import { redisScenario } from '../scenarios/redis.js'
import { sessions } from '../scenarios/sessions.js'
import { steady } from '../scenarios/steady.js'
import { storm } from '../scenarios/storm.js'
import type { Context } from '../scenarios/common.js'
import { startMainEnv, type MainEnv } from './env.js'
import { benchDir, cleanup, installSignalHandlers, isCleaning } from './procs.js'
import { fmt, machine, table, type ScenarioReport, type TargetCheck } from './report.js'
import { buildTokenward, hasNginx } from './servers.js'
import { readSettings, SettingsError, type ScenarioName, type Settings } from './settings.js'

const scenarios: Record<ScenarioName, (ctx: Context) => Promise<ScenarioReport>> = {
  steady,
  post,
  download,
  redis: redisScenario,
  sessions,
  memory,
  storm,
}

/** A rough duration, so whoever starts a run knows whether to get coffee. */
function estimateSeconds(s: Settings): number {
  const targets = hasNginx() ? 4 : 3
  const run = s.duration + s.warmup + 1
  const per: Record<ScenarioName, number> = {
    steady: targets * s.connections.length * run,
    post: targets * s.postConnections.length * run,
    download: targets * s.downloadConnections.length * run,
    redis: 5 + s.redisRequests / 3000,
    sessions: (1 + 2 * s.sessionsRounds) * run + s.sessionsRounds * (s.sessions / 10_000 + 2),
    memory: (s.memoryRequests * 1.05) / 3500 + 10,
    storm: s.stormSessions / 40 + 25 + (s.stormSessions * s.stormConcurrency) / 2000,
  }
  return 15 + s.scenarios.reduce((a, name) => a + per[name], 0)
}

export async function runBench(options: { scenarios?: ScenarioName[]; resultPrefix: string }): Promise<void> {
  installSignalHandlers()
  let settings: Settings
  try {
    settings = readSettings(options.scenarios ? { scenarios: options.scenarios } : {})
  } catch (err) {
    if (err instanceof SettingsError) {
      console.error(err.message)
      process.exit(2)
    }
    throw err
  }

  const startedAt = new Date()
  const info = machine()
  const notes: string[] = []
  const [load1 = 0] = info.loadAverageAtStart
  // Two cores: anything else running (a test suite, a build) skews every number.
  if (load1 > 0.5) notes.push(`the machine was busy when the run started (load average ${load1.toFixed(2)}): numbers are noisy`)
  const reports: ScenarioReport[] = []
  const failures: Array<{ scenario: string; message: string }> = []

  try {
    console.error(`scenarios: ${settings.scenarios.join(', ')}; about ${fmt(estimateSeconds(settings) / 60, 0)} min`)
    console.error('building tokenward into bench/.dist ...')
    buildTokenward()
    let env: Promise<MainEnv> | undefined
    const ctx: Context = {
      settings,
      env: () => (env ??= startMainEnv(settings.downloadBytes)),
      log: (m) => console.error(m),
    }
    console.log(
      `tokenward benchmark: ${info.cpuCount} x ${info.cpuModel}, ${(info.totalMemoryBytes / 2 ** 30).toFixed(1)} GiB, Node ${info.node}, commit ${info.commit}, load average ${info.loadAverageAtStart.map((l) => l.toFixed(2)).join(' ')}`,
    )

    for (const name of settings.scenarios) {
      console.error(`\n[${name}] ${new Date().toISOString()}`)
      const t0 = Date.now()
      try {
        const report = await scenarios[name](ctx)
        reports.push(report)
        for (const f of report.failures ?? []) failures.push({ scenario: name, message: f })
        console.log(`\n== ${name} (${fmt((Date.now() - t0) / 1000, 0)} s) ==\n`)
        for (const line of report.lines) console.log(line)
        for (const note of report.notes) console.log(`note: ${note}`)
      } catch (err) {
        if (isCleaning()) throw err
        const message = err instanceof Error ? err.message : String(err)
        failures.push({ scenario: name, message })
        console.log(`\n== ${name}: FAILED ==\n${message}`)
      }
    }
    if (env) notes.push(...(await env.catch(() => ({ notes: [] as string[] }))).notes)
  } catch (err) {
    if (isCleaning()) return
    failures.push({ scenario: '-', message: err instanceof Error ? err.message : String(err) })
    console.log(`\nbenchmark failed: ${failures.at(-1)!.message}`)
  } finally {
    await cleanup()
  }

  const targets: TargetCheck[] = reports.flatMap((r) => r.targets)
  if (targets.length > 0) {
    console.log('\n== targets (issue 7) ==\n')
    for (const line of table(
      ['scenario', 'target', 'value', 'goal', 'verdict'],
      targets.map((t) => [
        t.scenario,
        t.name,
        `${fmt(t.value, t.unit === 'bytes' ? 0 : t.unit === 'ms' ? 3 : 2)}${t.unit ? ` ${t.unit}` : ''}`,
        t.target,
        t.met === null ? 'not measured' : t.met ? 'met' : 'MISSED',
      ]),
      [0, 1, 3, 4],
    ))
      console.log(line)
  }
  for (const note of notes) console.log(`note: ${note}`)
  for (const f of failures) console.log(`FAILED ${f.scenario}: ${f.message.split('\n')[0]}`)

  const resultsDir = join(benchDir, 'results')
  mkdirSync(resultsDir, { recursive: true })
  const file = join(resultsDir, `${options.resultPrefix}-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`)
  writeFileSync(
    file,
    `${JSON.stringify(
      {
        startedAt: startedAt.toISOString(),
        finishedAt: new Date().toISOString(),
        machine: { ...info, loadAverageAtEnd: loadavg() },
        settings,
        scenarios: Object.fromEntries(
          reports.map((r) => [r.name, { ...r.data, targets: r.targets, notes: r.notes, failures: r.failures ?? [] }]),
        ),
        targets,
        failures,
        notes,
      },
      null,
      2,
    )}\n`,
  )
  console.log(`\nwritten to ${file}`)
  if (failures.length > 0) process.exitCode = 1
}
