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
    deviceBound: s.data.dbsc !== undefined,
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
      for (const r of rows)
        out(`${r.sid}  created ${r.created}  last used ${r.lastUsed}  expires ${r.expires}${r.deviceBound ? '  device-bound' : ''}`)
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

export { doctor, doctorFrontends } from './cli/doctor.js'
