import { webcrypto } from 'node:crypto'
import { exportJWK, type JWK } from 'jose'

/**
 * A Device Bound Session Credentials client as a browser is one (W3C
 * webappsec-dbsc): a non-extractable WebCrypto key, proofs with header
 * `typ: dbsc+jwt` (the public `jwk` at registration only) and payload `jti` (+
 * `authorization` at registration).
 */
export interface DeviceKey {
  readonly alg: 'ES256' | 'RS256'
  readonly privateKey: webcrypto.CryptoKey
  readonly publicJwk: JWK
}

export async function deviceKey(alg: 'ES256' | 'RS256' = 'ES256', rsaBits = 2048): Promise<DeviceKey> {
  const pair =
    alg === 'ES256'
      ? await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify'])
      : await webcrypto.subtle.generateKey(
          { name: 'RSASSA-PKCS1-v1_5', modulusLength: rsaBits, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
          false,
          ['sign', 'verify'],
        )
  const publicJwk = await exportJWK(pair.publicKey)
  return { alg, privateKey: pair.privateKey, publicJwk }
}

/** A signed proof; `header` and `payload` override or add members (for refusals). */
export async function proof(
  key: DeviceKey,
  payload: Record<string, unknown>,
  options: { withJwk?: boolean; header?: Record<string, unknown> } = {},
): Promise<string> {
  const header = { alg: key.alg, typ: 'dbsc+jwt', ...(options.withJwk ? { jwk: key.publicJwk } : {}), ...options.header }
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url')
  const input = `${b64(header)}.${b64(payload)}`
  // WebCrypto's ECDSA signature is already JWS's raw r||s (RFC 7518 §3.4).
  const algorithm = key.alg === 'ES256' ? { name: 'ECDSA', hash: 'SHA-256' } : { name: 'RSASSA-PKCS1-v1_5' }
  const signature = await webcrypto.subtle.sign(algorithm, key.privateKey, new TextEncoder().encode(input))
  return `${input}.${Buffer.from(signature).toString('base64url')}`
}

/** The parameters of a `Secure-Session-Registration` header value. */
export function parseRegistration(value: string | null): { algs: string[]; path: string; challenge: string; authorization: string } {
  if (!value) throw new Error('no Secure-Session-Registration header')
  const algs = /^\(([^)]*)\)/.exec(value)?.[1]?.split(' ') ?? []
  const param = (name: string) => new RegExp(`;${name}="([^"]*)"`).exec(value)?.[1] ?? ''
  return { algs, path: param('path'), challenge: param('challenge'), authorization: param('authorization') }
}

/** The challenge and id of a `Secure-Session-Challenge` header value. */
export function parseChallenge(value: string | null): { challenge: string; id: string } {
  const m = value ? /^"([^"]*)";id="([^"]*)"$/.exec(value) : null
  if (!m) throw new Error(`not a Secure-Session-Challenge: ${value}`)
  return { challenge: m[1]!, id: m[2]! }
}
