// Scenario 5: does a large keyspace slow the steady state? Steady-state GET
// throughput of the one logged-in user with only its session in Redis, then
// with BENCH_SESSIONS (100,000) more, then alone again; BENCH_SESSIONS_ROUNDS
// (2) times seeded and removed.
//
// The extra sessions are seeded straight into Redis with tokenward's key
// layout and sizes: the bytes of the real encrypted entry under new random
// sids (same TTL), each with its own index sets (x:sub:*, and x:idp:* when the
// real session has one) holding its sid, as one session per user would. They
// cannot be decrypted (the entry is bound to its sid), which does not matter:
// only the real session is used. Alternating crowded and alone runs, and
// comparing their means, cancels most drift of a shared machine; tokenward's
// and Redis's CPU time per request, which do not depend on who else uses the
// cores, are compared too.

import { randomBytes } from 'node:crypto'
import { PREFIX, indexKeysOf, redisCpuSeconds, sessionKeys, sidOf, usedMemory } from '../lib/redis.js'
import { BenchFailure, check, checkLine, fmt, table, type ScenarioReport } from '../lib/report.js'
import { load, PATH, processCpu } from '../lib/servers.js'
import { sleep } from '../lib/procs.js'
import type { LoadResult } from '../lib/load-types.js'
import type { Context } from './common.js'

const BATCH = 2000

const row = (label: string, r: LoadResult): string[] => [
  label,
  fmt(r.rps, 0),
  fmt(r.p50Ms, 3),
  fmt(r.p99Ms, 3),
  fmt(r.cpuMsPerRequest?.target, 3),
  fmt((r.cpuMsPerRequest?.redis ?? NaN) * 1000, 1),
]

