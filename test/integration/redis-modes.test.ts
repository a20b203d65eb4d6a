// tokenward against Redis Cluster and Redis Sentinel (docs/configuration.md:
// BFF_REDIS_MODE, BFF_REDIS_NODES, BFF_REDIS_SENTINEL_NAME). The standalone
// suites cover each behaviour in depth; this file proves the same user-visible
// flows hold when keys are spread over several masters (hash tags, Lua
// scripts, multi-master scans, cluster pub/sub) and when the master moves.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { listSessions, revokeSessions } from '../../src/commands.js'
import { auditEvents, type TestBff } from '../helpers/bff.js'
import { login, type CookieJar } from '../helpers/login.js'
import {
  scanKeys,
  startRedisCluster,
  startRedisSentinel,
  type RedisClusterTopology,
  type RedisSentinelTopology,
} from '../helpers/redis-topologies.js'
import { expireAccessToken, sessionOf, spaFetch } from '../helpers/session.js'
import { openEvents } from '../helpers/sse.js'
import { startWorld, type World } from '../helpers/world.js'

function metric(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

interface Sample {
  at: number
  status: number
  error?: string
}

/**
 * Light load, as an open SPA tab or two make it: three requests every 100 ms,
 * alternating instances and paths, recording what each one answered.
 */
function lightLoad(bffs: readonly TestBff[], jar: CookieJar) {
  const samples: Sample[] = []
  let running = true
  const done = (async () => {
    const pending: Array<Promise<void>> = []
    for (let i = 0; running; i++) {
      for (const [bff, path] of [
        [bffs[i % bffs.length]!, '/api/echo'],
        [bffs[(i + 1) % bffs.length]!, '/auth/session'],
        [bffs[0]!, '/api/echo'],
      ] as const) {
        pending.push(
          spaFetch(bff, jar, path).then(
            async (res) => {
              const body = res.status === 200 ? undefined : ((await res.json().catch(() => ({}))) as { error?: string })
              samples.push({ at: Date.now(), status: res.status, ...(body?.error ? { error: body.error } : {}) })
            },
            (err: Error) => void samples.push({ at: Date.now(), status: 0, error: err.message }),
          ),
        )
      }
      await sleep(100)
    }
    await Promise.all(pending)
  })()
  return {
    samples,
    /** Every request of the last `ms` answered 200 (and there were some). */
    healthyFor: (ms: number) => {
      const recent = samples.filter((x) => x.at > Date.now() - ms)
      return recent.length >= (ms / 100) * 2 && recent.every((x) => x.status === 200)
    },
    async stop() {
      running = false
      await done
      const failures = samples.filter((x) => x.status !== 200)
      return { samples, failures, windowMs: failures.length > 0 ? failures.at(-1)!.at - failures[0]!.at : 0 }
    },
  }
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) return false
    await sleep(100)
  }
  return true
}

