// `npm run bench`: every scenario of issue 7, or those in BENCH_SCENARIOS
// (steady,post,download,redis,sessions,memory,storm). See bench/README.md.

import { runBench } from './lib/runner.js'

await runBench({ resultPrefix: 'bench' })
