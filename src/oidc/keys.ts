// jose: panva's JOSE implementation; imports JWK and PEM private keys as WebCrypto keys
// for private_key_jwt (and verifies logout tokens), with algorithm inference done right.
import { createPrivateKey } from 'node:crypto'
import { importJWK, importPKCS8, type JWK } from 'jose'
import type { PrivateKey } from 'openid-client'

const ALG_BY_KTY: Record<string, string> = { RSA: 'RS256', EC: 'ES256', OKP: 'EdDSA' }

/** Imports BFF_CLIENT_PRIVATE_KEY (a private JWK or a PKCS#8 PEM) for private_key_jwt (RFC 7523). */
export async function importPrivateKey(raw: string): Promise<PrivateKey> {
  const text = raw.trim()
  if (text.startsWith('{')) {
    const jwk = JSON.parse(text) as JWK
    const alg = jwk.alg ?? ALG_BY_KTY[jwk.kty ?? ''] ?? 'RS256'
    const key = await importJWK({ ...jwk, alg }, alg)
    if (key instanceof Uint8Array || key.type !== 'private') throw new Error('BFF_CLIENT_PRIVATE_KEY must be a private key')
    return { key, ...(jwk.kid ? { kid: jwk.kid } : {}) }
  }
  const type = createPrivateKey(text).asymmetricKeyType
  const alg = type === 'rsa' ? 'RS256' : type === 'ec' ? 'ES256' : type === 'ed25519' ? 'EdDSA' : undefined
  if (!alg) throw new Error(`BFF_CLIENT_PRIVATE_KEY has an unsupported key type ${type}`)
  const pkcs8 = createPrivateKey(text).export({ format: 'pem', type: 'pkcs8' }).toString()
  return { key: await importPKCS8(pkcs8, alg) }
}
