// Every knob of `npm run bench`, from environment variables (bench/README.md).

export const SCENARIOS = ['steady', 'post', 'download', 'redis', 'sessions', 'memory', 'storm'] as const
export type ScenarioName = (typeof SCENARIOS)[number]

export interface Settings {
  scenarios: ScenarioName[]
  /** Seconds measured per load run. */
  duration: number
  /** Seconds of warm-up before each measured run, thrown away. */
  warmup: number
  /** steady: concurrency levels. */
  connections: number[]
  postConnections: number[]
  postBytes: number
  downloadConnections: number[]
  downloadBytes: number
  stormSessions: number
  /** Concurrent requests per session in the storm (split over the two processes). */
  stormConcurrency: number
  stormLoginConcurrency: number
  /** Sessions seeded into Redis for the large-keyspace measurement. */
  sessions: number
  sessionsConnections: number
  /** How many times the seeded sessions are added and removed again. */
  sessionsRounds: number
  redisRequests: number
  memoryRequests: number
  memoryConnections: number
}

class SettingsError extends Error {}

function num(name: string, fallback: number, check: (n: number) => boolean = (n) => Number.isInteger(n) && n > 0): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw.replace(/_/g, ''))
  if (!check(n)) throw new SettingsError(`${name}=${raw}: expected a positive ${check === positive ? 'number' : 'integer'}`)
  return n
}

const positive = (n: number): boolean => Number.isFinite(n) && n > 0

function list(name: string, fallback: string): number[] {
  const raw = process.env[name] || fallback
  const out = raw.split(',').map((s) => Number(s.trim()))
  if (out.length === 0 || out.some((n) => !Number.isInteger(n) || n < 1))
    throw new SettingsError(`${name}=${raw}: expected positive integers, e.g. 1,10,50`)
  return out
}

export function readSettings(defaults: { scenarios?: ScenarioName[] } = {}): Settings {
  let scenarios: ScenarioName[]
  const raw = process.env.BENCH_SCENARIOS
  if (defaults.scenarios) scenarios = defaults.scenarios
  else if (!raw || raw === 'all') scenarios = [...SCENARIOS]
  else {
    const asked = raw
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)
    const unknown = asked.filter((s) => !(SCENARIOS as readonly string[]).includes(s))
    if (unknown.length > 0 || asked.length === 0)
      throw new SettingsError(`BENCH_SCENARIOS=${raw}: unknown ${unknown.join(', ')}; choose from ${SCENARIOS.join(',')} (or all)`)
    // Always in the fixed order, so a run never depends on how the list was typed.
    scenarios = SCENARIOS.filter((s) => asked.includes(s))
  }
  return {
    scenarios,
    duration: num('BENCH_DURATION', 10, positive),
    warmup: num('BENCH_WARMUP', 2, (n) => Number.isFinite(n) && n >= 0),
    connections: list('BENCH_CONNECTIONS', '1,10,50'),
    postConnections: list('BENCH_POST_CONNECTIONS', '1,10'),
    postBytes: num('BENCH_POST_BYTES', 1024),
    downloadConnections: list('BENCH_DOWNLOAD_CONNECTIONS', '1,4'),
    downloadBytes: num('BENCH_DOWNLOAD_BYTES', 10_000_000),
    stormSessions: num('BENCH_STORM_SESSIONS', 1000),
    stormConcurrency: num('BENCH_STORM_CONCURRENCY', 20),
    stormLoginConcurrency: num('BENCH_STORM_LOGIN_CONCURRENCY', 16),
    sessions: num('BENCH_SESSIONS', 100_000),
    sessionsConnections: num('BENCH_SESSIONS_CONNECTIONS', 10),
    sessionsRounds: num('BENCH_SESSIONS_ROUNDS', 2),
    redisRequests: num('BENCH_REDIS_REQUESTS', 10_000),
    memoryRequests: num('BENCH_MEMORY_REQUESTS', 1_000_000),
    memoryConnections: num('BENCH_MEMORY_CONNECTIONS', 10),
  }
}

export { SettingsError }
