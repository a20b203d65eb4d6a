// The dev IdP's accounts: any username is a user, all share one password, and
// each gets claims derived from its name. What a login reports besides the
// account (acr, amr, auth_time) comes from DevIdpOptions.loginResult.

import { createHash, timingSafeEqual } from 'node:crypto'
import type { Account, Configuration, KoaContextWithOIDC } from 'oidc-provider'

export interface DevIdpLoginResult {
  acr?: string
  amr?: string[]
  ts?: number
}

/** The claims each scope releases (OpenID Connect Core §5.4). */
export const CLAIMS: NonNullable<Configuration['claims']> = {
  openid: ['sub'],
  profile: ['name', 'preferred_username'],
  email: ['email', 'email_verified'],
}

export async function findAccount(_ctx: KoaContextWithOIDC, sub: string): Promise<Account> {
  return {
    accountId: sub,
    claims: async () => ({
      sub,
      name: sub.charAt(0).toUpperCase() + sub.slice(1),
      preferred_username: sub,
      email: `${sub}@example.com`,
      email_verified: true,
    }),
  }
}

export function checkCredentials(username: string, given: string, expected: string): string | undefined {
  if (!username) return 'Enter a username.'
  // Control characters would make confusing `sub` values; anything else,
  // including markup, is allowed so tests can check that it gets escaped.
  if (username.length > 100 || /\p{Cc}/u.test(username)) return 'Use a shorter, printable username.'
  // Compare digests in constant time: nothing about the password leaks
  // through timing, not even its length.
  const a = createHash('sha256').update(given).digest()
  const b = createHash('sha256').update(expected).digest()
  if (!timingSafeEqual(a, b)) return 'Wrong password.'
  return undefined
}
