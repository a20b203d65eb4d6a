// test/integration/route-policy.test.ts again, with OpenTelemetry tracing on (test/setup/tracing.ts).
import '../../setup/tracing.js'
import '../route-policy.test.js'
