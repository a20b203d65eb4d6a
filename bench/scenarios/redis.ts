// Scenario 6: what a steady-state request costs Redis, and what a session
// costs Redis memory.
//
// Commands per request: a fixed number of steady-state GETs, with Redis's
// counters read before and after. Two counts, because Redis counts the
// commands a Lua script runs as calls too (`INFO commandstats`):
// - round trips: commands tokenward's connections sent, seen through MONITOR
//   (a script call, EVALSHA, is one, whatever it runs inside);
// - commandstats calls: every command executed, inside scripts included.
// The target (at most one round trip per request) is judged on the first.
//
// Memory per session: MEMORY USAGE of a real session key plus its share of the
// index sets that hold it (x:sub:*, x:idp:*), divided by their member count.

import type { Redis } from 'ioredis'
import { load, PATH } from '../lib/servers.js'
import { commandCalls, diffCalls, indexKeysOf, memoryUsage, sessionKeys, sidOf } from '../lib/redis.js'
import { BenchFailure, check, checkLine, fmt, table, type ScenarioReport } from '../lib/report.js'
import { sleep } from '../lib/procs.js'
import type { Context } from './common.js'

/** Our own commands, never tokenward's. */
const OURS = /^(info|monitor|client\|info)$/

async function ownAddress(redis: Redis): Promise<string> {
  const info = (await redis.call('CLIENT', 'INFO')) as string
  return /addr=(\S+)/.exec(info)?.[1] ?? ''
}

export async function redisScenario(ctx: Context): Promise<ScenarioReport> {
  const env = await ctx.env()
  const requests = ctx.settings.redisRequests
  const connections = 10
  const url = `${env.tokenward.url}${PATH}`
  const notes: string[] = []

  // Warm-up, outside the counted window: connections, ioredis loading its scripts (EVALSHA after one EVAL).
  await load({ url, headers: env.headers, connections, duration: 0, warmup: 0, amount: 1000 })

  const monitor = await env.redis.monitor()
  const mine = await ownAddress(env.redis)
  const sent: Record<string, number> = {}
  const bySource = new Set<string>()
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    if (source === 'lua' || source === mine) return
    const cmd = String(args[0] ?? '').toLowerCase()
    sent[cmd] = (sent[cmd] ?? 0) + 1
    bySource.add(source)
  })
  await sleep(200)
  const before = await commandCalls(env.redis)
  const result = await load({ url, headers: env.headers, connections, duration: 0, warmup: 0, amount: requests })
  await sleep(500) // the last MONITOR lines
  const after = await commandCalls(env.redis)
  monitor.disconnect()

  const ok = result.statusCodes['200'] ?? 0
  if (ok !== result.requests || result.requests < requests || result.errors > 0) {
    throw new BenchFailure(`redis: tokenward answered ${JSON.stringify(result.statusCodes)} with ${result.errors} errors to ${requests} requests\n${env.tokenward.output()}`)
  }
  const calls = Object.fromEntries(Object.entries(diffCalls(before, after)).filter(([cmd]) => !OURS.test(cmd)))
  const totalCalls = Object.values(calls).reduce((a, b) => a + b, 0)
  const totalSent = Object.values(sent).reduce((a, b) => a + b, 0)
  const roundTripsPerRequest = totalSent / result.requests
  const callsPerRequest = totalCalls / result.requests

  // Memory per session: every real session in Redis (normally the one logged-in user).
  const keys = await sessionKeys(env.redis)
  if (keys.length === 0) throw new BenchFailure('redis: no session key in Redis after a logged-in run')
  if (keys.length > 20) notes.push(`${keys.length} session keys in Redis; memory measured on the first 20`)
  const perSession: Array<{ sessionKeyBytes: number; valueBytes: number; indexKeys: number; indexShareBytes: number; totalBytes: number }> = []
  for (const key of keys.slice(0, 20)) {
    const sessionKeyBytes = await memoryUsage(env.redis, key)
    const valueBytes = await env.redis.strlen(key)
    const indexes = await indexKeysOf(env.redis, sidOf(key))
    let indexShareBytes = 0
    for (const index of indexes) indexShareBytes += (await memoryUsage(env.redis, index)) / Math.max(1, await env.redis.scard(index))
    perSession.push({ sessionKeyBytes, valueBytes, indexKeys: indexes.length, indexShareBytes, totalBytes: sessionKeyBytes + indexShareBytes })
  }
  const mean = (f: (s: (typeof perSession)[number]) => number) => perSession.reduce((a, s) => a + f(s), 0) / perSession.length
  const bytesPerSession = mean((s) => s.totalBytes)

  const targets = [
    check('redis', 'Redis round trips per steady-state request', roundTripsPerRequest, '', '<=', 1),
    check('redis', 'Redis memory per session', bytesPerSession, 'bytes', '<', 2048),
  ]
  const per = (o: Record<string, number>) => Object.entries(o).sort((a, b) => b[1] - a[1]).map(([cmd, n]) => `${cmd} ${fmt(n / result.requests, 2)}`).join(', ') || '-'
  const lines = [
    `${result.requests} steady-state GETs at ${connections} connections (${fmt(result.rps, 0)} req/s; MONITOR on, so not a speed measurement)`,
    '',
    ...table(['measure', 'per request', 'by command'], [
      ['round trips (MONITOR, top-level)', fmt(roundTripsPerRequest, 2), per(sent)],
      ['commandstats calls (incl. in scripts)', fmt(callsPerRequest, 2), per(calls)],
    ], [0, 2]),
    '',
    ...table(['session memory', 'bytes'], [
      ['session key (MEMORY USAGE)', fmt(mean((s) => s.sessionKeyBytes), 0)],
      ['  of which the value (STRLEN)', fmt(mean((s) => s.valueBytes), 0)],
      [`index sets, share (${fmt(mean((s) => s.indexKeys), 0)} sets)`, fmt(mean((s) => s.indexShareBytes), 0)],
      ['total per session', fmt(bytesPerSession, 0)],
    ]),
    '',
    ...targets.map((t) => checkLine(t, t.unit === 'bytes' ? 0 : 2)),
  ]
  return {
    name: 'redis',
    lines,
    targets,
    data: {
      requests: result.requests,
      connections,
      roundTripsPerRequest,
      roundTripsByCommand: sent,
      tokenwardConnectionsSeen: bySource.size,
      commandstatsCallsPerRequest: callsPerRequest,
      commandstatsCallsByCommand: calls,
      memoryPerSessionBytes: bytesPerSession,
      sessions: perSession,
    },
    notes,
  }
}
