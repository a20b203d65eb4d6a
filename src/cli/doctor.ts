import { randomBytes, randomUUID } from 'node:crypto'
import * as oidc from 'openid-client'
import type { Config } from '../config.js'
import type { FrontendSet } from '../config-file.js'
import { createDeps } from '../deps.js'
import { createLogger } from '../log.js'
import { classifyIdpError, describe } from '../oidc/idp-errors.js'
import type { OidcClient } from '../oidc/client.js'
import { networkCause, probeHttp, probeTcp } from './probe.js'
import type { ClientTls } from '../tls/client-tls.js'

type Out = (line: string) => void

/**
 * pass: proven to work, or advertised by the IdP where nothing without a user
 * could prove it; warn: not advertised or not provable, with the consequence
 * for the operator in `detail`; fail: proven broken. Only a fail exits non-zero.
 */
export type Status = 'pass' | 'warn' | 'fail'

/**
 * proven: doctor established it itself, by a request (Redis, the token and
 * revocation endpoints, the upstreams) or by reading the configuration;
 * advertised: taken from the IdP's discovery document (RFC 8414, OpenID
 * Connect Discovery 1.0), which may say less, or more, than the IdP does.
 */
export type Basis = 'proven' | 'advertised'

export interface Check {
  name: string
  status: Status
  basis: Basis
  detail: string
}

export interface DoctorOptions {
  /** One JSON object instead of a line per check. */
  json?: boolean
}

const passOr = (cond: boolean, otherwise: Status): Status => (cond ? 'pass' : otherwise)

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
      status: passOr(back?.toString() === 'ok', 'fail'),
      basis: 'proven',
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
      basis: 'proven',
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
  const basis = 'proven'
  try {
    const configuration = await client.configuration()
    await oidc.genericGrantRequest(configuration, 'authorization_code', {
      code: `tokenward-doctor-${randomBytes(16).toString('base64url')}`,
      redirect_uri: config.redirectUri,
      code_verifier: randomBytes(32).toString('base64url'),
    })
    return { name, status: 'warn', basis, detail: `${config.clientAuth}: the IdP accepted a made-up authorization code` }
  } catch (err) {
    const { error, status } = await grantError(err)
    // With a certificate, openid-client calls the RFC 8705 §5 alias where there is one.
    const m = client.serverMetadata
    const endpoint =
      (config.tls?.certFile ? m?.mtls_endpoint_aliases?.token_endpoint : undefined) ?? m?.token_endpoint ?? 'the token endpoint'
    if (error === 'invalid_client' || status === 401) {
      const check = `check BFF_CLIENT_ID and ${credentialHint(config)}`
      // RFC 6749 §2.3.1 form-encodes the client id and secret inside HTTP Basic;
      // some IdPs (LemonLDAP::NG 2.16) do not decode them, so an id or secret
      // with characters such as `-` is refused there and accepted in the body.
      const encoded = /[^A-Za-z0-9*._]/.test(`${config.clientId}${config.clientSecret ?? ''}`)
      const hint =
        config.clientAuth === 'client_secret_basic' && encoded
          ? `${check}; the IdP may not decode the form-encoded id or secret in HTTP Basic (RFC 6749 §2.3.1): try BFF_CLIENT_AUTH=client_secret_post`
          : check
      return {
        name,
        status: 'fail',
        basis,
        detail: `${config.clientAuth} as ${config.clientId} refused at ${endpoint}: ${typeof error === 'string' ? error : 'HTTP 401'} (${hint})`,
      }
    }
    if (error === 'invalid_grant') {
      return {
        name,
        status: 'pass',
        basis,
        detail: `${config.clientAuth} as ${config.clientId} accepted at ${endpoint} (a made-up code got invalid_grant)`,
      }
    }
    if (typeof error === 'string') {
      return {
        name,
        status: 'warn',
        basis,
        detail: `${config.clientAuth}: inconclusive, the IdP answered ${error} (HTTP ${String(status)})`,
      }
    }
    return { name, status: 'fail', basis, detail: `${endpoint}: ${describe(err)}` }
  }
}

/**
 * Proves the revocation endpoint (RFC 7009) with a made-up refresh token,
 * authenticated as tokenward authenticates at logout. §2.2: an invalid token
 * is answered 200, so 200 means the endpoint answers and accepts the client;
 * `invalid_client` (§2.2.1 refers to RFC 6749 §5.2) means logout's
 * revocations will be refused.
 */
