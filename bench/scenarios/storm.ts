// Scenario 4, the refresh storm: BENCH_STORM_SESSIONS (1,000) sessions whose
// access tokens expire at the same moment, then BENCH_STORM_CONCURRENCY (20)
// concurrent requests for each of them, split over TWO tokenward processes
// sharing one Redis (half of each session's requests to each, as a load
// balancer would spread them). The contract: the IdP gets exactly one refresh
// per session, no invalid_grant, and every request is answered 200.
//
// How the tokens expire together, honestly: the dev IdP's access-token
// lifetime is a function of the clock. Every token issued during the logins
// expires at one instant, `expireAt` (the estimated end of the logins; a
// login that overruns it gets a 1-second token, so it has expired too), and
// tokens issued afterwards (the refreshes) live an hour. The storm starts only
// once every token has really expired, at the IdP and by tokenward's own
// clock: no tokenward setting is changed (BFF_REFRESH_SKEW stays at its
// default), nothing is faked. The sessions sit idle between their login and
// the storm, as users' tabs do overnight.

import { randomBytes } from 'node:crypto'
import { createInterface } from 'node:readline'
import { startDevIdp } from '../../demo/idp.js'
import { freePort } from '../../test/helpers/ports.js'
import { startRedisServer } from '../../test/helpers/redis-server.js'
import { Redis } from 'ioredis'
import type { StormLoadOptions, StormLoadResult } from '../lib/load-types.js'
import { onCleanup, sleep, startTs, stopChild, type NodeChild } from '../lib/procs.js'
import { unboundedAdapter } from '../lib/idp-store.js'
import { sessionKeys } from '../lib/redis.js'
import { BenchFailure, fmt, percentile, table, type ScenarioReport } from '../lib/report.js'
import { clientAddress, loginFrom } from '../lib/login.js'
import { CLIENT_ID, newSecrets, OK_BODY, PATH, startTokenward, startUpstream } from '../lib/servers.js'
import type { Context } from './common.js'

/** Open file descriptors a process may have here (ulimit -n is 20,000 on the reference machine), minus a margin. */
const MAX_CONNECTIONS_PER_PROCESS = 18_000
/** Logins per second assumed when choosing `expireAt`; a wrong guess costs a wait or a 1-second token, never correctness. */
const ASSUMED_LOGINS_PER_SECOND = 40

/** A storm-load child: resolves `ready` after its connections are open; `go()` fires; `result` is its JSON line. */
function stormLoad(options: StormLoadOptions): { proc: NodeChild; ready: Promise<void>; result: Promise<StormLoadResult>; go: () => void } {
  const proc = startTs('storm-load.ts')
  proc.child.stdin!.write(`${JSON.stringify(options)}\n`)
  const lines = createInterface({ input: proc.child.stdout! })
  let onReady!: () => void
  let onResult!: (r: StormLoadResult) => void
  let onError!: (e: Error) => void
  const ready = new Promise<void>((resolve) => (onReady = resolve))
  const result = new Promise<StormLoadResult>((resolve, reject) => {
    onResult = resolve
    onError = reject
  })
  lines.on('line', (line) => {
    if (line === 'ready') onReady()
    else if (line.startsWith('{')) onResult(JSON.parse(line) as StormLoadResult)
  })
  proc.child.once('exit', (code) => {
    if (code !== 0) onError(new Error(`storm load generator exited with ${code}:\n${proc.output()}`))
  })
  // A child that dies while setting up must not leave `ready` pending forever.
  const readyOrFail = Promise.race([ready, result.then(() => {})])
  return { proc, ready: readyOrFail, result, go: () => void proc.child.stdin!.write('go\n') }
}

