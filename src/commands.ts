import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Config } from './config.js'
import { createDeps } from './deps.js'
import { createLogger } from './log.js'
import type { Session } from './session/sessions.js'
import { SessionTerminator } from './lifecycle/terminate.js'
import type { Deps } from './types.js'

type Out = (line: string) => void

/**
 * The CLI's deps: the same Redis and keyring as the running instances, logs
 * (and audit lines) on stderr so stdout stays for the answer.
 */
function cliDeps(config: Config): Deps {
  return createDeps(config, { logger: createLogger(config.logLevel === 'silent' ? 'silent' : 'info', process.stderr), store: 'redis' })
}

const iso = (ms: number) => new Date(ms).toISOString()

function describeSession(s: Session, idleMs: number) {
  return {
    sid: s.sid,
    sub: s.data.sub,
    created: iso(s.data.createdAt),
    // Every use slides the idle TTL back to its full length, so this is when it last slid.
    lastUsed: iso(Math.max(s.data.createdAt, s.idleExp - idleMs)),
    idleExpires: iso(s.idleExp),
    expires: iso(s.absExp),
  }
}

/** `tokenward sessions list --sub <sub> [--json]`: never prints a token. */
export async function listSessions(config: Config, sub: string, json: boolean, out: Out): Promise<number> {
  const deps = cliDeps(config)
  try {
    const rows = (await deps.sessions.list('sub', sub)).map((s) => describeSession(s, deps.sessions.idleTimeoutMs))
    if (json) for (const r of rows) out(JSON.stringify(r))
    else {
      out(`${rows.length} session(s) for sub ${sub}`)
      for (const r of rows) out(`${r.sid}  created ${r.created}  last used ${r.lastUsed}  expires ${r.expires}`)
    }
    return 0
  } finally {
    await deps.store.close()
  }
}

/**
 * `tokenward sessions revoke (--sid <sid> | --sub <sub>)`: ends the sessions on
 * every instance at once (they share Redis; open tabs get session_ended) and
 * revokes the refresh tokens at the IdP, waiting for the retries to finish.
 */
export async function revokeSessions(config: Config, by: { sid?: string; sub?: string }, out: Out): Promise<number> {
  const deps = cliDeps(config)
  const terminator = new SessionTerminator({
    sessions: deps.sessions,
    events: deps.store.events,
    oidc: deps.oidc,
    logger: deps.logger,
    retryDelaysMs: [500, 2000],
  })
  try {
    const sessions = by.sid
      ? [await deps.sessions.loadBySid(by.sid, { slide: false })].filter((s): s is Session => s !== null)
      : await deps.sessions.list('sub', by.sub!)
    let notRevoked = 0
    for (const s of sessions) {
      const { revoked } = await terminator.end(s, 'session_revoked', { audit: { by: 'cli' } })
      out(
        `revoked ${s.sid} (sub ${s.data.sub}); refresh token at the IdP: ${revoked === true ? 'revoked' : revoked === false ? 'none' : 'retrying'}`,
      )
    }
    for (let i = 0; terminator.pendingRetries > 0 && i < 60; i++) await sleep(100)
    if (terminator.pendingRetries > 0) notRevoked = terminator.pendingRetries
    if (sessions.length === 0) out('no matching session')
    if (notRevoked > 0) out(`${notRevoked} refresh token(s) could not be revoked at the IdP (see the log)`)
    return sessions.length === 0 ? 1 : 0
  } finally {
    terminator.close()
    await deps.store.close()
  }
}

interface Check {
  name: string
  ok: boolean | 'warn'
  detail: string
}

