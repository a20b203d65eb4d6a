// `npm run bench:proxy`: the steady-state scenario alone (authenticated GET
// through tokenward against the upstream, a plain Node proxy and nginx), as
// before `npm run bench` existed. Same knobs (BENCH_CONNECTIONS,
// BENCH_DURATION, BENCH_NODE_ARGS); writes bench/results/proxy-<time>.json.
// See bench/README.md.

import { runBench } from './lib/runner.js'

await runBench({ scenarios: ['steady'], resultPrefix: 'proxy' })
