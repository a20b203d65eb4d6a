import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import type { EncryptionKey } from '../config.js'

const VERSION = 1
const IV_BYTES = 12
const TAG_BYTES = 16

/** Raised when a sealed value cannot be opened: unknown key id, tampering, or wrong binding. */
export class DecryptError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'DecryptError'
  }
}

/**
 * AES-256-GCM under a keyring: the first key encrypts, every key decrypts, and
 * each ciphertext names its key id so keys can be rotated without a flag day.
 *
 * Format: version(1) | kidLength(1) | kid | iv(12) | ciphertext | tag(16).
 * The version and kid are authenticated as AAD together with the caller's
 * binding (the session reference), so an entry moved to another key fails to open
 * (security model S56, S57, S60; RFC 6749 §10.4).
 */
export class Keyring {
  readonly #keys: ReadonlyMap<string, Buffer>
  readonly #current: EncryptionKey

  constructor(keys: readonly EncryptionKey[]) {
    const first = keys[0]
    if (!first) throw new Error('a keyring needs at least one key')
    for (const k of keys) if (k.key.length !== 32) throw new Error(`key ${k.id} is not 32 bytes`)
    this.#current = first
    this.#keys = new Map(keys.map((k) => [k.id, k.key]))
  }

  get currentKeyId(): string {
    return this.#current.id
  }

  seal(plaintext: Buffer, binding: Buffer): Buffer {
    const kid = Buffer.from(this.#current.id, 'utf8')
    const header = Buffer.concat([Buffer.from([VERSION, kid.length]), kid])
    const iv = randomBytes(IV_BYTES)
    const cipher = createCipheriv('aes-256-gcm', this.#current.key, iv)
    cipher.setAAD(Buffer.concat([header, binding]))
    const ct = Buffer.concat([cipher.update(plaintext), cipher.final()])
    return Buffer.concat([header, iv, ct, cipher.getAuthTag()])
  }

  open(sealed: Buffer, binding: Buffer): Buffer {
    if (sealed.length < 2 || sealed[0] !== VERSION) throw new DecryptError('unknown format')
    const kidLength = sealed[1]!
    const headerLength = 2 + kidLength
    if (sealed.length < headerLength + IV_BYTES + TAG_BYTES) throw new DecryptError('truncated')
    const kid = sealed.subarray(2, headerLength).toString('utf8')
    const key = this.#keys.get(kid)
    if (!key) throw new DecryptError(`unknown key id ${kid}`)
    const iv = sealed.subarray(headerLength, headerLength + IV_BYTES)
    const tag = sealed.subarray(sealed.length - TAG_BYTES)
    const ct = sealed.subarray(headerLength + IV_BYTES, sealed.length - TAG_BYTES)
    const decipher = createDecipheriv('aes-256-gcm', key, iv)
    decipher.setAAD(Buffer.concat([sealed.subarray(0, headerLength), binding]))
    decipher.setAuthTag(tag)
    try {
      return Buffer.concat([decipher.update(ct), decipher.final()])
    } catch {
      throw new DecryptError('authentication failed')
    }
  }
}

/** `tokenward keys generate`: a fresh keyring entry `id:base64`. */
export function generateKeyringEntry(id = `k${new Date().toISOString().slice(0, 10).replaceAll('-', '')}`): string {
  return `${id}:${randomBytes(32).toString('base64')}`
}
