// Turns what a soak run recorded into its report: requests and errors by kind,
// error windows per fault, sessions lost versus ended by an interrupted
// refresh, refresh grants versus expected, and memory growth.

import type { DevIdpCounts } from '../demo/idp.js'
import type { FaultRecord } from './faults.js'
import type { FaultKind, SoakOptions } from './options.js'
import type { AuditLine, Incarnation, LogSummary } from './stack.js'
import { TRANSIENT_OUTCOMES, type RequestRecord, type SoakSession } from './traffic.js'

/** After a fault is undone, errors within this long still count as its effect (a 15 s token lifetime, the 15 s lock wait). */
export const GRACE_MS = 15_000
export const INTERRUPTED_REASON = 'a previous refresh was interrupted'

export interface MemorySample {
  /** Epoch ms. */
  at: number
  instance: string
  incarnation: number
  pid: number
  rssKb: number
}

export interface AnalysisInput {
  options: Omit<SoakOptions, 'log'>
  startedAt: number
  /** Traffic start and stop, epoch ms. */
  t0: number
  tEnd: number
  interrupted: boolean
  records: readonly RequestRecord[]
  sessions: readonly SoakSession[]
  skipped: { inflightCap: number; noSession: number }
  faults: readonly FaultRecord[]
  audits: readonly AuditLine[]
  warnings: readonly LogSummary[]
  unparsableLogLines: number
  idp: DevIdpCounts
  memory: readonly MemorySample[]
  incarnations: Record<string, readonly Incarnation[]>
  metrics: Record<string, Record<string, number> | undefined>
  upstream: { requests: number; withoutAuthorization: number }
  machine: Record<string, unknown>
  error?: string
}

type Attribution = FaultKind | 'none'

/** Memory of one incarnation of an instance, in MiB, as the report lists it. */
interface MemoryRow {
  instance: string
  incarnation: number
  pid: number
  livedS: number
  end: NonNullable<Incarnation['end']> | 'running'
  startMiB: number
  afterWarmupMiB: number | null
  endMiB: number
  peakMiB: number
  growthPct: number | null
  growthAfterWarmupPct: number | null
}

interface Window {
  view: 'instance' | 'session'
  who: string
  fault: Attribution
  /** ms after traffic start */
  from: number
  ms: number
  failures: number
  outcomes: Record<string, number>
}

const inc = (m: Record<string, number>, k: string, by = 1) => {
  m[k] = (m[k] ?? 0) + by
}
const round = (n: number, d = 1) => Math.round(n * 10 ** d) / 10 ** d
const pct = (a: number, b: number) => (b > 0 ? round(((a - b) / b) * 100) : null)

function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

/** The fault whose span (start, undone + grace) contains `t`; the latest one when spans touch. */
function faultAt(t: number, faults: readonly FaultRecord[]): Attribution {
  let found: Attribution = 'none'
  for (const f of faults) {
    const end = (f.end ?? f.start + f.holdMs) + GRACE_MS
    if (t >= f.start && t <= end) found = f.kind
  }
  return found
}

const isFailure = (r: RequestRecord) => r.outcome !== 'ok' && r.outcome !== 'login_required'

/**
 * Runs of consecutive failures in one timeline (requests ordered by when they
 * were sent): from the first failed request to the first one after it that
 * succeeded. A session's final 401 is not a window: it is a session ending.
 */
function windowsOf(view: Window['view'], who: string, recs: RequestRecord[], t0: number, faults: readonly FaultRecord[]): Window[] {
  const out: Window[] = []
  let open: { start: number; firstFailAt: number; lastEnd: number; failures: number; outcomes: Record<string, number> } | undefined
  const close = (end: number) => {
    if (!open) return
    out.push({
      view,
      who,
      fault: faultAt(open.firstFailAt, faults),
      from: open.start - t0,
      ms: Math.max(0, end - open.start),
      failures: open.failures,
      outcomes: open.outcomes,
    })
    open = undefined
  }
  for (const r of [...recs].sort((a, b) => a.start - b.start)) {
    if (isFailure(r)) {
      open ??= { start: r.start, firstFailAt: r.start + r.ms, lastEnd: r.start + r.ms, failures: 0, outcomes: {} }
      open.failures++
      open.lastEnd = Math.max(open.lastEnd, r.start + r.ms)
      inc(open.outcomes, r.outcome)
    } else if (r.outcome === 'ok') close(r.start)
  }
  if (open) close(open.lastEnd)
  return out
}

