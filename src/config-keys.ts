import { createPrivateKey, type JsonWebKey } from 'node:crypto'
import type { EncryptionKey } from './config.js'

/** The private key's type ('rsa', 'ec', ...), or undefined when it is not a parseable private key. */
export function privateKeyType(raw: string): string | undefined {
  try {
    const text = raw.trim()
    const key = text.startsWith('{') ? createPrivateKey({ key: JSON.parse(text) as JsonWebKey, format: 'jwk' }) : createPrivateKey(text)
    const curve = key.asymmetricKeyDetails?.namedCurve
    return key.asymmetricKeyType === 'ec' && curve ? `ec:${curve}` : key.asymmetricKeyType
  } catch {
    return undefined
  }
}

export function parseKeyring(raw: string | undefined, problems: string[]): EncryptionKey[] {
  if (raw === undefined) return []
  const keys: EncryptionKey[] = []
  const entries = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  if (entries.length === 0) problems.push('BFF_ENCRYPTION_KEYS is empty')
  entries.forEach((entry, i) => {
    const m = /^([A-Za-z0-9_-]{1,32}):([A-Za-z0-9+/_-]+={0,2})$/.exec(entry)
    if (!m) {
      problems.push(`BFF_ENCRYPTION_KEYS entry ${i + 1} must be id:base64 (id of letters, digits, - or _)`)
      return
    }
    const key = Buffer.from(m[2]!, m[2]!.includes('-') || m[2]!.includes('_') ? 'base64url' : 'base64')
    if (key.length !== 32) {
      problems.push(`BFF_ENCRYPTION_KEYS entry ${i + 1} (${m[1]}) must decode to 32 bytes, got ${key.length}`)
      return
    }
    if (keys.some((k) => k.id === m[1])) {
      problems.push(`BFF_ENCRYPTION_KEYS has the key id ${m[1]} twice`)
      return
    }
    keys.push({ id: m[1]!, key })
  })
  return keys
}
