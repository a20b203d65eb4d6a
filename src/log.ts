// pino: fast structured JSON logging with path-based redaction, so the rule "no token,
// cookie or secret in a log line" is enforced in one place rather than at every call.
import { isSpanContextValid, trace } from '@opentelemetry/api'
import { pino, type Logger, type DestinationStream } from 'pino'

export type { Logger }

export type AuditEvent =
  | 'login'
  | 'refresh'
  | 'refresh_failed'
  | 'refresh_token_rejected'
  | 'logout'
  | 'backchannel_logout'
  | 'frontchannel_logout'
  | 'session_expired'
  | 'session_revoked'
  | 'csrf_rejected'
  | 'client_certificate_reload'
  | 'dbsc_registered'
  | 'dbsc_proof_rejected'
  | 'dbsc_cookie_refused'

/** Field names that must never reach a log line, wherever they appear. */
const REDACT = [
  'access_token',
  'refresh_token',
  'id_token',
  'accessToken',
  'refreshToken',
  'idToken',
  'token',
  'logout_token',
  'code_verifier',
  'client_secret',
  'password',
  'cookie',
  'authorization',
  'set-cookie',
]

export interface TraceIds {
  trace_id: string
  span_id: string
}

/**
 * The active OpenTelemetry span's ids (W3C Trace Context §3.2 trace-id and
 * parent-id, lower-case hex), or undefined outside a span. Without an SDK
 * registered (tracing off) there is never an active span, and this costs one
 * context lookup.
 */
export function traceIds(): TraceIds | undefined {
  const span = trace.getActiveSpan()
  if (span === undefined) return undefined
  const ctx = span.spanContext()
  return isSpanContextValid(ctx) ? { trace_id: ctx.traceId, span_id: ctx.spanId } : undefined
}

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const paths = REDACT.flatMap((k) => [k, `*.${k}`, `*.*.${k}`, `headers["${k}"]`])
  return pino(
    {
      level,
      base: { service: 'tokenward' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
      // Every line written inside a span names it, so logs and traces join up.
      mixin: () => traceIds() ?? {},
    },
    destination,
  )
}

/**
 * A child logger created on first use. Most requests log nothing, and pino's
 * child() runs the redaction over its bindings, which showed up in profiles of
 * the proxy path.
 */
export function lazyChild(parent: Logger, bindings: Record<string, unknown>): Logger {
  let child: Logger | undefined
  return new Proxy({} as Logger, {
    get(_target, prop) {
      child ??= parent.child(bindings)
      const value: unknown = Reflect.get(child, prop, child)
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(child) : value
    },
  })
}

export interface AuditFields {
  sub?: string | undefined
  /** tokenward's non-secret session reference. */
  sid?: string | undefined
  ip?: string | undefined
  userAgent?: string | undefined
  outcome: 'success' | 'failure'
  reason?: string | undefined
  [key: string]: unknown
}

/** One JSON line per security-relevant event, tagged `"audit": true` (docs/operations.md, audit events). */
export function audit(logger: Logger, event: AuditEvent, fields: AuditFields): void {
  logger.info({ audit: true, event, ...fields }, `audit ${event}`)
}
