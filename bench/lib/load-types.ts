// What the parent sends to and gets back from the load generator children
// (bench/load.ts, bench/storm-load.ts).

export interface LoadOptions {
  /**
   * `autocannon` (default): many small requests.
   * `stream`: large responses (downloads), read with node:http, which needs
   * no per-byte work of a load generator written in JavaScript.
   */
  kind?: 'autocannon' | 'stream'
  url: string
  headers: Record<string, string>
  method?: 'GET' | 'POST'
  /** Request body (POST). */
  body?: string
  connections: number
  /** Seconds measured (ignored when `amount` is set). */
  duration: number
  /** Seconds run first and thrown away: connection setup, JIT, pools. */
  warmup: number
  /** Exactly this many requests are measured instead of a duration. */
  amount?: number
  /** Requests run first and thrown away (with `amount`). */
  warmupAmount?: number
  /** `stream`: the body size every response must have. */
  expectBytes?: number
}

export interface LoadResult {
  requests: number
  /** Responses per second over the measured run. */
  rps: number
  p50Ms: number
  p99Ms: number
  /** Connection errors and timeouts. */
  errors: number
  timeouts: number
  non2xx: number
  statusCodes: Record<string, number>
  seconds: number
  /** Response body bytes received in the measured run. */
  bytes: number
  /** `stream`: responses whose body size differed from `expectBytes`. */
  badBodies?: number
  /** CPU time per measured request, in ms, by meter (`target`: the target's process; `redis`). */
  cpuMsPerRequest?: Record<string, number>
}

export interface StormLoadOptions {
  /** Origin of one tokenward process. */
  origin: string
  path: string
  /** One Cookie header per session. */
  cookies: string[]
  /** Concurrent requests per session sent to this process, each on a connection of its own. */
  perSession: number
  /** Connections opened at once while setting up. */
  connectBatch: number
}

export interface StormLoadResult {
  requests: number
  statusCodes: Record<string, number>
  /** Connections that failed or closed before answering. */
  errors: number
  /** Of every answered request, from writing it to its complete response, in ms (0.01 ms resolution). */
  latenciesMs: number[]
  /** Epoch ms when the first request was written and when the last response was complete. */
  firstSentAt: number
  lastDoneAt: number
  /** How long opening the connections (each with one GET /healthz) took. */
  setupMs: number
  /** Example bodies of non-200 answers, for diagnosis. */
  sampleErrors: string[]
}
