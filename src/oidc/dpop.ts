import { createHash, createPrivateKey, createPublicKey, randomUUID } from 'node:crypto'
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, importPKCS8, SignJWT, type JWK } from 'jose'
import type { Logger } from '../log.js'

type KeyPair = { privateKey: CryptoKey; publicKey: CryptoKey }
type CryptoKey = Awaited<ReturnType<typeof generateKeyPair>>['privateKey']

const ALG = 'ES256'

/**
 * tokenward's DPoP key (RFC 9449). Tokens issued for it are bound to it, so a
 * copy of the session store, even with the encryption keys, yields no usable
 * refresh or access token without this key too. It lives only in process memory,
 * loaded from BFF_DPOP_KEY (a private P-256 JWK or PKCS#8 PEM); without one a
 * key is generated per process, and the access tokens bound to it stop working
 * at a restart (a confidential client's refresh token is bound to its client
 * authentication, not to the key, RFC 9449 §5, so a refresh may recover them).
 */
export class DpopKey {
  readonly keyPair: KeyPair
  readonly #publicJwk: JWK
  readonly thumbprint: string
  /** Nonces upstreams asked for (RFC 9449 §9), per origin. */
  readonly #nonces = new Map<string, string>()

  private constructor(keyPair: KeyPair, publicJwk: JWK, thumbprint: string) {
    this.keyPair = keyPair
    this.#publicJwk = publicJwk
    this.thumbprint = thumbprint
  }

  static async load(raw: string | undefined, logger: Logger): Promise<DpopKey> {
    let keyPair: KeyPair
    if (!raw) {
      logger.warn(
        'BFF_DPOP=true without BFF_DPOP_KEY: a DPoP key was generated for this process; access tokens bound to it stop working when the process restarts; set BFF_DPOP_KEY, the same on every instance',
      )
      keyPair = (await generateKeyPair(ALG, { extractable: false })) as KeyPair
    } else {
      const text = raw.trim()
      const pem = text.startsWith('{')
        ? createPrivateKey({ key: JSON.parse(text) as Record<string, unknown> as never, format: 'jwk' })
            .export({ format: 'pem', type: 'pkcs8' })
            .toString()
        : createPrivateKey(text).export({ format: 'pem', type: 'pkcs8' }).toString()
      const publicPem = createPublicKey(pem).export({ format: 'jwk' }) as JWK
      keyPair = {
        privateKey: (await importPKCS8(pem, ALG)) as CryptoKey,
        publicKey: (await importJWK({ ...publicPem, alg: ALG }, ALG)) as CryptoKey,
      }
    }
    const publicJwk = await exportJWK(keyPair.publicKey)
    return new DpopKey(keyPair, publicJwk, await calculateJwkThumbprint(publicJwk))
  }

  /** A DPoP proof for one upstream request, bound to the access token by `ath`. */
  async proof(method: string, url: URL, accessToken: string): Promise<string> {
    const htu = `${url.origin}${url.pathname}`
    const nonce = this.#nonces.get(url.origin)
    return new SignJWT({
      htm: method,
      htu,
      jti: randomUUID(),
      ath: createHash('sha256').update(accessToken).digest('base64url'),
      ...(nonce ? { nonce } : {}),
    })
      .setProtectedHeader({ typ: 'dpop+jwt', alg: ALG, jwk: this.#publicJwk })
      .setIssuedAt()
      .sign(this.keyPair.privateKey)
  }

  /** Remembers a `DPoP-Nonce` an upstream sent; true when it changed. */
  rememberNonce(origin: string, nonce: string | undefined): boolean {
    if (!nonce || nonce.length > 512 || this.#nonces.get(origin) === nonce) return false
    this.#nonces.set(origin, nonce)
    return true
  }
}
