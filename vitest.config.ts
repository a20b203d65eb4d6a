import { defineConfig } from 'vitest/config'

// Test lanes. `npm test` (and CI) runs every project; `npm run test:fast` runs
// only `fast`; `npm run test:integration`, `test:e2e` and `test:interop` the others.
//
// - fast: unit, property and store contract tests. No IdP, no tokenward server,
//   no browser; the contract suites run against the Redis of the global setup
//   (and the memory store). Redis-specific behaviour (key layout, outages on a
//   private redis-server) is in test/integration/redis-store.test.ts.
// - integration: real IdP, echo upstream and tokenward on free ports, real Redis
//   (also Cluster and Sentinel topologies, the CLI and production builds, soak).
// - e2e: a real Chromium against the demo stack.
// - interop: tokenward against LemonLDAP::NG (Debian's packages), an IdP nobody
//   here wrote, through its own pages in Chromium.
//
// The global setup (one private redis-server, or BFF_REDIS_URL) lives at the
// root, not in the projects: Vitest runs the root's global setup once for any
// selection of projects and every project inherits what it provides
// (`inject('redisUrl')`). Projects do not `extends` the root, so it does not
// run a second time per project.

const FAST = ['test/unit/**/*.test.ts', 'test/property/**/*.test.ts', 'test/contract/**/*.test.ts']
const E2E = ['test/e2e/**/*.test.ts']
const INTEROP = ['test/interop/**/*.test.ts']

export default defineConfig(({ mode }) => {
  const shared = {
    testTimeout: 30_000,
    hookTimeout: 60_000,
  }
  return {
    test: {
      globalSetup: ['test/setup/global.ts'],
      // Integration files start their own IdP and tokenward on free ports and use
      // their own Redis key prefix, so they can run in parallel.
      pool: 'forks',
      maxWorkers: 2,
      projects: [
        {
          test: {
            ...shared,
            name: 'fast',
            include: FAST,
            // `vitest --mode fast` (npm run test:fast) runs each property a tenth as
            // often, at least 100 times (test/helpers/fast-check.ts); `npm test`
            // and CI run them in full.
            env: mode === 'fast' ? { FC_RUNS_SCALE: '0.1' } : {},
          },
        },
        {
          test: {
            ...shared,
            name: 'integration',
            include: ['test/integration/**/*.test.ts'],
          },
        },
        {
          test: {
            ...shared,
            name: 'e2e',
            include: E2E,
          },
        },
        {
          test: {
            ...shared,
            name: 'interop',
            include: INTEROP,
          },
        },
      ],
    },
  }
})