/** The flows every mode must support, on a world whose two instances share the topology. */
function sharedFlows(
  mode: 'cluster' | 'sentinel',
  ctx: () => { world: World; other: TestBff; sessionKeys: (pattern: string) => Promise<{ total: number; nodes: number }> },
) {
  it(`${mode}: login, /auth/session, an API call, /readyz 200, and tokenward_active_sessions counts every session`, async () => {
    const { world, other, sessionKeys } = ctx()
    const pattern = `${world.bff.env.BFF_REDIS_PREFIX}s:*`
    const jars: CookieJar[] = []
    // In a cluster, log in until the sessions sit on more than one master, so
    // the count must scan every master, not just one.
    do jars.push((await login(world.bff.url, { username: 'alice' })).jar)
    while (jars.length < 3 || (mode === 'cluster' && (await sessionKeys(pattern)).nodes < 2 && jars.length < 12))
    for (const bff of [world.bff, other]) {
      for (const jar of jars) {
        const session = await spaFetch(bff, jar, '/auth/session')
        expect(session.status).toBe(200)
        expect(await session.json()).toMatchObject({ authenticated: true, sub: 'alice' })
      }
      const api = await spaFetch(bff, jars[0]!, '/api/echo')
      expect(api.status).toBe(200)
      expect(((await api.json()) as { url: string }).url).toBe('/echo')
      expect((await fetch(`${bff.url}/readyz`)).status).toBe(200)
    }
    expect(world.bff.config.redis.mode).toBe(mode)
    const stored = await sessionKeys(pattern)
    expect(stored.total).toBe(jars.length)
    if (mode === 'cluster') expect(stored.nodes).toBeGreaterThanOrEqual(2)
    const text = await (await fetch(`${world.bff.url}/metrics`)).text()
    expect(metric(text, 'tokenward_active_sessions')).toBe(jars.length)
    // The session cache needs change announcements that arrive before the
    // change is acknowledged (CLIENT TRACKING on the one master): not in a cluster.
    if (mode === 'cluster') expect(world.bff.server.deps.sessions.caching).toBe(false)
    else {
      const deadline = Date.now() + 10_000
      while (!world.bff.server.deps.sessions.caching && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
      expect(world.bff.server.deps.sessions.caching).toBe(true)
    }
  })

  it(`${mode}: an expired access token under 50 concurrent calls over two instances gives exactly one refresh grant`, async () => {
    const { world, other } = ctx()
    const { jar } = await login(world.bff.url, { username: 'bob' })
    const before = (await sessionOf(world.bff, jar))!
    await expireAccessToken(world.bff, jar)
    const c0 = { ...world.idp.counts }
    const results = await Promise.all(
      [world.bff, other].flatMap((bff) => Array.from({ length: 25 }, () => spaFetch(bff, jar, '/api/echo'))),
    )
    expect(results.map((r) => r.status)).toEqual(Array(50).fill(200))
    expect(world.idp.counts.refreshGrants - c0.refreshGrants).toBe(1)
    expect(world.idp.counts.invalidGrants - c0.invalidGrants).toBe(0)
    const after = (await sessionOf(other, jar))!
    expect(after.data.accessToken).not.toBe(before.data.accessToken)
    expect(after.data.refreshToken).not.toBe(before.data.refreshToken)
    expect(after.version).toBe(before.version + 2) // our expiry write, then the one refresh
    expect(world.upstream.requests.at(-1)!.headers.authorization).toBe(`Bearer ${after.data.accessToken}`)
  })

  it(`${mode}: logout on one instance ends the session on both and revokes the refresh token`, async () => {
    const { world, other } = ctx()
    const { jar } = await login(world.bff.url, { username: 'carol' })
    expect((await spaFetch(other, jar, '/auth/session')).status).toBe(200)
    const revocations = world.idp.counts.revocations
    expect((await spaFetch(world.bff, jar, '/auth/logout', { method: 'POST' })).status).toBe(200)
    expect(world.idp.counts.revocations).toBe(revocations + 1)
    for (const bff of [world.bff, other]) {
      expect((await spaFetch(bff, jar, '/auth/session')).status).toBe(401)
      expect((await spaFetch(bff, jar, '/api/echo')).status).toBe(401)
    }
  })

  it(`${mode}: the terminator (back-channel path) and sessions list / revoke end sessions on every instance`, async () => {
    const { world, other } = ctx()
    // Three sessions of one user, in other slots than their sub index (in a
    // cluster): readIndex must check each one on its own node.
    const a = await login(world.bff.url, { username: 'dave' })
    const b = await login(world.bff.url, { username: 'dave' })
    const c = await login(world.bff.url, { username: 'dave' })
    const sa = (await sessionOf(world.bff, a.jar))!
    const sb = (await sessionOf(world.bff, b.jar))!
    const sc = (await sessionOf(world.bff, c.jar))!

    const listed: string[] = []
    expect(await listSessions(world.bff.config, 'dave', true, (l) => listed.push(l))).toBe(0)
    expect(listed.map((l) => (JSON.parse(l) as { sid: string }).sid).sort()).toEqual([sa.sid, sb.sid, sc.sid].sort())

    // What a back-channel logout does once the logout token is validated.
    await other.server.deps.terminator.end(sa, 'backchannel_logout')
    expect(auditEvents(other.logs).some((e) => e.event === 'backchannel_logout' && e.sid === sa.sid)).toBe(true)

    // An administrator's revoke from the CLI, with its own connection to the topology.
    const out: string[] = []
    expect(await revokeSessions(world.bff.config, { sid: sb.sid }, (l) => out.push(l))).toBe(0)
    expect(out.some((l) => l.startsWith(`revoked ${sb.sid}`))).toBe(true)

    for (const bff of [world.bff, other]) {
      expect((await spaFetch(bff, a.jar, '/auth/session')).status).toBe(401)
      expect((await spaFetch(bff, b.jar, '/auth/session')).status).toBe(401)
      expect((await spaFetch(bff, c.jar, '/auth/session')).status).toBe(200)
    }
    const after: string[] = []
    expect(await listSessions(world.bff.config, 'dave', true, (l) => after.push(l))).toBe(0)
    expect(after.map((l) => (JSON.parse(l) as { sid: string }).sid)).toEqual([sc.sid])
  })

  // Regression: the Cluster subscriber duplicate used to inherit enableOfflineQueue:
  // false and fail to subscribe, so /auth/events never delivered in cluster mode.
  it(`${mode}: /auth/events streams on either instance get session_ended for a logout, a back-channel end and a revoke`, async () => {
    const { world, other } = ctx()
    const x = await login(world.bff.url, { username: 'eve' })
    const y = await login(world.bff.url, { username: 'eve' })
    const z = await login(world.bff.url, { username: 'eve' })
    const streams = [await openEvents(other, x.jar), await openEvents(world.bff, y.jar), await openEvents(other, z.jar)]
    for (const st of streams) {
      expect(st.res.status).toBe(200)
      await st.waitFor('session', 1500)
    }
    expect((await spaFetch(world.bff, x.jar, '/auth/logout', { method: 'POST' })).status).toBe(200)
    await other.server.deps.terminator.end((await sessionOf(other, y.jar))!, 'backchannel_logout')
    expect(await revokeSessions(world.bff.config, { sid: (await sessionOf(world.bff, z.jar))!.sid }, () => {})).toBe(0)
    const reasons = await Promise.all(
      streams.map(async (st) => JSON.parse((await st.waitFor('session_ended', 1500)).data) as { reason: string }),
    )
    expect(reasons).toEqual([{ reason: 'logout' }, { reason: 'backchannel_logout' }, { reason: 'session_revoked' }])
    for (const st of streams) {
      await st.done
      expect(st.isClosed()).toBe(true)
    }
  })
}

describe('BFF_REDIS_MODE=cluster (3 masters)', () => {
  let cluster: RedisClusterTopology
  let world: World
  let other: TestBff

  beforeAll(async () => {
    cluster = await startRedisCluster({ masters: 3 })
    world = await startWorld({
      redisUrl: cluster.url,
      env: { BFF_REDIS_MODE: 'cluster', BFF_REDIS_NODES: cluster.nodesEnv },
    })
    other = await world.startInstance()
  })
  afterAll(async () => {
    await world?.close()
    await cluster?.close()
  })

  sharedFlows('cluster', () => ({
    world,
    other,
    async sessionKeys(pattern) {
      const byNode = await cluster.keysByNode(pattern)
      return { total: byNode.reduce((n, b) => n + b.keys.length, 0), nodes: byNode.filter((b) => b.keys.length > 0).length }
    },
  }))
})

describe('BFF_REDIS_MODE=sentinel (1 master, 2 replicas, 1 sentinel)', () => {
  let topology: RedisSentinelTopology
  let world: World
  let other: TestBff

  beforeAll(async () => {
    topology = await startRedisSentinel({ name: 'tokenward-test', replicas: 2, sentinels: 1 })
    world = await startWorld({
      redisUrl: topology.url,
      env: { BFF_REDIS_MODE: 'sentinel', BFF_REDIS_NODES: topology.nodesEnv, BFF_REDIS_SENTINEL_NAME: topology.name },
    })
    other = await world.startInstance()
  })
  afterAll(async () => {
    await world?.close()
    await topology?.close()
  })

  sharedFlows('sentinel', () => ({
    world,
    other,
    async sessionKeys(pattern) {
      const keys = await scanKeys((await topology.master()).port, pattern)
      return { total: keys.length, nodes: 1 }
    },
  }))

  // What was written right after an orderly failover, kept for the next test.
  let lateWrites: { late: CookieJar; rotated: CookieJar; refreshGrants: number } | undefined

  it('sentinel: SENTINEL FAILOVER under light load keeps the session working on both instances', async () => {
    const { jar } = await login(world.bff.url, { username: 'erin' })
    const before = (await sessionOf(world.bff, jar))!
    const rotated = (await login(world.bff.url, { username: 'gina' })).jar
    // The replica must hold the sessions before it is promoted.
    await topology.waitForReplication()

    const load = lightLoad([world.bff, other], jar)
    await sleep(500)
    const { from, to, tookMs } = await topology.failover({ how: 'command' })
    expect(to.port).not.toBe(from.port)
    // Writes right after the switch, as users make them: a new login, and a
    // refresh that rotates a refresh token at the IdP.
    const late = (await login(world.bff.url, { username: 'hal' })).jar
    await expireAccessToken(world.bff, rotated)
    const g0 = world.idp.counts.refreshGrants
    expect((await spaFetch(other, rotated, '/api/echo')).status).toBe(200)
    lateWrites = { late, rotated, refreshGrants: world.idp.counts.refreshGrants - g0 }
    // The sentinel demotes the old master some seconds later, disconnecting
    // its clients; tokenward must follow to the new master.
    const demotedAfter = await topology.waitForDemotion(from)
    expect(await until(() => load.healthyFor(1500), 10_000)).toBe(true)
    const { samples, failures, windowMs } = await load.stop()
    console.info(
      `SENTINEL FAILOVER: switch ${tookMs} ms, old master demoted ${demotedAfter} ms later; ${samples.length} requests, ${failures.length} failed over ${windowMs} ms`,
    )
    // No 401: the session was never lost; the only acceptable failure is the bounded 503.
    for (const f of failures) expect(f).toMatchObject({ status: 503, error: 'session_store_unavailable' })
    expect(windowMs).toBeLessThan(15_000)

    for (const bff of [world.bff, other]) {
      const res = await spaFetch(bff, jar, '/auth/session')
      expect(res.status).toBe(200)
      expect(await res.json()).toMatchObject({ sid: before.sid, sub: 'erin' })
      expect((await spaFetch(bff, jar, '/api/echo')).status).toBe(200)
      expect((await fetch(`${bff.url}/readyz`)).status).toBe(200)
    }
  }, 40_000)

  // Regression: without ioredis' failoverDetector the client kept writing to the
  // old master until its demotion, and those writes were lost in the resync.
  it('sentinel: writes made right after a failover survive the old master’s demotion', async () => {
    expect(lateWrites).toBeDefined()
    const { late, rotated, refreshGrants } = lateWrites!
    expect(refreshGrants).toBe(1)
    // The new login made just after the switch is still there.
    expect((await spaFetch(world.bff, late, '/auth/session')).status).toBe(200)
    // The rotated refresh token was kept: the next refresh succeeds, with no invalid_grant.
    const c0 = { ...world.idp.counts }
    await expireAccessToken(world.bff, rotated)
    expect((await spaFetch(other, rotated, '/api/echo')).status).toBe(200)
    expect(world.idp.counts.invalidGrants - c0.invalidGrants).toBe(0)
    expect(world.idp.counts.refreshGrants - c0.refreshGrants).toBe(1)
  })

  it('sentinel: the master killed under light load: a bounded 503 window, then the same session, refreshes, logins and events work on the new master', async () => {
    const { jar } = await login(world.bff.url, { username: 'ivan' })
    const before = (await sessionOf(world.bff, jar))!
    const stream = await openEvents(other, jar)
    await stream.waitFor('session', 2000)
    await topology.waitForReplication()

    const load = lightLoad([world.bff, other], jar)
    await sleep(500)
    const { from, to, tookMs } = await topology.failover({ how: 'kill' })
    expect(to.port).not.toBe(from.port)
    expect(await until(() => load.healthyFor(1500), 15_000)).toBe(true)
    const { samples, failures, windowMs } = await load.stop()
    console.info(`master killed: switch ${tookMs} ms; ${samples.length} requests, ${failures.length} failed over ${windowMs} ms`)
    for (const f of failures) expect(f).toMatchObject({ status: 503, error: 'session_store_unavailable' })
    expect(windowMs).toBeLessThan(15_000)

    for (const bff of [world.bff, other]) {
      const res = await spaFetch(bff, jar, '/auth/session')
      expect(res.status).toBe(200)
      expect(await res.json()).toMatchObject({ sid: before.sid, sub: 'ivan' })
    }
    // Writes now land on the new master, the only one left.
    const c0 = { ...world.idp.counts }
    await expireAccessToken(world.bff, jar)
    const results = await Promise.all([world.bff, other].flatMap((bff) => Array.from({ length: 5 }, () => spaFetch(bff, jar, '/api/echo'))))
    expect(results.map((r) => r.status)).toEqual(Array(10).fill(200))
    expect(world.idp.counts.refreshGrants - c0.refreshGrants).toBe(1)
    expect(world.idp.counts.invalidGrants - c0.invalidGrants).toBe(0)
    const fresh = await login(world.bff.url, { username: 'judy' })
    expect((await spaFetch(other, fresh.jar, '/auth/session')).status).toBe(200)
    // The event subscription followed the master too.
    expect((await spaFetch(world.bff, jar, '/auth/logout', { method: 'POST' })).status).toBe(200)
    expect(JSON.parse((await stream.waitFor('session_ended', 3000)).data)).toEqual({ reason: 'logout' })
    expect((await spaFetch(other, jar, '/auth/session')).status).toBe(401)
  }, 40_000)
})
