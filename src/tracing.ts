// @opentelemetry/api: the vendor-neutral tracing API. Without an SDK registered
// its calls are no-ops, and tokenward skips them entirely on the hot path.
import { context, propagation, SpanKind, SpanStatusCode, trace, type Attributes, type Span } from '@opentelemetry/api'
import type { SpanProcessor } from '@opentelemetry/sdk-trace-base'
import type { Logger } from './log.js'

export const tracer = trace.getTracer('tokenward')

let enabled = false

/** Whether an OpenTelemetry SDK was started by initTracing. */
export function tracingEnabled(): boolean {
  return enabled
}

/**
 * Starts the OpenTelemetry SDK with an OTLP/HTTP trace exporter when
 * OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set; the exporter reads
 * the standard OTEL_* variables. Nothing is loaded otherwise: the SDK modules are
 * imported on demand. Returns a shutdown function that flushes pending spans.
 */
export async function initTracing(env: NodeJS.ProcessEnv, logger: Logger): Promise<(() => Promise<void>) | undefined> {
  if (!env.OTEL_EXPORTER_OTLP_ENDPOINT && !env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) return undefined
  if (env.OTEL_SDK_DISABLED === 'true') return undefined
  const [{ BatchSpanProcessor }, { OTLPTraceExporter }] = await Promise.all([
    import('@opentelemetry/sdk-trace-base'),
    import('@opentelemetry/exporter-trace-otlp-http'),
  ])
  const shutdown = await startTracing(new BatchSpanProcessor(new OTLPTraceExporter()), env.OTEL_SERVICE_NAME ?? 'tokenward')
  logger.info({ endpoint: env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT }, 'OpenTelemetry tracing enabled')
  return shutdown
}

/**
 * Registers an OpenTelemetry SDK that hands finished spans to `processor`
 * (initTracing's OTLP exporter, or a test's in-memory one) with W3C trace
 * context propagation, and turns tracing on. Returns the function that turns
 * it off and flushes pending spans.
 */
export async function startTracing(processor: SpanProcessor, serviceName = 'tokenward'): Promise<() => Promise<void>> {
  const [{ NodeTracerProvider }, { resourceFromAttributes }, { W3CTraceContextPropagator }] = await Promise.all([
    import('@opentelemetry/sdk-trace-node'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/core'),
  ])
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ 'service.name': serviceName }),
    spanProcessors: [processor],
  })
  provider.register({ propagator: new W3CTraceContextPropagator() })
  enabled = true
  return async () => {
    enabled = false
    await provider.shutdown()
  }
}

/** Runs `fn` in a span when tracing is on; otherwise just runs it. */
export async function traced<T>(
  name: string,
  attributes: Attributes,
  fn: (span: Span | undefined) => Promise<T>,
  kind = SpanKind.INTERNAL,
): Promise<T> {
  if (!enabled) return fn(undefined)
  return tracer.startActiveSpan(name, { kind, attributes }, async (span) => {
    try {
      return await fn(span)
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).name })
      throw err
    } finally {
      span.end()
    }
  })
}

/**
 * The server span of one request (request id `requestId`, path or route
 * `target`), child of the caller's `traceparent` (from the browser or a proxy
 * in front) when there is one. `done` names the route and the status once `fn`
 * has answered. Only when tracing is on: callers skip it otherwise.
 */
export function serverSpan<T>(
  headers: Record<string, string | string[] | undefined>,
  method: string,
  target: string,
  requestId: string,
  fn: () => Promise<T>,
  done: () => { route: string; status: number },
): Promise<T> {
  return context.with(propagation.extract(context.active(), headers), () =>
    traced(
      `${method} ${target}`,
      { 'http.request.method': method, 'tokenward.request_id': requestId },
      async (span) => {
        const result = await fn()
        const { route, status } = done()
        span?.updateName(`${method} ${route}`)
        span?.setAttribute('http.route', route)
        span?.setAttribute('http.response.status_code', status)
        return result
      },
      SpanKind.SERVER,
    ),
  )
}

/** W3C `traceparent`/`tracestate` for an outgoing request, from the active span. */
export function traceHeaders(): Record<string, string> {
  const carrier: Record<string, string> = {}
  propagation.inject(context.active(), carrier)
  return carrier
}

export { SpanKind }
