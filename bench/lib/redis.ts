// Reading Redis from the outside: command counts, memory, and tokenward's key
// layout (RedisKeys in src/store/redis/connection.ts):
//   <prefix>s:{<sid>}           the encrypted session entry (a string with a TTL)
//   <prefix>x:sub:<sha256>      set of sids of one user
//   <prefix>x:idp:<sha256>      set of sids of one IdP session
//   <prefix>l:{sid}, j:{sid}    refresh lock and journal (only while refreshing)
//   <prefix>t:<id>              login transactions (minutes)
//   <prefix>once:<sha256>       one-time ids (back-channel logout jti)

import type { Redis } from 'ioredis'

export const PREFIX = 'tokenward:'

/** `INFO commandstats` as command → calls. Commands run inside Lua scripts are counted too. */
export async function commandCalls(redis: Redis): Promise<Record<string, number>> {
  const text = await redis.info('commandstats')
  const out: Record<string, number> = {}
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out[m[1]!] = Number(m[2])
  return out
}

export function diffCalls(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [cmd, n] of Object.entries(after)) {
    const d = n - (before[cmd] ?? 0)
    if (d > 0) out[cmd] = d
  }
  return out
}

export async function usedMemory(redis: Redis): Promise<number> {
  const text = await redis.info('memory')
  return Number(/^used_memory:(\d+)/m.exec(text)?.[1] ?? NaN)
}

export async function scanKeys(redis: Redis, pattern: string): Promise<string[]> {
  const keys: string[] = []
  let cursor = '0'
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = next
    keys.push(...batch)
  } while (cursor !== '0')
  return keys
}

export const sessionKeys = (redis: Redis): Promise<string[]> => scanKeys(redis, `${PREFIX}s:*`)

/** `tokenward:s:{sid}` → sid */
export function sidOf(sessionKey: string): string {
  return sessionKey.slice(`${PREFIX}s:{`.length, -1)
}

/** The index sets (x:sub:*, x:idp:*) that hold this sid. */
export async function indexKeysOf(redis: Redis, sid: string): Promise<string[]> {
  const keys = await scanKeys(redis, `${PREFIX}x:*`)
  const member = await Promise.all(keys.map((k) => redis.sismember(k, sid)))
  return keys.filter((_, i) => member[i] === 1)
}

export async function memoryUsage(redis: Redis, key: string): Promise<number> {
  // SAMPLES 0: count every element of an aggregate, not an estimate.
  const n = (await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')) as number | null
  if (n === null) throw new Error(`MEMORY USAGE: no key ${key}`)
  return n
}

/** CPU time Redis has used so far (user + system), in seconds: `INFO cpu`. */
export async function redisCpuSeconds(redis: Redis): Promise<number> {
  const text = await redis.info('cpu')
  const get = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(text)?.[1] ?? NaN)
  return get('used_cpu_user') + get('used_cpu_sys')
}
