// What a soak run does: its load, its timing and its fault schedule. Kept
// apart from the machinery so the 10-minute run (soak/run.ts) and the
// 60-second test (test/integration/soak.test.ts) differ only in numbers.

export type FaultKind = 'redis_restart' | 'redis_pause' | 'idp_stop' | 'tokenward_kill'

export const FAULT_KINDS: readonly FaultKind[] = ['redis_restart', 'idp_stop', 'tokenward_kill', 'redis_pause']

export interface PlannedFault {
  kind: FaultKind
  /** ms after traffic starts */
  at: number
  /** How long the fault lasts: Redis down before its restart, paused, IdP stopped, tokenward dead before its restart. */
  holdMs: number
}

export interface SoakOptions {
  durationS: number
  sessions: number
  rps: number
  /** The dev IdP's access-token lifetime: short, so refreshes happen all the time. */
  accessTokenTtlS: number
  /** BFF_REFRESH_SKEW: must stay well below the token lifetime, or every request would refresh. */
  refreshSkewS: number
  /** One logout and one new login every this many ms. */
  churnEveryMs: number
  /** Client-side bound on one request; above tokenward's 15 s lock wait, so only a real hang hits it. */
  requestTimeoutMs: number
  /** Traffic without faults at the start (a clean baseline) and at the end (recovery is visible). */
  warmupS: number
  cooldownS: number
  faults: PlannedFault[]
  /** Progress lines; the CLI prints them, the test keeps them quiet. */
  log: (line: string) => void
}

const DEFAULT_HOLDS: Record<FaultKind, number> = {
  redis_restart: 2000,
  redis_pause: 5000,
  idp_stop: 8000,
  tokenward_kill: 1000,
}

/** The compressed schedule of short runs and the 60-second test: each fault still long enough to cost requests. */
export const SHORT_HOLDS: Record<FaultKind, number> = {
  redis_restart: 2000,
  redis_pause: 3000,
  idp_stop: 4000,
  tokenward_kill: 500,
}

/**
 * Every fault kind `reps` times, interleaved (never two at once, so each error
 * window has one cause), evenly spaced between the warm-up and the cool-down.
 */
export function planFaults(o: {
  durationS: number
  warmupS: number
  cooldownS: number
  reps?: number
  holds?: Partial<Record<FaultKind, number>>
  minSpacingS?: number
}): PlannedFault[] {
  const span = (o.durationS - o.warmupS - o.cooldownS) * 1000
  if (span <= 0) return []
  // Spacing of at least ~30 s by default: the longest fault (8 s) plus time for
  // every session's token to come round once more before the next fault.
  const minSpacing = (o.minSpacingS ?? 30) * 1000
  const reps = o.reps ?? Math.max(1, Math.floor(span / minSpacing / FAULT_KINDS.length))
  const holds = { ...DEFAULT_HOLDS, ...o.holds }
  const count = reps * FAULT_KINDS.length
  const spacing = span / count
  const faults: PlannedFault[] = []
  for (let i = 0; i < count; i++) {
    const kind = FAULT_KINDS[i % FAULT_KINDS.length]!
    faults.push({ kind, at: Math.round(o.warmupS * 1000 + i * spacing), holdMs: holds[kind] })
  }
  return faults
}

function positive(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name]
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number (got ${JSON.stringify(raw)})`)
  return n
}

/** The CLI's options: SOAK_DURATION (s, 600), SOAK_SESSIONS (50), SOAK_RPS (200). */
export function optionsFromEnv(env: NodeJS.ProcessEnv, log: (line: string) => void): SoakOptions {
  const durationS = positive(env, 'SOAK_DURATION', 600)
  const sessions = Math.round(positive(env, 'SOAK_SESSIONS', 50))
  const rps = positive(env, 'SOAK_RPS', 200)
  if (durationS < 30) throw new Error('SOAK_DURATION must be at least 30 seconds: shorter runs cannot fit a fault of each kind')
  // Short runs get a compressed schedule, like the 60-second test.
  const short = durationS < 180
  const warmupS = short ? Math.min(8, durationS * 0.15) : 30
  const cooldownS = short ? Math.min(10, durationS * 0.15) : 30
  const holds = short ? SHORT_HOLDS : {}
  return {
    durationS,
    sessions,
    rps,
    accessTokenTtlS: 15,
    refreshSkewS: 5,
    churnEveryMs: short ? 5000 : 10_000,
    requestTimeoutMs: 30_000,
    warmupS,
    cooldownS,
    faults: planFaults({ durationS, warmupS, cooldownS, holds, minSpacingS: short ? 8 : 30 }),
    log,
  }
}
