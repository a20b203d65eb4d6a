// test/integration/proxy.test.ts again, with OpenTelemetry tracing on (test/setup/tracing.ts).
import '../../setup/tracing.js'
import '../proxy.test.js'