export async function sessions(ctx: Context): Promise<ScenarioReport> {
  const env = await ctx.env()
  const { sessions: n, sessionsConnections: connections, sessionsRounds: rounds, duration, warmup } = ctx.settings
  const redis = env.redis
  const notes: string[] = []

  const real = await sessionKeys(redis)
  if (real.length === 0) throw new BenchFailure('sessions: no session in Redis')
  if (real.length > 1) notes.push(`${real.length} real sessions in Redis before seeding (expected 1)`)
  const template = real[0]!
  const value = await redis.getBuffer(template)
  const ttl = await redis.pttl(template)
  if (!value || ttl <= 0) throw new BenchFailure(`sessions: the session key ${template} has no value or no TTL`)
  const indexes = await Promise.all(
    (await indexKeysOf(redis, sidOf(template))).map(async (key) => ({
      kind: key.slice(PREFIX.length + 2, key.indexOf(':', PREFIX.length + 2)),
      ttl: await redis.pttl(key),
    })),
  )

  const run = async (label: string): Promise<LoadResult> => {
    const r = await load(
      { url: `${env.tokenward.url}${PATH}`, headers: env.headers, connections, duration, warmup },
      { target: processCpu(env.tokenward.pid), redis: () => redisCpuSeconds(redis) },
    )
    ctx.log(`  sessions ${label}: ${fmt(r.rps, 0)} req/s, p50 ${fmt(r.p50Ms, 3)} ms, status ${JSON.stringify(r.statusCodes)}`)
    if ((r.statusCodes['200'] ?? 0) !== r.requests || r.requests === 0 || r.errors > 0) {
      throw new BenchFailure(
        `sessions (${label}): tokenward answered ${JSON.stringify(r.statusCodes)} with ${r.errors} errors\n${env.tokenward.output()}`,
      )
    }
    return r
  }

  const dbsizeBefore = await redis.dbsize()
  const seed = async (): Promise<{ keys: string[]; seconds: number; bytesPerSession: number; dbsize: number }> => {
    const memBefore = await usedMemory(redis)
    const keys: string[] = []
    const t0 = Date.now()
    for (let i = 0; i < n; i += BATCH) {
      const pipe = redis.pipeline()
      for (let j = i; j < Math.min(n, i + BATCH); j++) {
        const sid = randomBytes(24).toString('base64url')
        const key = `${PREFIX}s:{${sid}}`
        pipe.set(key, value, 'PX', ttl)
        keys.push(key)
        for (const index of indexes) {
          const indexKey = `${PREFIX}x:${index.kind}:${randomBytes(32).toString('base64url')}`
          pipe.sadd(indexKey, sid)
          pipe.pexpire(indexKey, index.ttl > 0 ? index.ttl : ttl)
          keys.push(indexKey)
        }
      }
      const results = (await pipe.exec()) ?? []
      const failed = results.find(([err]) => err)
      if (failed) throw new BenchFailure(`sessions: seeding failed: ${String(failed[0])}`)
    }
    const seconds = (Date.now() - t0) / 1000
    const dbsize = await redis.dbsize()
    if (dbsize < dbsizeBefore + keys.length)
      throw new BenchFailure(`sessions: ${dbsize} keys after seeding ${keys.length} onto ${dbsizeBefore}`)
    const bytesPerSession = ((await usedMemory(redis)) - memBefore) / n
    await sleep(1000) // let Redis finish growing its hash tables (incremental rehash)
    return { keys, seconds, bytesPerSession, dbsize }
  }

  // alone, then `rounds` times: seed, crowded, remove, alone. Alternating
  // cancels the drift of a shared machine better than one pair would.
  const runs: Array<{ sessions: number; result: LoadResult }> = []
  runs.push({ sessions: real.length, result: await run(`${real.length} session(s)`) })
  let first: Awaited<ReturnType<typeof seed>> | undefined
  for (let round = 1; round <= rounds; round++) {
    ctx.log(`  seeding ${n} sessions (${1 + indexes.length} keys each) ...`)
    const seeded = await seed()
    first ??= seeded
    runs.push({ sessions: real.length + n, result: await run(`${n} more sessions (round ${round})`) })
    ctx.log('  removing the seeded keys ...')
    for (let i = 0; i < seeded.keys.length; i += 10_000) await redis.unlink(...seeded.keys.slice(i, i + 10_000))
    await sleep(1000)
    runs.push({ sessions: real.length, result: await run(`${real.length} session(s) (round ${round})`) })
  }
  const mean = (crowded: boolean, f: (r: LoadResult) => number | undefined) => {
    const xs = runs.filter((r) => r.sessions > real.length === crowded).map((r) => f(r.result) ?? NaN)
    return xs.reduce((x, y) => x + y, 0) / xs.length
  }
  const ratio = mean(true, (r) => r.rps) / mean(false, (r) => r.rps)
  const cpuRatio = mean(true, (r) => r.cpuMsPerRequest?.target) / mean(false, (r) => r.cpuMsPerRequest?.target)
  const redisCpuRatio = mean(true, (r) => r.cpuMsPerRequest?.redis) / mean(false, (r) => r.cpuMsPerRequest?.redis)
  const targets = [check('sessions', `throughput with ${n} sessions / with ${real.length}`, ratio, '', '>=', 0.9)]
  const lines = [
    `GET ${PATH} at ${connections} connections, ${duration} s per run; ${n} sessions seeded in ${fmt(first!.seconds, 1)} s (${first!.dbsize} keys in Redis), ${rounds} round(s)`,
    '',
    ...table(
      ['sessions in Redis', 'req/s', 'p50 ms', 'p99 ms', 'tokenward CPU ms/req', 'Redis CPU µs/req'],
      runs.map((r) => row(String(r.sessions), r.result)),
    ),
    '',
    `with ${n} sessions / with ${real.length}, means over the runs: throughput ${fmt(ratio, 2)}, tokenward CPU per request ${fmt(cpuRatio, 2)}, Redis CPU per request ${fmt(redisCpuRatio, 2)}`,
    `Redis used_memory per seeded session (entry, ${indexes.length} index set(s), keyspace and expiry overhead): ${fmt(first!.bytesPerSession, 0)} bytes`,
    checkLine(targets[0]!),
  ]
  return {
    name: 'sessions',
    lines,
    targets,
    data: {
      connections,
      seededSessions: n,
      rounds,
      keysPerSeededSession: 1 + indexes.length,
      sessionValueBytes: value.length,
      seedSeconds: first!.seconds,
      keysInRedisWhenSeeded: first!.dbsize,
      runs,
      throughputRatio: ratio,
      tokenwardCpuPerRequestRatio: cpuRatio,
      redisCpuPerRequestRatio: redisCpuRatio,
      usedMemoryPerSeededSessionBytes: first!.bytesPerSession,
    },
    notes,
  }
}
