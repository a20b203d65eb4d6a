// The browsers: many logged-in sessions sending a SPA's traffic (API GETs and
// small POSTs, `/auth/session?slide=false` polls), some logging out and new ones
// logging in, each request sent to either tokenward instance as a load balancer
// would. Every request's outcome is recorded; a session that gets 401
// `login_required` without having logged out is marked ended (the report then
// decides whether it was lost or ended by an interrupted refresh).

import { completeAtIdp, CookieJar } from '../test/helpers/login.js'
import type { TokenwardProcess } from './stack.js'
import { sleep } from './sleep.js'

export type RequestKind = 'api_get' | 'api_post' | 'session_poll' | 'logout' | 'logout_check' | 'login' | 'final_check'

export interface RequestRecord {
  kind: RequestKind
  /** The session's number; -1 for a login that did not get one. */
  session: number
  /** Index of the tokenward instance (0 = A, 1 = B). */
  instance: number
  /** Epoch ms. */
  start: number
  ms: number
  /** 'ok', an error code from tokenward's JSON body, 'http_<status>', 'connection_error' or 'client_timeout'. */
  outcome: string
  status: number
  /** Connection-error cause, or the login step that failed. */
  detail?: string
}

export type SessionState = 'active' | 'closing' | 'logged_out' | 'ended'

export interface SoakSession {
  id: number
  username: string
  jar: CookieJar
  state: SessionState
  loggedInAt: number
  /** When it stopped being used: logout started, or it ended. */
  closedAt?: number
  sid?: string
  /** The request that got 401 login_required while the session was active. */
  endedBy?: RequestRecord
  inflight: number
  drained?: () => void
}

/** Expected while a fault lasts: 503s with Retry-After, and connections to a killed process. */
export const TRANSIENT_OUTCOMES: ReadonlySet<string> = new Set(['session_store_unavailable', 'idp_unavailable', 'connection_error'])

const MAX_INFLIGHT = 2000

function isTokenwardCookie(name: string): boolean {
  // The jar ignores ports, as browsers do, so it also holds the dev IdP's
  // cookies (same 127.0.0.1); a real IdP lives elsewhere, so send tokenward only its own.
  return name.includes('tokenward')
}

function cookieHeader(jar: CookieJar, url: string): string {
  return jar
    .header(url)
    .split('; ')
    .filter((pair) => pair && isTokenwardCookie(pair.slice(0, pair.indexOf('='))))
    .join('; ')
}

function errorOutcome(err: unknown): { outcome: string; detail?: string } {
  const e = err as { name?: string; cause?: { code?: string; name?: string }; code?: string }
  if (e?.name === 'TimeoutError' || e?.cause?.name === 'TimeoutError') return { outcome: 'client_timeout' }
  const code = e?.cause?.code ?? e?.code
  return { outcome: 'connection_error', detail: code ?? String((err as Error)?.message ?? err).slice(0, 80) }
}

/** What a response amounts to: 'ok' for 2xx and redirects, else tokenward's error code. */
async function classify(res: Response): Promise<{ outcome: string; status: number; body: string }> {
  const body = await res.text()
  if (res.status < 400) return { outcome: 'ok', status: res.status, body }
  let code: string | undefined
  try {
    const parsed = JSON.parse(body) as { error?: unknown }
    if (typeof parsed.error === 'string') code = parsed.error
  } catch {
    // not JSON: reported by status
  }
  return { outcome: code ?? `http_${res.status}`, status: res.status, body }
}

export interface TrafficOptions {
  instances: readonly TokenwardProcess[]
  rps: number
  churnEveryMs: number
  requestTimeoutMs: number
  log: (line: string) => void
}

