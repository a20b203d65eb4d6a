// Token responses that state the refresh token's lifetime the way other IdPs
// do, reproduced on the dev IdP (oidc-provider 9, which states it in none of
// these ways) for the tests of security model S77. Koa middleware on the
// provider rewrites the token endpoint's JSON answer after oidc-provider built
// it; refresh tokens stay oidc-provider's own, so refresh, rotation, reuse
// detection and revocation are the real ones.
//
// The account name picks the style and the refresh token's lifetime:
// `<style>.<seconds>` (refreshAccount()). The lifetime is sliding: every
// rotated refresh token lives that long again, as Keycloak's do (bounded by
// its SSO session idle time). Other accounts get the dev IdP's answers as they are.
//
// - `refresh_token_expires_in`: the field Microsoft's identity platform and
//   GitHub apps send: seconds until the refresh token expires.
// - `keycloak`: reproduces Keycloak's documented token response:
//   `refresh_expires_in` (seconds) and `not-before-policy` beside the standard
//   fields, with an opaque refresh token, so only `refresh_expires_in` tells.
// - `keycloak_offline`: Keycloak's answer for an offline token without a
//   fixed expiry: `refresh_expires_in: 0`.
// - `jwt`: the refresh token is a JWT with its own `exp` and no lifetime field
//   (Keycloak's refresh tokens are such JWTs, HMAC-signed with a key only the
//   IdP knows). oidc-provider issues only opaque refresh tokens, so the wrapper
//   hands out a JWT, signed with a secret of its own, in place of each opaque
//   one and maps it back on the way in (token and revocation requests): to
//   tokenward the IdP issues and accepts JWT refresh tokens; behind the
//   wrapper oidc-provider sees its own. The JWT's `exp` is the real token's.

import { randomBytes, randomUUID } from 'node:crypto'
import { SignJWT } from 'jose'
import type { Configuration } from 'oidc-provider'
import type Provider from 'oidc-provider'

export const REFRESH_STYLES = ['refresh_token_expires_in', 'keycloak', 'keycloak_offline', 'jwt'] as const
export type RefreshStyle = (typeof REFRESH_STYLES)[number]

/** The username (and `sub`) whose tokens come in `style`, their refresh tokens living `seconds`. */
export function refreshAccount(style: RefreshStyle, seconds: number): string {
  return `${style}.${seconds}`
}

function parseAccount(accountId: unknown): { style: RefreshStyle; seconds: number } | undefined {
  if (typeof accountId !== 'string') return undefined
  const dot = accountId.lastIndexOf('.')
  const style = accountId.slice(0, dot) as RefreshStyle
  const seconds = Number(accountId.slice(dot + 1))
  return REFRESH_STYLES.includes(style) && Number.isInteger(seconds) && seconds > 0 ? { style, seconds } : undefined
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

async function readBody(req: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(Buffer.from(chunk as Buffer))
  return Buffer.concat(chunks).toString('utf8')
}

/** The dev IdP options (DevIdpOptions `configure` and `setup`) that install the styles. */
export function refreshStyles(): { configure: (configuration: Configuration) => void; setup: (provider: Provider) => void } {
  return {
    configure(configuration) {
      const fallback = configuration.ttl?.RefreshToken
      configuration.ttl = {
        ...configuration.ttl,
        // Sliding: each rotated refresh token lives the account's lifetime again.
        RefreshToken: (ctx, token, client) => {
          const styled = parseAccount(token.accountId)
          if (styled) return styled.seconds
          return typeof fallback === 'function' ? fallback(ctx, token, client) : (fallback ?? 14 * 86_400)
        },
      }
    },
    setup(provider) {
      const tokenPath = provider.pathFor('token')
      const revocationPath = provider.pathFor('revocation')
      const secret = randomBytes(32)
      /** JWT handed out → the opaque refresh token it stands for. */
      const opaqueFor = new Map<string, string>()

      provider.use(async (ctx, next) => {
        const field =
          ctx.method !== 'POST' ? undefined : ctx.path === tokenPath ? 'refresh_token' : ctx.path === revocationPath ? 'token' : undefined
        if (field && opaqueFor.size > 0 && ctx.is('application/x-www-form-urlencoded')) {
          // A JWT refresh token presented back: oidc-provider gets its own
          // opaque one. oidc-provider reads an upstream-parsed body from req.body.
          const form = new URLSearchParams(await readBody(ctx.req))
          const opaque = opaqueFor.get(form.get(field) ?? '')
          if (opaque) form.set(field, opaque)
          ;(ctx.req as { body?: string }).body = form.toString()
        }
        await next()
        if (field !== 'refresh_token' || ctx.status !== 200 || !isRecord(ctx.body) || typeof ctx.body.refresh_token !== 'string') return
        const body = ctx.body
        const token = await provider.RefreshToken.find(body.refresh_token as string)
        const styled = token && parseAccount(token.accountId)
        if (!token || !styled || typeof token.exp !== 'number') return
        const now = Math.floor(Date.now() / 1000)
        switch (styled.style) {
          case 'refresh_token_expires_in':
            ctx.body = { ...body, refresh_token_expires_in: token.exp - now }
            return
          case 'keycloak':
            ctx.body = { ...body, refresh_expires_in: token.exp - now, 'not-before-policy': 0 }
            return
          case 'keycloak_offline':
            ctx.body = { ...body, refresh_expires_in: 0, 'not-before-policy': 0 }
            return
          case 'jwt': {
            const jwt = await new SignJWT({ typ: 'Refresh', azp: token.clientId, scope: token.scope })
              .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
              .setIssuer(provider.issuer)
              .setAudience(provider.issuer)
              .setSubject(String(token.accountId))
              .setJti(randomUUID())
              .setIssuedAt(now)
              .setExpirationTime(token.exp)
              .sign(secret)
            opaqueFor.set(jwt, body.refresh_token as string)
            ctx.body = { ...body, refresh_token: jwt }
            return
          }
        }
      })
    },
  }
}
