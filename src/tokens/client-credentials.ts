import { IdpUnavailableError } from '../errors.js'
import type { Logger } from '../log.js'
import type { OidcClient } from '../oidc/client.js'
import { classifyIdpError, describe, idpBug } from '../oidc/idp-errors.js'
import { SingleFlight } from '../single-flight.js'

export interface ClientTokenRequest {
  readonly scopes?: readonly string[] | undefined
  /** RFC 8707 resource indicator: the audience of the token. */
  readonly resource?: string | undefined
}

interface Cached {
  readonly token: string
  readonly type: string
  /** Epoch ms; Infinity when the IdP gave no lifetime (then the token is used until an upstream rejects it). */
  readonly expiresAt: number
}

/**
 * tokenward's own access tokens for `client` routes (RFC 6749 §4.4, client
 * credentials), one per scope and resource, cached in this process until they
 * expire within the refresh skew, and fetched single-flight. Client-credentials
 * tokens involve no refresh token, so there is no reuse detection to protect
 * and no need to share them across instances; each instance holds its own.
 */
export class ClientTokenService {
  readonly #oidc: Pick<OidcClient, 'clientCredentialsGrant'>
  readonly #logger: Logger
  readonly #skewMs: number
  readonly #now: () => number
  readonly #cache = new Map<string, Cached>()
  readonly #flights = new SingleFlight<string, Cached>()

  constructor(options: { oidc: Pick<OidcClient, 'clientCredentialsGrant'>; logger: Logger; skewSeconds: number; now: () => number }) {
    this.#oidc = options.oidc
    this.#logger = options.logger
    this.#skewMs = options.skewSeconds * 1000
    this.#now = options.now
  }

  async accessToken(request: ClientTokenRequest, options: { force?: boolean } = {}): Promise<{ token: string; type: string }> {
    const key = `${request.resource ?? ''}\0${[...(request.scopes ?? [])].sort().join(' ')}`
    const cached = this.#cache.get(key)
    if (!options.force && cached && cached.expiresAt - this.#skewMs > this.#now()) return cached
    return this.#flights.run(key, () => this.#fetch(key, request))
  }

  async #fetch(key: string, request: ClientTokenRequest): Promise<Cached> {
    const params: Record<string, string> = {}
    if (request.scopes?.length) params.scope = request.scopes.join(' ')
    if (request.resource) params.resource = request.resource
    try {
      const r = await this.#oidc.clientCredentialsGrant(params)
      const token: Cached = {
        token: r.accessToken,
        type: r.tokenType,
        expiresAt: r.expiresIn === undefined ? Infinity : this.#now() + r.expiresIn * 1000,
      }
      this.#cache.set(key, token)
      return token
    } catch (err) {
      this.#cache.delete(key)
      const failure = classifyIdpError(err)
      if (failure === 'unavailable') {
        this.#logger.warn(
          { reason: describe(err), resource: request.resource },
          'client credentials grant failed: identity provider unavailable',
        )
        throw new IdpUnavailableError({ cause: err, logDetail: `client credentials: ${describe(err)}` })
      }
      // The IdP refused tokenward's own grant (invalid_client, invalid_scope,
      // invalid_target) or something broke on our side: either way a
      // misconfiguration the browser's user can do nothing about and that
      // waiting will not cure, so a 500 logged as an error, not a 503 that
      // blames the IdP.
      this.#logger.error(
        { reason: describe(err), resource: request.resource, failure },
        'client credentials grant failed (a misconfiguration or a bug)',
      )
      throw idpBug(err, `client credentials (${failure === 'refused' ? 'refused by the identity provider' : 'unexpected error'})`)
    }
  }
}
