import { randomBytes, randomUUID } from 'node:crypto'
import * as oidc from 'openid-client'
import type { Config } from '../config.js'
import { createDeps } from '../deps.js'
import { createLogger } from '../log.js'
import { describe } from '../oidc/idp-errors.js'
import type { OidcClient } from '../oidc/client.js'
import { networkCause, probeHttp, probeTcp } from './probe.js'
import type { ClientTls } from '../tls/client-tls.js'

type Out = (line: string) => void
type Status = 'ok' | 'warn' | 'fail'

export interface Check {
  name: string
  status: Status
  detail: string
}

export interface DoctorOptions {
  /** One JSON object instead of a line per check. */
  json?: boolean
}

const okOr = (cond: boolean, otherwise: Status): Status => (cond ? 'ok' : otherwise)

/** Redis's address(es) as the operator wrote them, without credentials. */
function redisTargets(config: Config): Array<{ host: string; port: number }> {
  if (config.redis.mode !== 'standalone') return [...config.redis.nodes]
  const u = new URL(config.redis.url)
  return [{ host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port || 6379) }]
}

async function checkRedis(config: Config, deps: ReturnType<typeof createDeps>): Promise<Check> {
  const where = redisTargets(config)
    .map((t) => `${t.host}:${t.port}`)
    .join(', ')
  const started = Date.now()
  try {
    const id = `doctor-${randomUUID()}`
    await deps.store.transactions.put(id, Buffer.from('ok'), 10_000)
    const back = await deps.store.transactions.take(id)
    return {
      name: 'redis',
      status: okOr(back?.toString() === 'ok', 'fail'),
      detail: `write, read and delete in ${Date.now() - started} ms (${config.redis.mode}, ${where})`,
    }
  } catch (err) {
    // The store's own error is deliberately generic (it reaches HTTP clients);
    // a plain TCP connection tells the operator whether the address is wrong
    // or Redis itself refused (authentication, TLS, cluster state).
    const causes = await Promise.all(redisTargets(config).map(async (t) => ({ t, cause: await probeTcp(t.host, t.port) })))
    const unreachable = causes.filter((c) => c.cause !== undefined).map((c) => `cannot connect to ${c.t.host}:${c.t.port}: ${c.cause}`)
    const inner = err instanceof Error && err.cause !== undefined ? networkCause(err.cause) : networkCause(err)
    return {
      name: 'redis',
      status: 'fail',
      detail: `${where} (${config.redis.mode}): ${unreachable.length > 0 ? unreachable.join('; ') : `connected, but ${inner}`}`,
    }
  }
}

/**
 * Proves the client credentials with a token request that must fail as a grant:
 * an authorization_code grant with a random code. The IdP authenticates the
 * client before it looks at the code (RFC 6749 §3.2.1, §4.1.3), so
 * `invalid_grant` means the credentials were accepted and `invalid_client`
 * (RFC 6749 §5.2, usually HTTP 401) means they were not.
 */
async function checkClientAuth(config: Config, client: OidcClient): Promise<Check> {
  const name = 'client authentication'
  try {
    const configuration = await client.configuration()
    await oidc.genericGrantRequest(configuration, 'authorization_code', {
      code: `tokenward-doctor-${randomBytes(16).toString('base64url')}`,
      redirect_uri: config.redirectUri,
      code_verifier: randomBytes(32).toString('base64url'),
    })
    return { name, status: 'warn', detail: `${config.clientAuth}: the IdP accepted a made-up authorization code` }
  } catch (err) {
    const { error, status } = await grantError(err)
    // With a certificate, openid-client calls the RFC 8705 §5 alias where there is one.
    const m = client.serverMetadata
    const endpoint =
      (config.tls?.certFile ? m?.mtls_endpoint_aliases?.token_endpoint : undefined) ?? m?.token_endpoint ?? 'the token endpoint'
    if (error === 'invalid_client' || status === 401) {
      return {
        name,
        status: 'fail',
        detail: `${config.clientAuth} as ${config.clientId} refused at ${endpoint}: ${typeof error === 'string' ? error : 'HTTP 401'} (check BFF_CLIENT_ID and ${credentialHint(config)})`,
      }
    }
    if (error === 'invalid_grant') {
      return {
        name,
        status: 'ok',
        detail: `${config.clientAuth} as ${config.clientId} accepted at ${endpoint} (a made-up code got invalid_grant)`,
      }
    }
    if (typeof error === 'string') {
      return { name, status: 'warn', detail: `${config.clientAuth}: inconclusive, the IdP answered ${error} (HTTP ${String(status)})` }
    }
    return { name, status: 'fail', detail: `${endpoint}: ${describe(err)}` }
  }
}

