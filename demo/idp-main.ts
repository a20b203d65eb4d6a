// The dev IdP (demo/idp.ts) as a process of its own, configured from the
// environment, for docker-compose.yml. `npm run demo` runs the same IdP
// in-process instead. Development only: any username logs in with one shared
// password, and every key, session and token lives in memory.
//
//   DEMO_IDP_PORT              4000
//   DEMO_IDP_HOST              127.0.0.1 (0.0.0.0 in a container, so a published port reaches it)
//   DEMO_IDP_ISSUER            http://localhost:<port>; the browser, tokenward and the API must all reach it by this URL
//   DEMO_IDP_PASSWORD          demo
//   DEMO_API_AUDIENCE          http://localhost:5000 (access tokens are JWTs for this audience)
//   DEMO_PUBLIC_URL            http://localhost:3000 (tokenward's BFF_PUBLIC_URL: gives the client's redirect URIs)
//   DEMO_POST_LOGOUT_REDIRECT  <DEMO_PUBLIC_URL>/ (tokenward's BFF_POST_LOGOUT_REDIRECT)
//   DEMO_CLIENT_ID             tokenward-demo
//   DEMO_CLIENT_SECRET         required: the same value as tokenward's BFF_CLIENT_SECRET
//   DEMO_IDP_CLIENTS           optional JSON array of oidc-provider client metadata, replacing the one client above

import type { ClientMetadata } from 'oidc-provider'
import { startDevIdp } from './idp.js'
import type { DevIdp } from './idp.js'

const env = process.env

function port(name: string, fallback: number): number {
  const raw = env[name]
  if (raw === undefined || raw === '') return fallback
  if (!/^\d+$/.test(raw) || Number(raw) > 65535) throw new Error(`${name} must be a port number`)
  return Number(raw)
}

function origin(name: string, fallback: string): string {
  const raw = env[name] || fallback
  if (!URL.canParse(raw)) throw new Error(`${name} must be an absolute URL`)
  // Issuers and redirect URIs are compared as strings: no trailing slash.
  return raw.replace(/\/+$/, '')
}

function clients(): ClientMetadata[] {
  if (env.DEMO_IDP_CLIENTS) {
    const parsed: unknown = JSON.parse(env.DEMO_IDP_CLIENTS)
    if (!Array.isArray(parsed)) throw new Error('DEMO_IDP_CLIENTS must be a JSON array of client metadata')
    return parsed as ClientMetadata[]
  }
  // No default: a client secret checked into a compose file would be a real
  // secret for anyone who reuses that file.
  const secret = env.DEMO_CLIENT_SECRET
  if (!secret) throw new Error("DEMO_CLIENT_SECRET is required (the same value as tokenward's BFF_CLIENT_SECRET)")
  const publicUrl = origin('DEMO_PUBLIC_URL', 'http://localhost:3000')
  return [
    {
      client_id: env.DEMO_CLIENT_ID || 'tokenward-demo',
      client_secret: secret,
      redirect_uris: [`${publicUrl}/auth/callback`],
      post_logout_redirect_uris: [env.DEMO_POST_LOGOUT_REDIRECT || `${publicUrl}/`],
      backchannel_logout_uri: `${publicUrl}/auth/backchannel-logout`,
    },
  ]
}

async function main(): Promise<DevIdp> {
  const idpPort = port('DEMO_IDP_PORT', 4000)
  const idp = await startDevIdp({
    port: idpPort,
    host: env.DEMO_IDP_HOST || '127.0.0.1',
    issuer: origin('DEMO_IDP_ISSUER', `http://localhost:${idpPort}`),
    resource: origin('DEMO_API_AUDIENCE', 'http://localhost:5000'),
    password: env.DEMO_IDP_PASSWORD || 'demo',
    clients: clients(),
  })
  console.log(`dev IdP: issuer ${idp.issuer}, listening on port ${idp.port} (development only: any username, one shared password)`)
  return idp
}

main().then(
  (idp) => {
    const stop = (): void => {
      // Never hang on the way out: a container runtime would SIGKILL us anyway.
      setTimeout(() => process.exit(0), 3000).unref()
      idp.close().then(
        () => process.exit(0),
        () => process.exit(1),
      )
    }
    process.once('SIGTERM', stop)
    process.once('SIGINT', stop)
  },
  (err: unknown) => {
    console.error('dev IdP could not start:', err instanceof Error ? err.message : err)
    process.exit(1)
  },
)
