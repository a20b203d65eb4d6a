// Scenario 6: what a steady-state request costs Redis, and what a session
// costs Redis memory.
//
// Commands per request: a fixed number of steady-state GETs, with Redis's
// counters read before and after. Two counts, because Redis counts the
// commands a Lua script runs as calls too (`INFO commandstats`):
// - round trips: commands tokenward's connections sent, seen through MONITOR
//   (a script call, EVALSHA, is one, whatever it runs inside);
// - commandstats calls: every command executed, inside scripts included.
// Both for the default instance (a session read less than BFF_SESSION_CACHE_MS
// ago answers from memory) and for one with the cache off (every request reads
// Redis). The target (at most one round trip per request) is judged on the
// larger of the two round-trip counts.
//
// Memory per session: MEMORY USAGE of a real session key plus its share of the
// index sets that hold it (x:sub:*, x:idp:*), divided by their member count.

import type { Redis } from 'ioredis'
import { load, PATH } from '../lib/servers.js'
import { commandCalls, diffCalls, indexKeysOf, memoryUsage, sessionKeys, sidOf } from '../lib/redis.js'
import { BenchFailure, check, checkLine, fmt, table, type ScenarioReport } from '../lib/report.js'
import { sleep } from '../lib/procs.js'
import type { MainEnv } from '../lib/env.js'
import type { Context } from './common.js'

/** Our own commands, never tokenward's. */
const OURS = /^(info|monitor|client\|info)$/

async function ownAddress(redis: Redis): Promise<string> {
  const info = (await redis.call('CLIENT', 'INFO')) as string
  return /addr=(\S+)/.exec(info)?.[1] ?? ''
}

interface Counted {
  requests: number
  rps: number
  roundTripsPerRequest: number
  callsPerRequest: number
  sent: Record<string, number>
  calls: Record<string, number>
  connectionsSeen: number
}

/** Sends `requests` steady-state GETs to `url` and counts what reached Redis. */
async function countCommands(env: MainEnv, url: string, requests: number, connections: number, output: () => string): Promise<Counted> {
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
    throw new BenchFailure(
      `redis: tokenward answered ${JSON.stringify(result.statusCodes)} with ${result.errors} errors to ${requests} requests\n${output()}`,
    )
  }
  const calls = Object.fromEntries(Object.entries(diffCalls(before, after)).filter(([cmd]) => !OURS.test(cmd)))
  const totalCalls = Object.values(calls).reduce((a, b) => a + b, 0)
  const totalSent = Object.values(sent).reduce((a, b) => a + b, 0)
  return {
    requests: result.requests,
    rps: result.rps,
    roundTripsPerRequest: totalSent / result.requests,
    callsPerRequest: totalCalls / result.requests,
    sent,
    calls,
    connectionsSeen: bySource.size,
  }
}

export async function redisScenario(ctx: Context): Promise<ScenarioReport> {
  const env = await ctx.env()
  const requests = ctx.settings.redisRequests
  const connections = 10
  const notes: string[] = []
  // The default instance answers a session read within BFF_SESSION_CACHE_MS from
  // memory; the cache-off one reads Redis on every request, the most any request costs.
  const cached = await countCommands(env, `${env.tokenward.url}${PATH}`, requests, connections, env.tokenward.output)
  const noCache = await env.tokenwardNoCache()
  const uncached = await countCommands(env, `${noCache.url}${PATH}`, requests, connections, () => '')
  const roundTripsPerRequest = Math.max(cached.roundTripsPerRequest, uncached.roundTripsPerRequest)

  // Memory per session: every real session in Redis (normally the one logged-in user).
  const keys = await sessionKeys(env.redis)
  if (keys.length === 0) throw new BenchFailure('redis: no session key in Redis after a logged-in run')
  if (keys.length > 20) notes.push(`${keys.length} session keys in Redis; memory measured on the first 20`)
  const perSession: Array<{ sessionKeyBytes: number; valueBytes: number; indexKeys: number; indexShareBytes: number; totalBytes: number }> =
    []
  for (const key of keys.slice(0, 20)) {
    const sessionKeyBytes = await memoryUsage(env.redis, key)
    const valueBytes = await env.redis.strlen(key)
    const indexes = await indexKeysOf(env.redis, sidOf(key))
    let indexShareBytes = 0
    for (const index of indexes) indexShareBytes += (await memoryUsage(env.redis, index)) / Math.max(1, await env.redis.scard(index))
    perSession.push({
      sessionKeyBytes,
      valueBytes,
      indexKeys: indexes.length,
      indexShareBytes,
      totalBytes: sessionKeyBytes + indexShareBytes,
    })
  }
  const mean = (f: (s: (typeof perSession)[number]) => number) => perSession.reduce((a, s) => a + f(s), 0) / perSession.length
  const bytesPerSession = mean((s) => s.totalBytes)

  const targets = [
    check('redis', 'Redis round trips per steady-state request (the more of cache on / off)', roundTripsPerRequest, '', '<=', 1),
    check('redis', 'Redis memory per session', bytesPerSession, 'bytes', '<', 2048),
  ]
  const per = (c: Counted, o: Record<string, number>) =>
    Object.entries(o)
      .sort((a, b) => b[1] - a[1])
      .map(([cmd, n]) => `${cmd} ${fmt(n / c.requests, 3)}`)
      .join(', ') || '-'
  const lines = [
    `${requests} steady-state GETs at ${connections} connections to each instance (MONITOR on, so not a speed measurement)`,
    '',
    ...table(
      ['measure', 'per request', 'by command'],
      [
        ['cache on (default): round trips (MONITOR, top-level)', fmt(cached.roundTripsPerRequest, 3), per(cached, cached.sent)],
        ['cache on: commandstats calls (incl. in scripts)', fmt(cached.callsPerRequest, 3), per(cached, cached.calls)],
        ['BFF_SESSION_CACHE_MS=0: round trips', fmt(uncached.roundTripsPerRequest, 3), per(uncached, uncached.sent)],
        ['BFF_SESSION_CACHE_MS=0: commandstats calls', fmt(uncached.callsPerRequest, 3), per(uncached, uncached.calls)],
      ],
      [0, 2],
    ),
    '',
    ...table(
      ['session memory', 'bytes'],
      [
        [
          'session key (MEMORY USAGE)',
          fmt(
            mean((s) => s.sessionKeyBytes),
            0,
          ),
        ],
        [
          '  of which the value (STRLEN)',
          fmt(
            mean((s) => s.valueBytes),
            0,
          ),
        ],
        [
          `index sets, share (${fmt(
            mean((s) => s.indexKeys),
            0,
          )} sets)`,
          fmt(
            mean((s) => s.indexShareBytes),
            0,
          ),
        ],
        ['total per session', fmt(bytesPerSession, 0)],
      ],
    ),
    '',
    ...targets.map((t) => checkLine(t, t.unit === 'bytes' ? 0 : 2)),
  ]
  return {
    name: 'redis',
    lines,
    targets,
    data: {
      requests,
      connections,
      roundTripsPerRequest,
      cacheOn: cached,
      cacheOff: uncached,
      memoryPerSessionBytes: bytesPerSession,
      sessions: perSession,
    },
    notes,
  }
}
