import type { TestProject } from 'vitest/node'
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js'

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string
  }
}

/**
 * Starts one private redis-server for the run (or uses BFF_REDIS_URL when set);
 * each test file isolates itself with its own key prefix.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let server: RedisServer | undefined
  let url = process.env.BFF_REDIS_URL
  if (!url) {
    server = await startRedisServer()
    url = server.url
  }
  project.provide('redisUrl', url)
  return async () => {
    await server?.stop()
  }
}
