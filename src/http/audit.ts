import type { Context } from 'hono'
import { audit, type AuditEvent, type AuditFields } from '../log.js'
import type { AppEnv } from '../types.js'
import { header } from './headers.js'

/** The client's address: the socket peer, or what trusted proxies say (client-address.ts). */
export function clientIp(c: Context<AppEnv>): string | undefined {
  return c.get('client')?.client
}

/** Who asked, as the audit trail records it: the client address and a bounded User-Agent. */
export function requester(
  ip: string | undefined,
  userAgent: string | string[] | undefined,
): { ip: string | undefined; userAgent: string | undefined } {
  return { ip, userAgent: (Array.isArray(userAgent) ? userAgent.join(', ') : userAgent)?.slice(0, 256) }
}

/** An audit record of a Hono request, with who asked. */
export function auditFor(c: Context<AppEnv>, event: AuditEvent, fields: AuditFields): void {
  audit(c.get('log'), event, { ...requester(clientIp(c), header(c, 'user-agent')), ...fields })
}