export async function storm(ctx: Context): Promise<ScenarioReport> {
  const { stormSessions: n, stormConcurrency: perSession, stormLoginConcurrency } = ctx.settings
  const perA = Math.ceil(perSession / 2)
  const perB = perSession - perA
  if (n * perA > MAX_CONNECTIONS_PER_PROCESS) {
    throw new BenchFailure(
      `storm: ${n} sessions x ${perA} connections per process exceeds ${MAX_CONNECTIONS_PER_PROCESS} open files per process; lower BENCH_STORM_SESSIONS or BENCH_STORM_CONCURRENCY`,
    )
  }
  const notes: string[] = []
  const failures: string[] = []

  // Its own Redis, upstream, IdP and two tokenward processes.
  const server = await startRedisServer()
  onCleanup(() => server.close())
  const redis = new Redis(server.url, { maxRetriesPerRequest: 1 })
  onCleanup(() => void redis.disconnect())
  const upstream = await startUpstream(1)
  const [portA, portB] = [await freePort(), await freePort()]
  const publicUrl = `http://127.0.0.1:${portA}`
  let phase: 'login' | 'after' = 'login'
  let expireAt = Number.POSITIVE_INFINITY
  const clientSecret = randomBytes(24).toString('base64url')
  const idp = await startDevIdp({
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: clientSecret,
        redirect_uris: [`${publicUrl}/auth/callback`],
        post_logout_redirect_uris: [`${publicUrl}/`],
      },
    ],
    maxEvents: 10_000,
    configure: (c) => {
      // oidc-provider's default store keeps 1,000 entries and would evict the grants of early logins (bench/lib/idp-store.ts).
      c.adapter = unboundedAdapter()
      c.ttl = {
        ...c.ttl,
        AccessToken: () => (phase === 'login' ? Math.max(1, Math.ceil((expireAt - Date.now()) / 1000)) : 3600),
      }
    },
  })
  onCleanup(() => idp.close())
  const secrets = newSecrets()
  const common = { issuer: idp.issuer, clientSecret, redisUrl: server.url, upstream, publicUrl, secrets }
  const [a, b] = await Promise.all([
    startTokenward({ ...common, port: portA, name: 'tokenward A' }),
    startTokenward({ ...common, port: portB, name: 'tokenward B' }),
  ])

  // Logins, in parallel, through the whole HTTP flow (tokenward A, the IdP's form, the callback),
  // each user from a client address of its own (bench/lib/login.ts).
  const loginStart = Date.now()
  expireAt = loginStart + Math.ceil((n / ASSUMED_LOGINS_PER_SECOND + 10) * 1000)
  ctx.log(
    `  storm: logging in ${n} users (${stormLoginConcurrency} at a time); their access tokens expire at ${new Date(expireAt).toISOString()}`,
  )
  const cookies: string[] = new Array<string>(n)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++
      cookies[i] = await loginFrom(a.url, `storm-user-${String(i).padStart(6, '0')}`, clientAddress(i))
      if ((i + 1) % 200 === 0) ctx.log(`  storm: ${i + 1} logged in`)
    }
  }
  await Promise.all(Array.from({ length: Math.min(stormLoginConcurrency, n) }, worker))
  const loginEnd = Date.now()
  phase = 'after'
  const loginSeconds = (loginEnd - loginStart) / 1000
  if (loginEnd > expireAt)
    notes.push(`logins overran the planned expiry by ${fmt((loginEnd - expireAt) / 1000, 1)} s: the last tokens lived 1 s each`)

  // exp is whole seconds (iat + ttl), and tokenward dates its copy on receipt: 1.5 s of margin.
  const lastExpiry = Math.max(expireAt, loginEnd + 1000)
  const refreshesBefore = idp.counts.refreshGrants
  if (refreshesBefore !== 0) failures.push(`${refreshesBefore} refreshes happened before the storm`)

  const waitMs = lastExpiry + 1500 - Date.now()
  if (waitMs > 0) {
    ctx.log(`  storm: waiting ${fmt(waitMs / 1000, 1)} s for the tokens to expire`)
    await sleep(waitMs)
  }
  // The connections are opened only now, so none idles for long; the tokens are already expired.
  ctx.log(`  storm: opening ${n * perSession} connections`)
  const setupStart = Date.now()
  const loadA = stormLoad({ origin: a.url, path: PATH, cookies, perSession: perA, connectBatch: 200 })
  const loadB = perB > 0 ? stormLoad({ origin: b.url, path: PATH, cookies, perSession: perB, connectBatch: 200 }) : undefined
  await Promise.all([loadA.ready, loadB?.ready])
  const setupSeconds = (Date.now() - setupStart) / 1000

  const counts0 = { ...idp.counts }
  const stormStartedAt = Date.now()
  const startedAfterExpiryMs = Date.now() - lastExpiry
  ctx.log(`  storm: ${n * perSession} requests now (${perA} per session to A, ${perB} to B)`)
  // When the refresh requests reach the IdP (it runs in this process): the first, and the last of n.
  let firstArrivalMs: number | null = null
  let allArrivedMs: number | null = null
  const arrivals = setInterval(() => {
    const arrived = idp.counts.tokenRequests - counts0.tokenRequests
    if (arrived > 0) firstArrivalMs ??= Date.now() - stormStartedAt
    if (arrived >= n) allArrivedMs ??= Date.now() - stormStartedAt
  }, 10)
  loadA.go()
  loadB?.go()
  const results = await Promise.all([loadA.result, ...(loadB ? [loadB.result] : [])]).finally(() => clearInterval(arrivals))
  await sleep(500)
  const counts1 = { ...idp.counts }
  const delta = (k: keyof typeof counts0) => counts1[k] - counts0[k]

  const latencies = results.flatMap((r) => r.latenciesMs).sort((x, y) => x - y)
  const statusCodes: Record<string, number> = {}
  for (const r of results) for (const [code, c] of Object.entries(r.statusCodes)) statusCodes[code] = (statusCodes[code] ?? 0) + c
  const errors = results.reduce((s, r) => s + r.errors, 0)
  const requests = results.reduce((s, r) => s + r.requests, 0)
  const durationMs = Math.max(...results.map((r) => r.lastDoneAt)) - Math.min(...results.map((r) => r.firstSentAt))
  const refreshGrants = delta('refreshGrants')
  const invalidGrants = delta('invalidGrants')
  const refreshErrors = delta('refreshErrors')
  const non200 = requests - (statusCodes['200'] ?? 0)

  // What the IdP said when it refused (the dev IdP's token-free event log), for diagnosis.
  const idpErrors: Record<string, number> = {}
  // When the IdP finished the refreshes, relative to the storm's start: the IdP's share of the latency.
  const refreshedAt = idp.events
    .filter((e) => e.name === 'grant.success' && e.at >= stormStartedAt && e.detail?.grantType === 'refresh_token')
    .map((e) => e.at - stormStartedAt)
  for (const e of idp.events) {
    if (e.name !== 'grant.error' || e.at < stormStartedAt) continue
    const what = `${String(e.detail?.error)}: ${String(e.detail?.description)}`
    idpErrors[what] = (idpErrors[what] ?? 0) + 1
  }
  if (refreshGrants !== n) failures.push(`the IdP saw ${refreshGrants} refresh grants for ${n} sessions (must be equal)`)
  if (invalidGrants !== 0) failures.push(`${invalidGrants} invalid_grant errors at the IdP (must be 0)`)
  if (refreshErrors !== 0) failures.push(`${refreshErrors} failed refresh grants at the IdP`)
  if (non200 > 0 || errors > 0)
    failures.push(
      `${non200} answers other than 200 and ${errors} connection errors: ${results
        .flatMap((r) => r.sampleErrors)
        .slice(0, 3)
        .join(' | ')}`,
    )

  // Afterwards: every session still there, and one more request each needs no refresh.
  const alive = (await sessionKeys(redis)).length
  if (alive !== n) failures.push(`${alive} sessions left in Redis after the storm, expected ${n}`)
  const followBefore = idp.counts.refreshGrants
  let followNon200 = 0
  for (let i = 0; i < n; i += 100) {
    const answers = await Promise.all(
      cookies.slice(i, i + 100).map(async (cookie, j) => {
        const r = await fetch(`${(i + j) % 2 === 0 ? a.url : b.url}${PATH}`, { headers: { cookie, 'x-csrf': '1' } })
        return r.status === 200 && (await r.text()) === OK_BODY
      }),
    )
    followNon200 += answers.filter((ok) => !ok).length
  }
  const followRefreshes = idp.counts.refreshGrants - followBefore
  if (followNon200 > 0 || followRefreshes > 0)
    failures.push(`follow-up request per session: ${followNon200} not 200, ${followRefreshes} more refreshes (expected 0 and 0)`)

  const p50 = percentile(latencies, 50)
  const p99 = percentile(latencies, 99)
  const max = latencies.at(-1) ?? NaN
  const lines = [
    `${n} sessions, ${perSession} concurrent requests each (${perA} to tokenward A, ${perB} to B, one connection per request), one Redis`,
    `logins: ${fmt(loginSeconds, 1)} s (${fmt(n / loginSeconds, 0)}/s); all access tokens expired by ${new Date(lastExpiry).toISOString()}; storm started ${fmt(startedAfterExpiryMs / 1000, 1)} s later, after ${fmt(setupSeconds, 1)} s of opening connections`,
    '',
    ...table(
      ['storm', 'value'],
      [
        ['requests', String(requests)],
        ['answers 200', String(statusCodes['200'] ?? 0)],
        ['other answers / connection errors', `${non200} / ${errors}`],
        ['IdP refresh grants (must equal sessions)', `${refreshGrants} / ${n}`],
        ['IdP invalid_grant (must be 0)', String(invalidGrants)],
        ['IdP token requests', String(delta('tokenRequests'))],
        ['p50 latency ms', fmt(p50, 1)],
        ['p99 latency ms', fmt(p99, 1)],
        ['max latency ms', fmt(max, 1)],
        ['duration ms (first request to last answer)', fmt(durationMs, 0)],
        ['refresh requests reached the IdP, ms after start: first / all', `${firstArrivalMs ?? '-'} / ${allArrivedMs ?? '-'}`],
        [
          'IdP refreshes completed, ms after start: first / median / last',
          refreshedAt.length ? `${refreshedAt[0]} / ${percentile(refreshedAt, 50)} / ${refreshedAt.at(-1)}` : '-',
        ],
        ['sessions alive afterwards', `${alive} / ${n}`],
        ['follow-up request per session: non-200 / refreshes', `${followNon200} / ${followRefreshes}`],
      ],
    ),
  ]
  for (const [what, count] of Object.entries(idpErrors)) lines.push(`IdP refused ${count} grant(s): ${what}`)
  for (const f of failures) lines.push(`WRONG: ${f}`)
  if (failures.length === 0)
    lines.push('behaviour: one refresh per session across both processes, no invalid_grant, every request 200: correct')
  // Stopped now, not at the end of the run: nothing of the storm may weigh on what runs next.
  await Promise.all([loadA.proc.child, loadB?.proc.child, a.proc.child, b.proc.child].filter((c) => c !== undefined).map(stopChild))
  return {
    name: 'storm',
    lines,
    targets: [],
    failures,
    data: {
      sessions: n,
      requestsPerSession: perSession,
      requestsPerSessionPerProcess: [perA, perB],
      loginSeconds,
      tokensExpiredAt: new Date(lastExpiry).toISOString(),
      startedAfterExpiryMs,
      connectionSetupSeconds: setupSeconds,
      requests,
      statusCodes,
      connectionErrors: errors,
      refreshGrants,
      invalidGrants,
      refreshErrors,
      idpTokenRequests: delta('tokenRequests'),
      idpErrors,
      idpRefreshRequestsArrivedMs: { first: firstArrivalMs, all: allArrivedMs },
      idpRefreshesCompletedMs: refreshedAt.length
        ? { first: refreshedAt[0], median: percentile(refreshedAt, 50), last: refreshedAt.at(-1) }
        : null,
      p50Ms: p50,
      p99Ms: p99,
      maxMs: max,
      durationMs,
      perProcess: results.map(({ latenciesMs, ...r }) => ({
        ...r,
        p50Ms: percentile(
          [...latenciesMs].sort((x, y) => x - y),
          50,
        ),
        p99Ms: percentile(
          [...latenciesMs].sort((x, y) => x - y),
          99,
        ),
      })),
      sessionsAliveAfter: alive,
      followUp: { non200: followNon200, refreshes: followRefreshes },
    },
    notes,
  }
}