export function analyze(x: AnalysisInput) {
  const { options: o, t0, tEnd, faults } = x
  const traffic = x.records.filter((r) => r.kind === 'api_get' || r.kind === 'api_post' || r.kind === 'session_poll')
  const trafficSeconds = (tEnd - t0) / 1000

  // --- sessions: lost, or ended by an interrupted refresh (tokenward's documented fail-closed case)
  const loginAudit = new Map<string, AuditLine>()
  const interruptedAudit = new Map<string, AuditLine>()
  const auditsBySub = new Map<string, AuditLine[]>()
  for (const a of x.audits) {
    if (!a.sub) continue
    if (a.event === 'login') loginAudit.set(a.sub, a)
    if (a.event === 'refresh_failed' && a.reason === INTERRUPTED_REASON) interruptedAudit.set(a.sub, a)
    const list = auditsBySub.get(a.sub) ?? []
    list.push(a)
    auditsBySub.set(a.sub, list)
  }
  const lost: Array<Record<string, unknown>> = []
  const interrupted: Array<Record<string, unknown>> = []
  for (const s of x.sessions) {
    if (s.state !== 'ended' || !s.endedBy) continue
    const sid = loginAudit.get(s.username)?.sid ?? s.sid
    const by = s.endedBy
    const ended = {
      session: s.username,
      sid,
      loggedInAt: round((s.loggedInAt - t0) / 1000),
      endedAt: round((by.start + by.ms - t0) / 1000),
      request: `${by.kind} via ${by.instance === 0 ? 'A' : 'B'}`,
    }
    const a = interruptedAudit.get(s.username)
    if (a) {
      interrupted.push({
        ...ended,
        auditAt: round((a.at - t0) / 1000),
        auditBy: `${a.instance}#${a.incarnation}`,
        fault: faultAt(a.at, faults),
      })
    } else {
      // What tokenward said about this session, to tell why it was lost.
      const said = (auditsBySub.get(s.username) ?? []).filter((e) => e.event !== 'refresh' && e.event !== 'login')
      lost.push({
        ...ended,
        fault: faultAt(by.start + by.ms, faults),
        audits: said.map((e) => ({
          event: e.event,
          reason: e.reason,
          at: round((e.at - t0) / 1000),
          by: `${e.instance}#${e.incarnation}`,
        })),
      })
    }
  }
  const endedSessions = new Set(x.sessions.filter((s) => s.state === 'ended').map((s) => s.id))
  const interruptedIds = new Set(x.sessions.filter((s) => s.state === 'ended' && interruptedAudit.has(s.username)).map((s) => s.id))

  // --- requests and errors
  const byOutcome: Record<string, number> = {}
  const byStatus: Record<string, number> = {}
  const byKind: Record<string, Record<string, number>> = {}
  const byFault: Record<string, Record<string, number>> = {}
  const connectionCauses: Record<string, number> = {}
  const unexpected: Record<string, number> = {}
  const unexpectedExamples: Array<Record<string, unknown>> = []
  for (const r of x.records) {
    inc(byOutcome, r.outcome)
    inc(byStatus, r.status === 0 ? r.outcome : String(r.status))
    inc((byKind[r.kind] ??= {}), r.outcome)
    if (r.outcome === 'ok') continue
    inc((byFault[faultAt(r.start + r.ms, faults)] ??= {}), r.outcome)
    if (r.outcome === 'connection_error') inc(connectionCauses, `${r.kind === 'login' ? 'login ' : ''}${r.detail ?? 'unknown'}`)
    // Expected: the transient kinds, and the one 401 of a session ended by an interrupted refresh.
    // The final check runs after the cool-down, when nothing is failing any more.
    const expected =
      (TRANSIENT_OUTCOMES.has(r.outcome) && r.kind !== 'final_check') || (r.outcome === 'login_required' && interruptedIds.has(r.session))
    // A lost session's 401 is counted as a lost session, not twice.
    if (!expected && !(r.outcome === 'login_required' && endedSessions.has(r.session))) {
      inc(unexpected, `${r.kind} ${r.outcome}`)
      if (unexpectedExamples.length < 20) {
        unexpectedExamples.push({ ...r, start: round((r.start - t0) / 1000, 3), fault: faultAt(r.start + r.ms, faults) })
      }
    }
  }
  const okLatency = traffic
    .filter((r) => r.outcome === 'ok')
    .map((r) => r.ms)
    .sort((a, b) => a - b)
  const failed = x.records.filter((r) => r.outcome !== 'ok').length

  // --- error windows
  const windows: Window[] = []
  for (const [i, name] of ['A', 'B'].entries())
    windows.push(
      ...windowsOf(
        'instance',
        name,
        traffic.filter((r) => r.instance === i),
        t0,
        faults,
      ),
    )
  const perSession = new Map<number, RequestRecord[]>()
  for (const r of traffic) {
    const list = perSession.get(r.session) ?? []
    list.push(r)
    perSession.set(r.session, list)
  }
  for (const [id, recs] of perSession) windows.push(...windowsOf('session', x.sessions[id]?.username ?? String(id), recs, t0, faults))
  const longest: Record<string, { instanceMs: number; sessionMs: number; windows: number }> = {}
  // Every fault kind that ran gets a row, also when it cost nothing.
  for (const f of faults) longest[f.kind] ??= { instanceMs: 0, sessionMs: 0, windows: 0 }
  for (const w of windows) {
    const l = (longest[w.fault] ??= { instanceMs: 0, sessionMs: 0, windows: 0 })
    l.windows++
    if (w.view === 'instance') l.instanceMs = Math.max(l.instanceMs, w.ms)
    else l.sessionMs = Math.max(l.sessionMs, w.ms)
  }
  const top = [...windows]
    .sort((a, b) => b.ms - a.ms)
    .slice(0, 15)
    .map((w) => ({ ...w, from: round(w.from / 1000, 2) }))

  // --- refresh grants
  // A session's token is refreshed every (lifetime - skew) seconds from its
  // login while it is used: a session that lived L seconds needs floor(L / interval).
  const interval = o.accessTokenTtlS - o.refreshSkewS
  const lives = x.sessions.map((s) => Math.max(0, (s.closedAt ?? tEnd) - s.loggedInAt) / 1000)
  const sessionSeconds = lives.reduce((a, b) => a + b, 0)
  const expected = lives.reduce((sum, l) => sum + Math.floor(l / interval), 0)
  const refreshAudits = x.audits.filter((a) => a.event === 'refresh').length
  const refreshFailed: Record<string, number> = {}
  for (const a of x.audits) {
    if (a.event === 'refresh_failed' || a.event === 'refresh_token_rejected' || a.event === 'session_expired') {
      // Error details vary (ports, ids): the first words are the reason's kind.
      inc(refreshFailed, `${a.event}: ${(a.reason ?? '').replace(/\d+/g, 'N').slice(0, 90)}`)
    }
  }
  const auditCounts: Record<string, number> = {}
  for (const a of x.audits) inc(auditCounts, a.event)

  // --- memory: per incarnation, at traffic start (or its own start), after the warm-up, at the end
  const memory: MemoryRow[] = []
  for (const [name, incs] of Object.entries(x.incarnations)) {
    for (const i of incs) {
      const samples = x.memory.filter((m) => m.instance === name && m.incarnation === i.n)
      if (samples.length === 0) continue
      const first = samples.find((m) => m.at >= t0) ?? samples[0]!
      const warm = samples.find((m) => m.at >= t0 + o.warmupS * 1000 && m.at >= i.startedAt + 10_000)
      const last = samples.at(-1)!
      memory.push({
        instance: name,
        incarnation: i.n,
        pid: i.pid,
        livedS: round(((i.endedAt ?? last.at) - i.startedAt) / 1000),
        end: i.end ?? 'running',
        startMiB: round(first.rssKb / 1024),
        afterWarmupMiB: warm ? round(warm.rssKb / 1024) : null,
        endMiB: round(last.rssKb / 1024),
        peakMiB: round(Math.max(...samples.map((m) => m.rssKb)) / 1024),
        growthPct: pct(last.rssKb, first.rssKb),
        growthAfterWarmupPct: warm ? pct(last.rssKb, warm.rssKb) : null,
      })
    }
  }

  const logins = x.records.filter((r) => r.kind === 'login')
  const logouts = x.records.filter((r) => r.kind === 'logout')
  const checks = x.records.filter((r) => r.kind === 'logout_check')
  const unexpectedExits = Object.entries(x.incarnations).flatMap(([name, incs]) =>
    incs
      .filter((i) => i.end === 'exited')
      .map((i) => ({ instance: name, incarnation: i.n, exitCode: i.exitCode, signal: i.signal, stderrTail: i.stderrTail })),
  )

  const problems: string[] = []
  if (x.error) problems.push(`the run failed: ${x.error}`)
  if (lost.length > 0) problems.push(`${lost.length} session(s) lost`)
  if (x.idp.invalidGrants > 0) problems.push(`${x.idp.invalidGrants} invalid_grant at the IdP`)
  if (Object.keys(unexpected).length > 0) problems.push(`unexpected outcomes: ${JSON.stringify(unexpected)}`)
  if (unexpectedExits.length > 0) problems.push(`${unexpectedExits.length} tokenward process(es) exited on their own`)
  const stillAuth = checks.filter((r) => r.outcome === 'still_authenticated_after_logout').length
  if (stillAuth > 0) problems.push(`${stillAuth} session(s) still worked after logout`)
  if (faults.some((f) => f.error)) problems.push('a fault could not be undone')
  if (x.upstream.withoutAuthorization > 0) problems.push(`${x.upstream.withoutAuthorization} upstream request(s) without Authorization`)
  const ratio = expected > 0 ? x.idp.refreshGrants / expected : null
  if (ratio !== null && !x.interrupted && (ratio < 0.75 || ratio > 1.15))
    problems.push(`refresh grants ${x.idp.refreshGrants} are ${round(ratio * 100)}% of the expected ${Math.round(expected)}`)

  return {
    startedAt: new Date(x.startedAt).toISOString(),
    interrupted: x.interrupted,
    settings: { ...o, faults: undefined },
    machine: x.machine,
    faults: faults.map((f) => ({
      kind: f.kind,
      at: round((f.start - t0) / 1000),
      holdMs: f.holdMs,
      recoveredAfterMs: f.end === undefined ? null : f.end - f.start,
      detail: f.detail,
      ...(f.error ? { error: f.error } : {}),
    })),
    faultCounts: faults.reduce<Record<string, number>>((m, f) => (inc(m, f.kind), m), {}),
    requests: {
      total: x.records.length,
      traffic: traffic.length,
      trafficSeconds: round(trafficSeconds),
      achievedRps: round(traffic.length / trafficSeconds),
      ok: byOutcome.ok ?? 0,
      failed,
      skipped: x.skipped,
      byStatus,
      byOutcome,
      byKind,
      latencyOkMs: { p50: percentile(okLatency, 50), p99: percentile(okLatency, 99), max: okLatency.at(-1) ?? null },
    },
    errors: { byFault, connectionCauses, unexpected, unexpectedExamples },
    errorWindows: { graceMs: GRACE_MS, longestMs: windows.reduce((m, w) => Math.max(m, w.ms), 0), byFault: longest, top },
    logins: {
      attempts: logins.length,
      ok: logins.filter((r) => r.outcome === 'ok').length,
      failed: countBy(
        logins.filter((r) => r.outcome !== 'ok'),
        (r) => `${r.detail?.split(' ')[0] ?? ''} ${r.outcome}`,
      ),
    },
    logouts: {
      attempts: logouts.length,
      ok: logouts.filter((r) => r.outcome === 'ok').length,
      failed: countBy(
        logouts.filter((r) => r.outcome !== 'ok'),
        (r) => r.outcome,
      ),
      verifiedGone: checks.filter((r) => r.outcome === 'ok').length,
      stillAuthenticated: stillAuth,
    },
    sessions: {
      initial: o.sessions,
      loggedIn: x.sessions.length,
      loggedOutByScript: x.sessions.filter((s) => s.state === 'logged_out').length,
      liveAtEnd: x.sessions.filter((s) => s.state === 'active').length,
      lost: lost.length,
      endedByInterruptedRefresh: interrupted.length,
      lostDetails: lost,
      interruptedDetails: interrupted,
    },
    refresh: {
      idpGrants: x.idp.refreshGrants,
      expected: Math.round(expected),
      expectedRule: `sum over sessions of floor(time logged in / (token lifetime ${o.accessTokenTtlS} s - skew ${o.refreshSkewS} s)); ${Math.round(sessionSeconds)} session-seconds`,
      roughExpected: Math.round((o.sessions * trafficSeconds) / o.accessTokenTtlS),
      roughRule: 'sessions x duration / access-token lifetime',
      ratio: ratio === null ? null : round(ratio, 3),
      idpRefreshErrors: x.idp.refreshErrors,
      invalidGrants: x.idp.invalidGrants,
      idpTokenRequests: x.idp.tokenRequests,
      authorizationCodeGrants: x.idp.authorizationCodeGrants,
      revocations: x.idp.revocations,
      tokenwardRefreshAudits: refreshAudits,
      grantedButNotLogged: x.idp.refreshGrants - refreshAudits,
      failures: refreshFailed,
      metricsAtEnd: x.metrics,
    },
    audits: auditCounts,
    memory,
    processes: Object.fromEntries(
      Object.entries(x.incarnations).map(([k, v]) => [
        k,
        v.map((i) => ({
          n: i.n,
          pid: i.pid,
          startedAt: round((i.startedAt - t0) / 1000),
          readyAfterMs: i.readyAt ? i.readyAt - i.startedAt : null,
          end: i.end ?? 'running',
          exitCode: i.exitCode,
          signal: i.signal,
        })),
      ]),
    ),
    unexpectedExits,
    tokenwardLogs: {
      warnings: x.warnings
        .slice(0, 40)
        .map((w) => ({ ...w, firstAt: round((w.firstAt - t0) / 1000), lastAt: round((w.lastAt - t0) / 1000) })),
      unparsable: x.unparsableLogLines,
    },
    upstream: x.upstream,
    verdict: { pass: !x.error && lost.length === 0 && x.idp.invalidGrants === 0, problems },
  }
}

