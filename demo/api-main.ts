// The demo API (demo/api.ts) as a process of its own, configured from the
// environment, for docker-compose.yml. `npm run demo` runs the same API
// in-process instead.
//
//   DEMO_API_PORT      5000
//   DEMO_API_HOST      127.0.0.1 (only tokenward calls it; the browser goes through tokenward)
//   DEMO_IDP_ISSUER    http://localhost:4000 (the dev IdP; its discovery gives the JWKS)
//   DEMO_API_AUDIENCE  http://localhost:<port> (must equal the dev IdP's DEMO_API_AUDIENCE)

import { startDemoApi } from './api.js'
import type { DemoApi } from './api.js'

const env = process.env

async function main(): Promise<DemoApi> {
  const raw = env.DEMO_API_PORT || '5000'
  if (!/^\d+$/.test(raw) || Number(raw) > 65535) throw new Error('DEMO_API_PORT must be a port number')
  const port = Number(raw)
  // Compared as strings against the token's iss and aud: no trailing slash.
  const issuer = (env.DEMO_IDP_ISSUER || 'http://localhost:4000').replace(/\/+$/, '')
  const audience = (env.DEMO_API_AUDIENCE || `http://localhost:${port}`).replace(/\/+$/, '')
  const api = await startDemoApi({ port, host: env.DEMO_API_HOST || '127.0.0.1', issuer, audience })
  console.log(`demo API: listening on port ${api.port}, accepting access tokens from ${issuer} for ${audience}`)
  return api
}

main().then(
  (api) => {
    const stop = (): void => {
      setTimeout(() => process.exit(0), 3000).unref()
      api.close().then(
        () => process.exit(0),
        () => process.exit(1),
      )
    }
    process.once('SIGTERM', stop)
    process.once('SIGINT', stop)
  },
  (err: unknown) => {
    console.error('demo API could not start:', err instanceof Error ? err.message : err)
    process.exit(1)
  },
)