/** `tokenward doctor`: configuration, Redis, IdP discovery, and what the IdP supports. */
export async function doctor(config: Config, out: Out, opts: { json?: boolean } = {}): Promise<number> {
  const checks: Check[] = [{ name: 'configuration', ok: true, detail: `${config.routes.length} route(s)` }]
  for (const w of config.warnings) checks.push({ name: 'configuration', ok: 'warn', detail: w })
  const deps = createDeps(config, { logger: createLogger('silent'), store: 'redis' })
  try {
    const started = Date.now()
    try {
      const id = `doctor-${randomUUID()}`
      await deps.store.transactions.put(id, Buffer.from('ok'), 10_000)
      const back = await deps.store.transactions.take(id)
      checks.push({
        name: 'redis',
        ok: back?.toString() === 'ok',
        detail: `write, read and delete in ${Date.now() - started} ms (${config.redis.mode})`,
      })
    } catch (err) {
      checks.push({ name: 'redis', ok: false, detail: (err as Error).message })
    }
    try {
      const m = (await deps.oidc.configuration()).serverMetadata()
      checks.push({ name: 'idp discovery', ok: true, detail: m.issuer })
      const has = (list: readonly string[] | undefined, v: string) => Boolean(list?.includes(v))
      checks.push({
        name: 'PKCE S256',
        ok: has(m.code_challenge_methods_supported, 'S256'),
        detail: String(m.code_challenge_methods_supported ?? 'not advertised'),
      })
      checks.push({
        name: 'refresh_token grant',
        ok: m.grant_types_supported ? has(m.grant_types_supported, 'refresh_token') : 'warn',
        detail: String(m.grant_types_supported ?? 'not advertised'),
      })
      if (config.routes.some((r) => r.token === 'client')) {
        checks.push({
          name: 'client_credentials grant (client routes)',
          ok: m.grant_types_supported ? has(m.grant_types_supported, 'client_credentials') : 'warn',
          detail: String(m.grant_types_supported ?? 'not advertised'),
        })
      }
      checks.push({
        name: 'refresh token rotation',
        ok: 'warn',
        detail: 'not discoverable; tokenward handles both rotating and non-rotating IdPs',
      })
      checks.push({
        name: 'client authentication',
        ok: m.token_endpoint_auth_methods_supported ? has(m.token_endpoint_auth_methods_supported, config.clientAuth) : 'warn',
        detail: `${config.clientAuth}; IdP: ${String(m.token_endpoint_auth_methods_supported ?? 'not advertised')}`,
      })
      checks.push({
        name: 'revocation (RFC 7009)',
        ok: m.revocation_endpoint ? true : 'warn',
        detail: m.revocation_endpoint ?? 'no revocation_endpoint: logout cannot revoke refresh tokens',
      })
      checks.push({
        name: 'end session',
        ok: m.end_session_endpoint ? true : 'warn',
        detail: m.end_session_endpoint ?? 'no end_session_endpoint: logout ends only the local session',
      })
      checks.push({
        name: 'back-channel logout',
        ok: m.backchannel_logout_supported ? true : 'warn',
        detail: m.backchannel_logout_supported
          ? `supported (session: ${String(m.backchannel_logout_session_supported ?? false)})`
          : 'not advertised',
      })
      checks.push({
        name: 'iss in authorization response (RFC 9207)',
        ok: m.authorization_response_iss_parameter_supported ? true : 'warn',
        detail: m.authorization_response_iss_parameter_supported ? 'supported' : 'not advertised: mix-up defence relies on state alone',
      })
      checks.push({
        name: 'DPoP (RFC 9449)',
        ok: m.dpop_signing_alg_values_supported ? true : 'warn',
        detail: String(m.dpop_signing_alg_values_supported ?? 'not advertised'),
      })
      checks.push({
        name: 'PAR (RFC 9126)',
        ok: m.pushed_authorization_request_endpoint ? true : 'warn',
        detail: m.pushed_authorization_request_endpoint ?? 'not advertised',
      })
    } catch (err) {
      checks.push({ name: 'idp discovery', ok: false, detail: deps.oidc.lastError ?? (err as Error).message })
    }
  } finally {
    await deps.store.close()
  }
  const failed = checks.some((c) => c.ok === false)
  if (opts.json) {
    const status = (c: Check) => (c.ok === true ? 'ok' : c.ok === 'warn' ? 'warn' : 'fail')
    out(JSON.stringify({ ok: !failed, checks: checks.map((c) => ({ name: c.name, status: status(c), detail: c.detail })) }))
  } else for (const c of checks) out(`${c.ok === true ? 'ok  ' : c.ok === 'warn' ? 'warn' : 'FAIL'}  ${c.name}: ${c.detail}`)
  return failed ? 1 : 0
}
