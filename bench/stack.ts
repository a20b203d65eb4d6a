// `npm run bench:stack`: the steady-state environment of `npm run bench` (a
// private redis-server, the dev IdP, the upstream, the plain Node proxy and
// tokenward with one logged-in user), left running for profiling by hand:
// perf, strace or a load generator of your choice against the printed URLs.
// Prints one JSON line `{ targets, headers }`, then waits for Ctrl-C.
// BENCH_NODE_ARGS applies to tokenward as in `npm run bench`.

import { startMainEnv } from './lib/env.js'
import { cleanup, installSignalHandlers } from './lib/procs.js'
import { PATH } from './lib/servers.js'

installSignalHandlers()
try {
  const env = await startMainEnv(10_000_000)
  const targets = await env.targets()
  console.log(JSON.stringify({ path: PATH, redisUrl: env.redisUrl, upstream: env.upstream, targets, headers: env.headers }))
} catch (err) {
  console.error(err)
  await cleanup()
  process.exit(1)
}