export class Traffic {
  readonly records: RequestRecord[] = []
  readonly sessions: SoakSession[] = []
  /** Requests not sent because MAX_INFLIGHT were already waiting, or no session was live. */
  skipped = { inflightCap: 0, noSession: 0 }
  startedAt = 0
  stoppedAt = 0
  readonly #o: TrafficOptions
  readonly #active: SoakSession[] = []
  readonly #stop = new AbortController()
  readonly #background = new Set<Promise<void>>()
  #inflight = 0
  #issued = 0
  #ticker: NodeJS.Timeout | undefined
  #churner: NodeJS.Timeout | undefined
  #nextUser = 1
  #seq = 0

  constructor(o: TrafficOptions) {
    this.#o = o
  }

  get activeCount(): number {
    return this.#active.length
  }

  get inflight(): number {
    return this.#inflight
  }

  #pickInstance(): number {
    return Math.floor(Math.random() * this.#o.instances.length)
  }

  #record(r: RequestRecord): RequestRecord {
    this.records.push(r)
    return r
  }

  // -------------------------------------------------------------------------
  // Logins, through either instance, as behind a load balancer

  /** One login walk; records it and returns the session, or undefined when a step failed. */
  async #loginOnce(username: string): Promise<SoakSession | undefined> {
    const jar = new CookieJar()
    const start = Date.now()
    const first = this.#pickInstance()
    const fail = (outcome: string, status: number, detail: string): undefined => {
      this.#record({ kind: 'login', session: -1, instance: first, start, ms: Date.now() - start, outcome, status, detail })
      return undefined
    }
    const timeout = () => AbortSignal.timeout(this.#o.requestTimeoutMs)
    let authorizationUrl: string
    try {
      const url = `${this.#o.instances[first]!.url}/auth/login?returnTo=%2F`
      const res = await fetch(url, { redirect: 'manual', signal: timeout() })
      jar.store(url, res.headers)
      const location = res.headers.get('location')
      const c = await classify(res)
      if (res.status !== 302 || !location) return fail(c.outcome === 'ok' ? `http_${res.status}` : c.outcome, res.status, 'login')
      authorizationUrl = new URL(location, url).href
    } catch (err) {
      const e = errorOutcome(err)
      return fail(e.outcome, 0, `login ${e.detail ?? ''}`.trim())
    }
    let callbackUrl: string
    try {
      callbackUrl = await completeAtIdp(authorizationUrl, jar, username, 'demo')
    } catch (err) {
      const e =
        err instanceof TypeError ? errorOutcome(err) : { outcome: 'idp_error', detail: String((err as Error).message).slice(0, 120) }
      return fail(e.outcome, 0, `idp ${e.detail ?? ''}`.trim())
    }
    // The IdP redirects to BFF_PUBLIC_URL (instance A); the load balancer in
    // front of it may hand the callback to either instance (state is in Redis).
    const second = this.#pickInstance()
    const cb = new URL(callbackUrl)
    const target = `${this.#o.instances[second]!.url}${cb.pathname}${cb.search}`
    try {
      const res = await fetch(target, { headers: { cookie: cookieHeader(jar, target) }, redirect: 'manual', signal: timeout() })
      jar.store(target, res.headers)
      const c = await classify(res)
      if (res.status !== 303 && res.status !== 302)
        return fail(c.outcome === 'ok' ? `http_${res.status}` : c.outcome, res.status, 'callback')
    } catch (err) {
      const e = errorOutcome(err)
      return fail(e.outcome, 0, `callback ${e.detail ?? ''}`.trim())
    }
    const session: SoakSession = { id: this.sessions.length, username, jar, state: 'active', loggedInAt: Date.now(), inflight: 0 }
    this.sessions.push(session)
    this.#record({ kind: 'login', session: session.id, instance: second, start, ms: Date.now() - start, outcome: 'ok', status: 303 })
    return session
  }

  /** Logs a new user in, retrying through faults until it works or the run stops. */
  async login(): Promise<SoakSession | undefined> {
    const username = `soak-${this.#nextUser++}`
    while (!this.#stop.signal.aborted) {
      const s = await this.#loginOnce(username)
      if (s) {
        this.#active.push(s)
        return s
      }
      await sleep(1000, this.#stop.signal)
    }
    return undefined
  }

  /** The initial population, a few logins at a time. */
  async loginMany(n: number, concurrency = 5): Promise<void> {
    let left = n
    const worker = async () => {
      while (left > 0 && !this.#stop.signal.aborted) {
        left--
        await this.login()
      }
    }
    await Promise.all(Array.from({ length: concurrency }, worker))
  }

  #inBackground(p: Promise<unknown>): void {
    const q = p.then(
      () => {},
      (err: unknown) => this.#o.log(`background task failed: ${(err as Error)?.stack ?? String(err)}`),
    )
    this.#background.add(q)
    void q.finally(() => this.#background.delete(q))
  }

  // -------------------------------------------------------------------------
  // Requests

  async #send(
    s: SoakSession,
    kind: RequestKind,
    instance: number,
    init: { method?: string; path: string; body?: string },
  ): Promise<RequestRecord> {
    s.inflight++
    this.#inflight++
    const url = `${this.#o.instances[instance]!.url}${init.path}`
    const start = Date.now()
    let r: RequestRecord
    try {
      const headers: Record<string, string> = { 'x-csrf': '1', accept: 'application/json' }
      const cookie = cookieHeader(s.jar, url)
      if (cookie) headers.cookie = cookie
      if (init.body !== undefined) headers['content-type'] = 'application/json'
      const res = await fetch(url, {
        method: init.method ?? 'GET',
        headers,
        body: init.body,
        redirect: 'manual',
        signal: AbortSignal.timeout(this.#o.requestTimeoutMs),
      })
      s.jar.store(url, res.headers)
      const c = await classify(res)
      if (kind === 'session_poll' && c.outcome === 'ok' && s.sid === undefined) {
        const sid = (JSON.parse(c.body) as { sid?: unknown }).sid
        if (typeof sid === 'string') s.sid = sid
      }
      r = { kind, session: s.id, instance, start, ms: Date.now() - start, outcome: c.outcome, status: c.status }
    } catch (err) {
      const e = errorOutcome(err)
      r = {
        kind,
        session: s.id,
        instance,
        start,
        ms: Date.now() - start,
        outcome: e.outcome,
        status: 0,
        ...(e.detail ? { detail: e.detail } : {}),
      }
    } finally {
      s.inflight--
      this.#inflight--
      if (s.inflight === 0) s.drained?.()
    }
    this.#record(r)
    if (r.outcome === 'login_required' && s.state === 'active' && kind !== 'logout_check') this.#ended(s, r)
    return r
  }

  /** tokenward said the session is gone, and the script never logged it out. */
  #ended(s: SoakSession, r: RequestRecord): void {
    s.state = 'ended'
    s.closedAt = Date.now()
    s.endedBy = r
    this.#remove(s)
    this.#o.log(`session ${s.username} ended: ${r.kind} on ${this.#o.instances[r.instance]!.name} answered 401 login_required`)
    // Keep the population: a new user logs in.
    if (!this.#stop.signal.aborted) this.#inBackground(this.login())
  }

  #remove(s: SoakSession): void {
    const i = this.#active.indexOf(s)
    if (i >= 0) this.#active.splice(i, 1)
  }

  /** One request of the SPA's mix, on a random live session and instance. */
  #one(): void {
    if (this.#inflight >= MAX_INFLIGHT) {
      this.skipped.inflightCap++
      return
    }
    const s = this.#active[Math.floor(Math.random() * this.#active.length)]
    if (!s) {
      this.skipped.noSession++
      return
    }
    const instance = this.#pickInstance()
    const n = ++this.#seq
    const roll = Math.random()
    let p: Promise<RequestRecord>
    if (roll < 0.65) p = this.#send(s, 'api_get', instance, { path: `/api/items/${n % 1000}?page=${n % 7}` })
    else if (roll < 0.8) {
      const body = JSON.stringify({ item: n % 1000, quantity: 1 + (n % 5), note: 'soak'.repeat(8) })
      p = this.#send(s, 'api_post', instance, { method: 'POST', path: '/api/orders', body })
    } else p = this.#send(s, 'session_poll', instance, { path: '/auth/session?slide=false' })
    void p
  }

  // -------------------------------------------------------------------------
  // Logout churn

  async #logoutOne(): Promise<void> {
    const s = this.#active[Math.floor(Math.random() * this.#active.length)]
    if (!s) return
    s.state = 'closing'
    s.closedAt = Date.now()
    this.#remove(s)
    // Nothing of this session in flight when it logs out: a late answer to an
    // earlier request must not be mistaken for a lost session.
    if (s.inflight > 0) {
      // Bounded, and the timer is cleared: a pending one would hold the process open at the end.
      const bound = new AbortController()
      await Promise.race([new Promise<void>((resolve) => (s.drained = resolve)), sleep(this.#o.requestTimeoutMs + 5000, bound.signal)])
      bound.abort()
    }
    const before = s.jar.header(this.#o.instances[0]!.url)
    let done = false
    // Retried through faults (a minute at most, a few seconds once the run
    // stops): a logout that never succeeds is reported, not hidden.
    for (let attempt = 0; attempt < (this.#stop.signal.aborted ? 5 : 60) && !done; attempt++) {
      const r = await this.#send(s, 'logout', this.#pickInstance(), { method: 'POST', path: '/auth/logout' })
      done = r.outcome === 'ok'
      if (!done) await sleep(1000)
    }
    if (done) {
      s.state = 'logged_out'
      // The old cookie must no longer work on either instance (the session is gone from Redis).
      const stale = new CookieJar()
      for (const pair of before.split('; ')) {
        const eq = pair.indexOf('=')
        if (eq > 0) stale.set(pair.slice(0, eq), pair.slice(eq + 1), '127.0.0.1')
      }
      const ghost: SoakSession = { ...s, jar: stale, inflight: 0, state: 'logged_out' }
      for (let attempt = 0; attempt < (this.#stop.signal.aborted ? 3 : 30); attempt++) {
        const r = await this.#send(ghost, 'logout_check', this.#pickInstance(), { path: '/auth/session?slide=false' })
        // 401 is the expected answer; a 503 during a fault says nothing yet.
        if (r.outcome === 'login_required') {
          r.outcome = 'ok'
          break
        }
        if (r.outcome === 'ok') {
          r.outcome = 'still_authenticated_after_logout'
          break
        }
        await sleep(1000)
      }
    }
    if (!this.#stop.signal.aborted) await this.login()
  }

  // -------------------------------------------------------------------------

  /** Starts the open-loop request schedule (a fixed rate, whatever the answers) and the churn. */
  start(): void {
    this.startedAt = Date.now()
    this.#ticker = setInterval(() => {
      const due = Math.floor(((Date.now() - this.startedAt) * this.#o.rps) / 1000)
      while (this.#issued < due) {
        this.#issued++
        this.#one()
      }
    }, 10)
    this.#churner = setInterval(() => this.#inBackground(this.#logoutOne()), this.#o.churnEveryMs)
  }

  /** Stops sending and waits (bounded) for what is in flight, logins and logouts included. */
  async stop(): Promise<void> {
    if (this.#ticker) clearInterval(this.#ticker)
    if (this.#churner) clearInterval(this.#churner)
    this.stoppedAt = Date.now()
    this.#stop.abort()
    const deadline = Date.now() + this.#o.requestTimeoutMs + 35_000
    while ((this.#inflight > 0 || this.#background.size > 0) && Date.now() < deadline) await sleep(50)
  }

  /** After the run: every session still live answers an API call on each instance. */
  async finalCheck(): Promise<void> {
    await Promise.all(
      [...this.#active].map(async (s) => {
        for (let i = 0; i < this.#o.instances.length && s.state === 'active'; i++) {
          await this.#send(s, 'final_check', i, { path: '/api/final-check' })
        }
      }),
    )
  }

  /** Sessions still live at the end. */
  active(): readonly SoakSession[] {
    return this.#active
  }
}