export type SoakReport = ReturnType<typeof analyze>

function countBy<T>(items: readonly T[], key: (t: T) => string): Record<string, number> {
  const m: Record<string, number> = {}
  for (const t of items) inc(m, key(t))
  return m
}

// ---------------------------------------------------------------------------
// The summary printed at the end of a run

function table(head: string[], rows: Array<Array<string | number | null>>): string {
  const body = rows.map((r) => r.map((c) => (c === null ? '-' : String(c))))
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)))
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n')
}

export function summary(r: SoakReport): string {
  const s = r.settings
  const out: string[] = []
  out.push(
    `tokenward soak: ${r.requests.trafficSeconds} s, ${s.sessions} sessions, ${s.rps} req/s target (${r.requests.achievedRps} achieved), access tokens ${s.accessTokenTtlS} s, skew ${s.refreshSkewS} s${r.interrupted ? ' (INTERRUPTED)' : ''}`,
  )
  out.push('')
  out.push(
    table(
      ['faults', 'count', 'longest recovery ms'],
      Object.entries(r.faultCounts).map(([k, n]) => [
        k,
        n,
        Math.max(...r.faults.filter((f) => f.kind === k).map((f) => f.recoveredAfterMs ?? 0)),
      ]),
    ),
  )
  out.push('')
  out.push(
    `requests: ${r.requests.total} total (${r.requests.traffic} traffic, the rest logins, logouts and checks); ${r.requests.ok} ok, ${r.requests.failed} failed; skipped ${r.requests.skipped.inflightCap + r.requests.skipped.noSession}`,
  )
  out.push(`ok latency: p50 ${r.requests.latencyOkMs.p50} ms, p99 ${r.requests.latencyOkMs.p99} ms, max ${r.requests.latencyOkMs.max} ms`)
  out.push('')
  out.push(
    table(
      ['status', 'responses'],
      Object.entries(r.requests.byStatus).sort((a, b) => b[1] - a[1]),
    ),
  )
  out.push('')
  const faultCols = Object.keys(r.errors.byFault).sort()
  const codes = [...new Set(Object.values(r.errors.byFault).flatMap((m) => Object.keys(m)))].sort()
  if (codes.length > 0) {
    out.push(
      table(
        ['error code', 'total', ...faultCols],
        codes.map((c) => [c, r.requests.byOutcome[c] ?? 0, ...faultCols.map((f) => r.errors.byFault[f]?.[c] ?? 0)]),
      ),
    )
    out.push('')
  }
  out.push(
    table(
      ['longest error window', 'per instance ms', 'per session ms', 'windows'],
      Object.entries(r.errorWindows.byFault).map(([k, v]) => [k, v.instanceMs, v.sessionMs, v.windows]),
    ),
  )
  out.push('')
  out.push(
    table(
      ['sessions', ''],
      [
        ['logged in (initial + replacements)', r.sessions.loggedIn],
        ['logged out by the script', r.sessions.loggedOutByScript],
        ['live at the end (final check passed)', r.sessions.liveAtEnd],
        ['LOST (must be 0)', r.sessions.lost],
        ['ended by interrupted refresh', r.sessions.endedByInterruptedRefresh],
        ['logins ok / attempts', `${r.logins.ok} / ${r.logins.attempts}`],
        ['logouts ok / attempts', `${r.logouts.ok} / ${r.logouts.attempts}`],
      ],
    ),
  )
  out.push('')
  out.push(
    table(
      ['refresh', ''],
      [
        ['refresh grants at the IdP', r.refresh.idpGrants],
        ['expected', `${r.refresh.expected} (ratio ${r.refresh.ratio})`],
        ['rough (sessions x duration / lifetime)', r.refresh.roughExpected],
        ['invalid_grant at the IdP (must be 0)', r.refresh.invalidGrants],
        ['refresh errors at the IdP', r.refresh.idpRefreshErrors],
        ['granted but not logged as refresh', r.refresh.grantedButNotLogged],
      ],
    ),
  )
  out.push('')
  out.push(
    table(
      ['memory', 'pid', 'lived s', 'start MiB', 'after warm-up', 'end MiB', 'growth %', 'after warm-up %'],
      r.memory.map((m) => [
        `${m.instance}#${m.incarnation} (${m.end})`,
        m.pid,
        m.livedS,
        m.startMiB,
        m.afterWarmupMiB,
        m.endMiB,
        m.growthPct,
        m.growthAfterWarmupPct,
      ]),
    ),
  )
  out.push('')
  if (r.sessions.interruptedDetails.length > 0) out.push(`ended by interrupted refresh: ${JSON.stringify(r.sessions.interruptedDetails)}`)
  if (r.sessions.lostDetails.length > 0) out.push(`LOST: ${JSON.stringify(r.sessions.lostDetails)}`)
  out.push(r.verdict.pass ? 'PASS: no session lost, no invalid_grant' : 'FAIL')
  for (const p of r.verdict.problems) out.push(`problem: ${p}`)
  return out.join('\n')
}
