// What a device-bound session costs per proxied request (Device Bound Session
// Credentials, docs/security-model.md S84-S87): the same authenticated GET with
// a session that never registered a key and with one that did (its bound
// cookie is checked on every request), at a few concurrency levels. tokenward
// runs in this process with its public URL https (as behind a TLS proxy); the
// load generator is bench/load.ts in a child process, as in the other scenarios.
//
// Usage: npm run bench:dbsc   (BENCH_DURATION, BENCH_WARMUP, BENCH_CONNECTIONS as for `npm run bench`)

import { randomBytes } from 'node:crypto'
import { startDevIdp } from '../demo/idp.js'
import { startBff } from '../test/helpers/bff.js'
import { deviceKey, parseRegistration, proof } from '../test/helpers/dbsc-client.js'
import { CookieJar, completeAtIdp, startLogin } from '../test/helpers/login.js'
import { freePort } from '../test/helpers/ports.js'
import { startRedisServer } from '../test/helpers/redis-server.js'
import { startEchoUpstream } from '../test/helpers/upstream.js'
import { cpuSeconds } from './lib/procs.js'
import type { LoadResult } from './lib/load-types.js'
import { load } from './lib/servers.js'

const duration = Number(process.env.BENCH_DURATION ?? '10')
const warmup = Number(process.env.BENCH_WARMUP ?? '2')
const connections = (process.env.BENCH_CONNECTIONS ?? '1,10,50').split(',').map(Number)

const redis = await startRedisServer()
const upstream = await startEchoUpstream()
const port = await freePort()
const publicUrl = `https://127.0.0.1:${port}`
const clientSecret = randomBytes(24).toString('base64url')
const idp = await startDevIdp({
  password: 'demo',
  accessTokenTtl: 3600,
  clients: [{ client_id: 'bench', client_secret: clientSecret, redirect_uris: [`${publicUrl}/auth/callback`] }],
})
const bff = await startBff({
  issuer: idp.issuer,
  redisUrl: redis.url,
  clientId: 'bench',
  clientSecret,
  port,
  routes: [{ prefix: '/api', upstream: upstream.url, token: 'user' }],
  env: { BFF_PUBLIC_URL: publicUrl, BFF_DBSC: 'auto', BFF_LOG_LEVEL: 'warn', BFF_DBSC_COOKIE_TTL: '3600' },
})

/** Logs in (talking plain http to the https-configured port); returns the jar and the registration offer. */
async function login(username: string): Promise<{ jar: CookieJar; offer: string | null }> {
  const jar = new CookieJar()
  const callback = new URL(await completeAtIdp(await startLogin(bff.url, jar), jar, username, 'demo'))
  const res = await fetch(`${bff.url}${callback.pathname}${callback.search}`, {
    headers: { cookie: jar.header(bff.url) },
    redirect: 'manual',
  })
  jar.store(bff.url, res.headers)
  const session = await fetch(`${bff.url}/auth/session`, { headers: { cookie: jar.header(bff.url), 'x-csrf': '1' } })
  return { jar, offer: session.headers.get('secure-session-registration') }
}

try {
  const unbound = await login('alice')
  const bound = await login('bob')
  const r = parseRegistration(bound.offer)
  const registered = await fetch(`${bff.url}${r.path}`, {
    method: 'POST',
    headers: {
      cookie: bound.jar.header(bff.url),
      'secure-session-response': await proof(await deviceKey(), { jti: r.challenge, authorization: r.authorization }, { withJwk: true }),
    },
  })
  if (registered.status !== 200) throw new Error(`registration answered ${registered.status}`)
  bound.jar.store(bff.url, registered.headers)

  const run = (jar: CookieJar, c: number) =>
    load(
      { url: `${bff.url}/api/echo`, headers: { cookie: jar.header(bff.url), 'x-csrf': '1' }, connections: c, duration, warmup },
      { process: () => cpuSeconds(process.pid) },
    )
  // JIT and pools warm up on both kinds first; then each kind runs twice in
  // ABBA order, so drift on a shared machine weighs on both alike.
  await run(unbound.jar, 10)
  await run(bound.jar, 10)
  const rows: string[][] = []
  const data: Record<string, unknown> = {}
  for (const c of connections) {
    const results: Record<string, LoadResult[]> = { unbound: [], 'device-bound': [] }
    for (const name of ['unbound', 'device-bound', 'device-bound', 'unbound'] as const) {
      const result = await run(name === 'unbound' ? unbound.jar : bound.jar, c)
      if (result.non2xx > 0 || result.errors > 0) throw new Error(`${name}: ${result.non2xx} non-2xx, ${result.errors} errors`)
      results[name]!.push(result)
    }
    for (const [name, rs] of Object.entries(results)) {
      const mean = (f: (r: LoadResult) => number) => rs.reduce((sum, r) => sum + f(r), 0) / rs.length
      data[`${name}@${c}`] = rs
      rows.push([
        name,
        String(c),
        mean((r) => r.rps).toFixed(0),
        mean((r) => r.p50Ms).toFixed(2),
        mean((r) => r.p99Ms).toFixed(2),
        mean((r) => r.cpuMsPerRequest?.process ?? 0).toFixed(3),
      ])
    }
  }
  console.info(
    `GET /api/echo, ${duration} s per run after ${warmup} s warm-up (tokenward, IdP and upstream in one process), mean of two runs each`,
  )
  console.info(['session', 'conns', 'req/s', 'p50 ms', 'p99 ms', 'CPU ms/req'].join('\t'))
  for (const row of rows) console.info(row.join('\t'))
  console.info(JSON.stringify(data))
} finally {
  await bff.close()
  await upstream.close()
  await idp.close()
  await redis.close()
}
