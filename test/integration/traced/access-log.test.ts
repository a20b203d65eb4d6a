// test/integration/access-log.test.ts again, with OpenTelemetry tracing on (test/setup/tracing.ts).
import '../../setup/tracing.js'
import '../access-log.test.js'