async function checkRevocation(client: OidcClient, m: oidc.ServerMetadata): Promise<Check> {
  const name = 'revocation (RFC 7009)'
  if (!m.revocation_endpoint) {
    return {
      name,
      status: 'warn',
      basis: 'advertised',
      detail:
        'no revocation_endpoint: refresh tokens outlive logout (they stay valid at the IdP until they expire); drop offline_access from BFF_SCOPES if the IdP binds refresh tokens to its session',
    }
  }
  const endpoint = m.revocation_endpoint
  try {
    await client.revokeRefreshToken(`tokenward-doctor-${randomBytes(16).toString('base64url')}`)
    return {
      name,
      status: 'pass',
      basis: 'proven',
      detail: `${endpoint} accepted the client and answered a made-up token with 200 (RFC 7009 §2.2)`,
    }
  } catch (err) {
    const { error, status } = await grantError(err)
    if (error === 'invalid_client' || status === 401) {
      return {
        name,
        status: 'fail',
        basis: 'proven',
        detail: `${endpoint} refused the client (${typeof error === 'string' ? error : 'HTTP 401'}): logout cannot revoke refresh tokens; check the client's authentication at the revocation endpoint`,
      }
    }
    if (error === 'unsupported_token_type') {
      return {
        name,
        status: 'warn',
        basis: 'proven',
        detail: `${endpoint} answered unsupported_token_type: the IdP does not revoke refresh tokens, so they outlive logout`,
      }
    }
    if (classifyIdpError(err) === 'unavailable') {
      return {
        name,
        status: 'fail',
        basis: 'proven',
        detail: `${endpoint} does not answer (${describe(err)}): logout cannot revoke refresh tokens`,
      }
    }
    return {
      name,
      status: 'warn',
      basis: 'proven',
      detail: `${endpoint}: inconclusive, ${typeof error === 'string' ? `the IdP answered ${error} (HTTP ${String(status)})` : describe(err)}`,
    }
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
      status: days <= 0 ? 'fail' : days < CERTIFICATE_WARN_DAYS ? 'warn' : 'pass',
      basis: 'proven',
      detail:
        days < CERTIFICATE_WARN_DAYS
          ? `expires in ${Math.max(0, days).toFixed(1)} days (renew it: the new files are picked up without a restart): ${shown}`
          : shown,
    },
  ]
}

async function checkUpstreams(config: Config, tls: ClientTls | undefined): Promise<Check[]> {
  return Promise.all(
    config.routes.map(async (route): Promise<Check> => {
      const transport = tls ? (route.mtls === true ? tls.fetch : tls.fetchWithoutCertificate) : undefined
      const r = await probeHttp(route.upstream, Math.min(route.timeoutMs, 5000), transport)
      const name = `upstream ${route.prefix}`
      return 'error' in r
        ? { name, status: 'fail', basis: 'proven', detail: `${route.upstream.origin} unreachable: ${r.error}` }
        : { name, status: 'pass', basis: 'proven', detail: `${route.upstream.origin} answered HTTP ${r.status} in ${r.ms} ms` }
    }),
  )
}

function checkMetrics(config: Config): Check {
  const listen = config.metricsListen
  return listen
    ? {
        name: 'metrics exposure',
        status: 'pass',
        basis: 'proven',
        detail: `/metrics on ${listen.host}:${listen.port} only (BFF_METRICS_LISTEN)`,
      }
    : {
        name: 'metrics exposure',
        status: 'warn',
        basis: 'proven',
        detail: `/metrics is public on the main listener ${config.host}:${config.port}; set BFF_METRICS_LISTEN to serve it on a private address`,
      }
}

/**
 * What only the discovery document says. An IdP may support more than it
 * advertises (Glewlwyd refreshes without listing refresh_token in
 * grant_types_supported), so what is not advertised is a warning that says
 * what it costs, never a failure; a failure is what cannot work: an
 * advertised list that leaves out what tokenward must use.
 */
