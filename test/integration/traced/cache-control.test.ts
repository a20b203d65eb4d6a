// test/integration/cache-control.test.ts again, with OpenTelemetry tracing on (test/setup/tracing.ts).
import '../../setup/tracing.js'
import '../cache-control.test.js'