/**
 * The OAuth error code and HTTP status of a refused token request: from the
 * JSON body (RFC 6749 §5.2) or, when the IdP answered 401 with a challenge,
 * from the WWW-Authenticate header (RFC 6750 §3) or the body behind it.
 */
async function grantError(err: unknown): Promise<{ error: string | undefined; status: number | undefined }> {
  if (err instanceof oidc.ResponseBodyError) return { error: err.error, status: err.status }
  if (err instanceof oidc.WWWAuthenticateChallengeError) {
    const fromHeader = err.cause.map((c) => c.parameters.error).find((e) => typeof e === 'string')
    const body: unknown = fromHeader ? undefined : await err.response.json().catch(() => undefined)
    const fromBody = body && typeof body === 'object' && 'error' in body && typeof body.error === 'string' ? body.error : undefined
    return { error: fromHeader ?? fromBody, status: err.status }
  }
  return { error: undefined, status: undefined }
}

/** Which variables hold the credentials the IdP refused. */
function credentialHint(config: Config): string {
  switch (config.clientAuth) {
    case 'private_key_jwt':
      return 'BFF_CLIENT_PRIVATE_KEY'
    case 'tls_client_auth':
      return 'BFF_TLS_CLIENT_CERT: its subject must match the registered tls_client_auth_subject_dn or SAN, and its CA be trusted by the IdP'
    case 'self_signed_tls_client_auth':
      return "BFF_TLS_CLIENT_CERT: the IdP's registered jwks must hold this certificate (a JWK with x5c)"
    default:
      return 'BFF_CLIENT_SECRET'
  }
}

/** Days before expiry from which doctor warns about the TLS client certificate. */
export const CERTIFICATE_WARN_DAYS = 14

/** The TLS client certificate (RFC 8705): whose it is, and how long it has left. */
function checkClientCertificate(config: Config, tls: ClientTls | undefined, now = Date.now()): Check[] {
  const pair = tls?.pair
  if (!pair) return []
  const days = (pair.notAfter - now) / 86_400_000
  const shown = `${config.clientAuth}; subject ${pair.certificate.subject.replace(/\n/g, ', ')}, issuer ${pair.certificate.issuer.replace(/\n/g, ', ')}, x5t#S256 ${pair.thumbprint}, expires ${new Date(pair.notAfter).toISOString()}`
  return [
    {
      name: 'client certificate',
      status: days <= 0 ? 'fail' : days < CERTIFICATE_WARN_DAYS ? 'warn' : 'ok',
      detail:
        days < CERTIFICATE_WARN_DAYS
          ? `expires in ${Math.max(0, days).toFixed(1)} days (renew it: the new files are picked up without a restart): ${shown}`
          : shown,
    },
  ]
}

async function checkUpstreams(config: Config, tls: ClientTls | undefined): Promise<Check[]> {
  return Promise.all(
    config.routes.map(async (route) => {
      const transport = tls ? (route.mtls === true ? tls.fetch : tls.fetchWithoutCertificate) : undefined
      const r = await probeHttp(route.upstream, Math.min(route.timeoutMs, 5000), transport)
      const name = `upstream ${route.prefix}`
      return 'error' in r
        ? { name, status: 'fail' as const, detail: `${route.upstream.origin} unreachable: ${r.error}` }
        : { name, status: 'ok' as const, detail: `${route.upstream.origin} answered HTTP ${r.status} in ${r.ms} ms` }
    }),
  )
}

function checkMetrics(config: Config): Check {
  const listen = config.metricsListen
  return listen
    ? { name: 'metrics exposure', status: 'ok', detail: `/metrics on ${listen.host}:${listen.port} only (BFF_METRICS_LISTEN)` }
    : {
        name: 'metrics exposure',
        status: 'warn',
        detail: `/metrics is public on the main listener ${config.host}:${config.port}; set BFF_METRICS_LISTEN to serve it on a private address`,
      }
}

