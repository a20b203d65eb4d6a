import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    globalSetup: ['test/setup/global.ts'],
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Integration files start their own IdP and tokenward on free ports and use
    // their own Redis key prefix, so they can run in parallel.
    pool: 'forks',
    maxWorkers: 2,
  },
})