function idpChecks(config: Config, m: oidc.ServerMetadata): Check[] {
  const has = (list: readonly string[] | undefined, v: string) => Boolean(list?.includes(v))
  const basis = 'advertised'
  const listed = (list: readonly string[] | undefined) => (list ? list.join(', ') : 'not advertised')
  const grants = m.grant_types_supported
  const checks: Check[] = [{ name: 'idp discovery', status: 'pass', basis: 'proven', detail: m.issuer }]

  // tokenward always sends S256 (RFC 9700 §2.1.1). A list without it means the
  // IdP rejects or ignores the challenge: login cannot be trusted to work.
  const pkce = m.code_challenge_methods_supported
  checks.push({
    name: 'PKCE S256',
    status: pkce ? passOr(has(pkce, 'S256'), 'fail') : 'warn',
    basis,
    detail: pkce
      ? has(pkce, 'S256')
        ? listed(pkce)
        : `${listed(pkce)}: S256 is not among them, and tokenward sends only S256`
      : 'code_challenge_methods_supported not advertised: tokenward sends S256 anyway; if the IdP ignores it, authorization codes are protected by client authentication alone',
  })

  checks.push({
    name: 'refresh_token grant',
    status: passOr(has(grants, 'refresh_token'), 'warn'),
    basis,
    detail: has(grants, 'refresh_token')
      ? listed(grants)
      : `refresh_token not in grant_types_supported (${listed(grants)}): not advertised; refresh is proven only once a refresh token is issued; if the IdP issues none, sessions end when the first access token expires`,
  })
  if (config.routes.some((r) => r.token === 'client')) {
    checks.push({
      name: 'client_credentials grant (client routes)',
      status: passOr(has(grants, 'client_credentials'), 'warn'),
      basis,
      detail: has(grants, 'client_credentials')
        ? listed(grants)
        : `client_credentials not in grant_types_supported (${listed(grants)}): not advertised; client routes get 503 if the IdP refuses it, proven only at the first call to one`,
    })
  }
  if (config.tls?.certFile) {
    const bound = m.tls_client_certificate_bound_access_tokens === true
    const unbound = config.routes.filter((r) => r.token !== 'none' && r.mtls !== true).map((r) => r.prefix)
    checks.push(
      {
        name: 'certificate-bound tokens (RFC 8705 §3)',
        // Whether this client's tokens are bound is its registration's business; the IdP only says it can.
        status: bound && unbound.length > 0 ? 'warn' : 'pass',
        basis,
        detail: bound
          ? `the IdP can bind tokens to the certificate${unbound.length > 0 ? `; routes without "mtls": true (${unbound.join(', ')}) fail if it binds this client's` : ''}`
          : 'not advertised',
      },
      {
        name: 'mTLS endpoint aliases (RFC 8705 §5)',
        status: 'pass',
        basis,
        detail: m.mtls_endpoint_aliases
          ? `used: ${JSON.stringify(m.mtls_endpoint_aliases)}`
          : 'none advertised: the certificate goes to the regular endpoints',
      },
    )
  }

  const authMethods = m.token_endpoint_auth_methods_supported
  checks.push({
    name: 'client authentication method',
    status: passOr(has(authMethods, config.clientAuth), 'warn'),
    basis,
    detail: has(authMethods, config.clientAuth)
      ? `${config.clientAuth}; IdP: ${listed(authMethods)}`
      : `${config.clientAuth} not in token_endpoint_auth_methods_supported (${listed(authMethods)}): not advertised; the client authentication check proves whether the IdP accepts it`,
  })

  checks.push({
    name: 'end session',
    status: passOr(Boolean(m.end_session_endpoint), 'warn'),
    basis,
    detail:
      m.end_session_endpoint ??
      'no end_session_endpoint: logout ends only the local session; the user stays signed in at the IdP, and the next login may not ask for credentials',
  })

  const frontchannelUri = `${config.publicOrigin}${config.basePath}/auth/frontchannel-logout`
  const frontchannel = Boolean((m as { frontchannel_logout_supported?: unknown }).frontchannel_logout_supported)
  checks.push({
    name: 'back-channel logout',
    status: passOr(Boolean(m.backchannel_logout_supported), 'warn'),
    basis,
    detail: m.backchannel_logout_supported
      ? `supported (session: ${String(m.backchannel_logout_session_supported ?? false)})`
      : `no back-channel logout (backchannel_logout_supported ${String(m.backchannel_logout_supported ?? false)}): sessions ended at the IdP are not ended here; ${
          frontchannel
            ? `the IdP advertises front-channel logout: register the front-channel logout URI ${frontchannelUri} (frontchannel_logout_session_required=true)`
            : `register the front-channel logout URI ${frontchannelUri} if the IdP supports it, or rely on refresh failing`
        }`,
  })

  checks.push({
    name: 'iss in authorization response (RFC 9207)',
    status: passOr(Boolean(m.authorization_response_iss_parameter_supported), 'warn'),
    basis,
    detail: m.authorization_response_iss_parameter_supported ? 'supported' : 'not advertised: mix-up defence relies on state alone',
  })

  const dpopAlgs = m.dpop_signing_alg_values_supported
  checks.push({
    name: 'DPoP (RFC 9449)',
    status: passOr(Boolean(dpopAlgs), 'warn'),
    basis,
    detail: dpopAlgs
      ? `${listed(dpopAlgs)}${config.dpop.enabled ? '' : ' (BFF_DPOP is off: bearer tokens)'}`
      : config.dpop.enabled
        ? 'not advertised, but BFF_DPOP is on: the IdP may ignore the proofs and issue bearer tokens'
        : 'not advertised: access tokens are bearer tokens (usable by whoever obtains one)',
  })

  // BFF_PAR=always with no PAR endpoint: no login can start.
  const par = m.pushed_authorization_request_endpoint
  checks.push({
    name: 'PAR (RFC 9126)',
    status: par ? 'pass' : config.par === 'always' ? 'fail' : 'warn',
    basis,
    detail:
      par ??
      (config.par === 'always'
        ? 'BFF_PAR=always, but the IdP advertises no pushed_authorization_request_endpoint: logins cannot start'
        : 'not advertised: authorization requests travel in the browser’s URL'),
  })
  return checks
}

