// Imported first by the files under test/integration/traced/: the test file
// they import then runs against tokenward with OpenTelemetry tracing on, the
// way production runs with OTEL_EXPORTER_OTLP_ENDPOINT set, with spans kept in
// memory instead of exported.
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { SpanKind } from '@opentelemetry/api'
import { afterAll, expect } from 'vitest'
import { ENDPOINTS } from '../../src/protocol.js'
import { startTracing } from '../../src/tracing.js'

const exporter = new InMemorySpanExporter()
const stop = await startTracing(new SimpleSpanProcessor(exporter))

afterAll(async () => {
  const spans = exporter.getFinishedSpans()
  await stop()
  // The run went through the traced path: proxied requests got server spans
  // from the proxy entry, and every upstream call's span is a child of one.
  const servers = spans.filter((s) => s.kind === SpanKind.SERVER)
  const proxied = servers.filter((s) => {
    const route = String(s.attributes['http.route'])
    return route !== 'other' && !ENDPOINTS.has(route)
  })
  expect(proxied.length).toBeGreaterThan(0)
  const serverIds = new Set(servers.map((s) => s.spanContext().spanId))
  for (const upstream of spans.filter((s) => s.kind === SpanKind.CLIENT && s.name.startsWith('upstream '))) {
    expect(serverIds.has(upstream.parentSpanContext?.spanId ?? '')).toBe(true)
  }
})
