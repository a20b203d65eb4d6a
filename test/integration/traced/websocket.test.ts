// test/integration/websocket.test.ts again, with OpenTelemetry tracing on (test/setup/tracing.ts).
import '../../setup/tracing.js'
import '../websocket.test.js'
