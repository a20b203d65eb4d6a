import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose'
import type { Config } from '../config.js'
import { BffError } from '../errors.js'
import type { OneTimeIds } from '../store/types.js'
import type { OidcClient } from './client.js'

const EVENT = 'http://schemas.openid.net/event/backchannel-logout'
/** Asymmetric algorithms only: `none` and HMAC (which would accept a token signed with the client secret) never. */
const ASYMMETRIC = /^(RS|PS|ES)(256|384|512)$|^EdDSA$|^Ed25519$/
const CLOCK_TOLERANCE_S = 60
/** Logout tokens older than this are refused even when `exp` is far away. */
const MAX_AGE_S = 300

export interface LogoutClaims {
  /** The issuer that signed it: BFF_ISSUER, or an allowed tenant's issuer (security model S79). */
  readonly iss: string
  readonly sub: string | undefined
  readonly sid: string | undefined
  readonly jti: string
}

function refuse(detail: string): BffError {
  return new BffError('invalid_request', 'The logout token is not valid.', { logDetail: detail })
}

/**
 * Validates a back-channel logout token (OpenID Connect Back-Channel Logout 1.0
 * §2.6): signature against the IdP's JWKS with pinned asymmetric algorithms,
 * `iss`, `aud`, `iat`, `exp`, `typ` when sent, the back-channel `events`
 * member, `sub` or `sid`, no `nonce`, and a `jti` never accepted before
 * (security model S52).
 */
export class LogoutTokenVerifier {
  readonly #config: Config
  readonly #oidc: OidcClient
  readonly #seen: OneTimeIds
  #jwks: ReturnType<typeof createRemoteJWKSet> | undefined

  constructor(config: Config, oidc: OidcClient, seen: OneTimeIds) {
    this.#config = config
    this.#oidc = oidc
    this.#seen = seen
  }

  async verify(token: string): Promise<LogoutClaims> {
    const configuration = await this.#oidc.configuration()
    const metadata = configuration.serverMetadata()
    if (!metadata.jwks_uri) throw refuse('the IdP publishes no jwks_uri')
    // jose caches the key set and refetches it, at most every 30 s, when a token
    // names an unknown kid: key rotation works and cannot be abused to flood the IdP.
    this.#jwks ??= createRemoteJWKSet(new URL(metadata.jwks_uri), { timeoutDuration: 5000, cooldownDuration: 30_000 })

    let header
    try {
      header = decodeProtectedHeader(token)
    } catch {
      throw refuse('not a JWS')
    }
    const advertised = (metadata.id_token_signing_alg_values_supported ?? ['RS256']).filter((a) => ASYMMETRIC.test(a))
    if (typeof header.alg !== 'string' || !advertised.includes(header.alg)) throw refuse(`algorithm ${String(header.alg)} is not allowed`)
    // BCL §2.6 step 3 (and §4.1): explicit typing, when the IdP sends it.
    if (header.typ !== undefined && !/^(application\/)?logout\+jwt$/i.test(header.typ)) throw refuse(`typ ${header.typ}`)

    // A multi-tenant issuer's tokens carry the issuer of the user's tenant:
    // any allowed tenant's, never the template's (security model S79).
    const issuers = await this.#oidc.acceptedIssuers()
    let payload: JWTPayload
    try {
      ;({ payload } = await jwtVerify(token, this.#jwks, {
        issuer: issuers,
        audience: this.#config.clientId,
        algorithms: advertised,
        requiredClaims: ['iat', 'exp', 'jti'],
        clockTolerance: CLOCK_TOLERANCE_S,
        maxTokenAge: MAX_AGE_S,
      }))
    } catch (err) {
      throw refuse(`verification failed: ${(err as Error).message}`)
    }

    const events = payload.events as Record<string, unknown> | undefined
    if (!events || typeof events !== 'object' || typeof events[EVENT] !== 'object' || events[EVENT] === null) {
      throw refuse('events does not contain the back-channel logout event')
    }
    if ('nonce' in payload) throw refuse('a logout token must not contain a nonce')
    const sub = typeof payload.sub === 'string' && payload.sub.length > 0 ? payload.sub : undefined
    const sid = typeof payload.sid === 'string' && payload.sid.length > 0 ? payload.sid : undefined
    if (!sub && !sid) throw refuse('neither sub nor sid')
    if (typeof payload.jti !== 'string' || payload.jti.length === 0 || payload.jti.length > 256) throw refuse('bad jti')
    // A replayed token (same jti) is refused for as long as it could be valid.
    const ttl = ((payload.exp ?? 0) + CLOCK_TOLERANCE_S) * 1000 - Date.now()
    const iss = payload.iss!
    if (!(await this.#seen.rememberOnce(`bcl\0${iss}\0${payload.jti}`, Math.max(ttl, MAX_AGE_S * 1000)))) {
      throw refuse('jti seen before (replay)')
    }
    return { iss, sub, sid, jti: payload.jti }
  }
}