/**
 * `tokenward doctor`: proves what the configuration claims against the real
 * services (Redis, the IdP and client authentication, the revocation
 * endpoint, each route's upstream) and reports what the IdP advertises. Each
 * check passes, warns (with its consequence) or fails (proven broken); exit 1
 * only when a check fails.
 */
export async function doctor(config: Config, out: Out, opts: DoctorOptions = {}): Promise<number> {
  const checks = await runChecks(config)
  const failed = checks.some((c) => c.status === 'fail')
  if (opts.json) out(JSON.stringify({ ok: !failed, checks }))
  else for (const c of checks) out(formatCheck(c))
  return failed ? 1 : 0
}

/**
 * `tokenward doctor` with BFF_CONFIG_FILE: every check per frontend, each line
 * prefixed with the frontend's name, each JSON check carrying `frontend`.
 * Without the file, exactly `doctor` of the one configuration.
 */
export async function doctorFrontends(set: FrontendSet, out: Out, opts: DoctorOptions = {}): Promise<number> {
  if (!set.matchHost) return doctor(set.frontends[0]!.config, out, opts)
  const checks: Array<Check & { frontend: string }> = []
  for (const f of set.frontends) for (const c of await runChecks(f.config)) checks.push({ ...c, frontend: f.name })
  const failed = checks.some((c) => c.status === 'fail')
  if (opts.json) out(JSON.stringify({ ok: !failed, checks }))
  else for (const c of checks) out(`${c.frontend}: ${formatCheck(c)}`)
  return failed ? 1 : 0
}

async function runChecks(config: Config): Promise<Check[]> {
  const checks: Check[] = [{ name: 'configuration', status: 'pass', basis: 'proven', detail: `${config.routes.length} route(s)` }]
  for (const w of config.warnings) checks.push({ name: 'configuration', status: 'warn', basis: 'proven', detail: w })
  const deps = createDeps(config, { logger: createLogger('silent'), store: 'redis' })
  try {
    checks.push(...checkClientCertificate(config, deps.tls))
    const upstreams = checkUpstreams(config, deps.tls)
    checks.push(await checkRedis(config, deps))
    try {
      const metadata = (await deps.oidc.configuration()).serverMetadata()
      checks.push(...idpChecks(config, metadata))
      checks.push(await checkClientAuth(config, deps.oidc))
      checks.push(await checkRevocation(deps.oidc, metadata))
    } catch (err) {
      checks.push({ name: 'idp discovery', status: 'fail', basis: 'proven', detail: deps.oidc.lastError ?? describe(err) })
    }
    checks.push(...(await upstreams))
    checks.push(checkMetrics(config))
  } finally {
    await deps.tls?.close()
    await deps.store.close()
  }
  return checks
}

/** One line: `PASS`, `WARN` or `FAIL`, and `[advertised]` where only the discovery document says so. */
export function formatCheck(c: Check): string {
  return `${c.status.toUpperCase()}  ${c.name}${c.basis === 'advertised' ? ' [advertised]' : ''}: ${c.detail}`
}