function idpChecks(config: Config, m: oidc.ServerMetadata): Check[] {
  const has = (list: readonly string[] | undefined, v: string) => Boolean(list?.includes(v))
  const advertised = (list: readonly string[] | undefined, v: string): Status => (list ? okOr(has(list, v), 'fail') : 'warn')
  const checks: Check[] = [
    { name: 'idp discovery', status: 'ok', detail: m.issuer },
    {
      name: 'PKCE S256',
      status: okOr(has(m.code_challenge_methods_supported, 'S256'), 'fail'),
      detail: String(m.code_challenge_methods_supported ?? 'not advertised'),
    },
    {
      name: 'refresh_token grant',
      status: advertised(m.grant_types_supported, 'refresh_token'),
      detail: String(m.grant_types_supported ?? 'not advertised'),
    },
  ]
  if (config.routes.some((r) => r.token === 'client')) {
    checks.push({
      name: 'client_credentials grant (client routes)',
      status: advertised(m.grant_types_supported, 'client_credentials'),
      detail: String(m.grant_types_supported ?? 'not advertised'),
    })
  }
  if (config.tls?.certFile) {
    const bound = m.tls_client_certificate_bound_access_tokens === true
    const unbound = config.routes.filter((r) => r.token !== 'none' && r.mtls !== true).map((r) => r.prefix)
    checks.push(
      {
        name: 'certificate-bound tokens (RFC 8705 §3)',
        // Whether this client's tokens are bound is its registration's business; the IdP only says it can.
        status: bound && unbound.length > 0 ? 'warn' : 'ok',
        detail: bound
          ? `the IdP can bind tokens to the certificate${unbound.length > 0 ? `; routes without "mtls": true (${unbound.join(', ')}) fail if it binds this client's` : ''}`
          : 'not advertised',
      },
      {
        name: 'mTLS endpoint aliases (RFC 8705 §5)',
        status: 'ok',
        detail: m.mtls_endpoint_aliases
          ? `used: ${JSON.stringify(m.mtls_endpoint_aliases)}`
          : 'none advertised: the certificate goes to the regular endpoints',
      },
    )
  }
  checks.push(
    { name: 'refresh token rotation', status: 'warn', detail: 'not discoverable; tokenward handles both rotating and non-rotating IdPs' },
    {
      name: 'client authentication method',
      status: advertised(m.token_endpoint_auth_methods_supported, config.clientAuth),
      detail: `${config.clientAuth}; IdP: ${String(m.token_endpoint_auth_methods_supported ?? 'not advertised')}`,
    },
    {
      name: 'revocation (RFC 7009)',
      status: okOr(Boolean(m.revocation_endpoint), 'warn'),
      detail: m.revocation_endpoint ?? 'no revocation_endpoint: logout cannot revoke refresh tokens',
    },
    {
      name: 'end session',
      status: okOr(Boolean(m.end_session_endpoint), 'warn'),
      detail: m.end_session_endpoint ?? 'no end_session_endpoint: logout ends only the local session',
    },
    {
      name: 'back-channel logout',
      status: okOr(Boolean(m.backchannel_logout_supported), 'warn'),
      detail: m.backchannel_logout_supported
        ? `supported (session: ${String(m.backchannel_logout_session_supported ?? false)})`
        : 'not advertised',
    },
    {
      name: 'iss in authorization response (RFC 9207)',
      status: okOr(Boolean(m.authorization_response_iss_parameter_supported), 'warn'),
      detail: m.authorization_response_iss_parameter_supported ? 'supported' : 'not advertised: mix-up defence relies on state alone',
    },
    {
      name: 'DPoP (RFC 9449)',
      status: okOr(Boolean(m.dpop_signing_alg_values_supported), 'warn'),
      detail: String(m.dpop_signing_alg_values_supported ?? 'not advertised'),
    },
    {
      name: 'PAR (RFC 9126)',
      status: okOr(Boolean(m.pushed_authorization_request_endpoint), 'warn'),
      detail: m.pushed_authorization_request_endpoint ?? 'not advertised',
    },
  )
  return checks
}

/**
 * `tokenward doctor`: proves what the configuration claims against the real
 * services (Redis, the IdP and client authentication, each route's upstream)
 * and reports what the IdP supports. Exit 1 when any check fails.
 */
export async function doctor(config: Config, out: Out, opts: DoctorOptions = {}): Promise<number> {
  const checks: Check[] = [{ name: 'configuration', status: 'ok', detail: `${config.routes.length} route(s)` }]
  for (const w of config.warnings) checks.push({ name: 'configuration', status: 'warn', detail: w })
  const deps = createDeps(config, { logger: createLogger('silent'), store: 'redis' })
  try {
    checks.push(...checkClientCertificate(config, deps.tls))
    const upstreams = checkUpstreams(config, deps.tls)
    checks.push(await checkRedis(config, deps))
    try {
      checks.push(...idpChecks(config, (await deps.oidc.configuration()).serverMetadata()))
      checks.push(await checkClientAuth(config, deps.oidc))
    } catch (err) {
      checks.push({ name: 'idp discovery', status: 'fail', detail: deps.oidc.lastError ?? describe(err) })
    }
    checks.push(...(await upstreams))
    checks.push(checkMetrics(config))
  } finally {
    await deps.tls?.close()
    await deps.store.close()
  }
  const failed = checks.some((c) => c.status === 'fail')
  if (opts.json) out(JSON.stringify({ ok: !failed, checks }))
  else for (const c of checks) out(`${c.status === 'fail' ? 'FAIL' : c.status === 'ok' ? 'ok  ' : 'warn'}  ${c.name}: ${c.detail}`)
  return failed ? 1 : 0
}
