import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { loadConfig, type EncryptionKey } from '../../src/config.js'
import { DecryptError, generateKeyringEntry, Keyring } from '../../src/crypto/keyring.js'
import { testEnv } from '../helpers/env.js'

function key(id: string): EncryptionKey {
  return { id, key: randomBytes(32) }
}

const binding = Buffer.from('session-ref-1')
const plaintext = Buffer.from('{"refresh_token":"rt-secret-value","access_token":"at-secret-value"}')

describe('Keyring', () => {
  it('round-trips a plaintext under the same binding', () => {
    const ring = new Keyring([key('k1')])
    const sealed = ring.seal(plaintext, binding)
    expect(ring.open(sealed, binding).equals(plaintext)).toBe(true)
  })

  it('round-trips empty and binary plaintexts', () => {
    const ring = new Keyring([key('k1')])
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
    for (const p of [Buffer.alloc(0), all, randomBytes(10_000)]) {
      expect(ring.open(ring.seal(p, binding), binding).equals(p)).toBe(true)
    }
  })

  it('security model S57: an entry does not open under a different binding', () => {
    const ring = new Keyring([key('k1')])
    const sealed = ring.seal(plaintext, binding)
    for (const other of [Buffer.from('session-ref-2'), Buffer.alloc(0), Buffer.from('session-ref-1 ')]) {
      expect(() => ring.open(sealed, other)).toThrow(DecryptError)
    }
  })

  it('a flipped bit anywhere in the sealed value makes it fail to open', () => {
    const ring = new Keyring([key('k1')])
    const sealed = ring.seal(Buffer.from('short secret'), binding)
    let checked = 0
    for (let byte = 0; byte < sealed.length; byte++) {
      for (let bit = 0; bit < 8; bit++) {
        const tampered = Buffer.from(sealed)
        tampered[byte]! ^= 1 << bit
        expect(() => ring.open(tampered, binding), `byte ${byte} bit ${bit}`).toThrow(DecryptError)
        checked++
      }
    }
    expect(checked).toBe(sealed.length * 8)
  })

  it('truncated or extended values fail to open', () => {
    const ring = new Keyring([key('k1')])
    const sealed = ring.seal(plaintext, binding)
    for (const n of [0, 1, 2, 5, 20, sealed.length - 1]) {
      expect(() => ring.open(sealed.subarray(0, n), binding), `length ${n}`).toThrow(DecryptError)
    }
    expect(() => ring.open(Buffer.concat([sealed, Buffer.from([0])]), binding)).toThrow(DecryptError)
  })

  it('security model S60: rotation keeps old entries readable and seals new ones with the new key', () => {
    const oldKey = key('old')
    const newKey = key('new')
    const oldRing = new Keyring([oldKey])
    const rotated = new Keyring([newKey, oldKey])
    expect(oldRing.currentKeyId).toBe('old')
    expect(rotated.currentKeyId).toBe('new')

    const sealedOld = oldRing.seal(plaintext, binding)
    expect(rotated.open(sealedOld, binding).equals(plaintext)).toBe(true)

    const sealedNew = rotated.seal(plaintext, binding)
    expect(rotated.open(sealedNew, binding).equals(plaintext)).toBe(true)
    // Only the new key can open it: the old keyring does not know it.
    expect(() => oldRing.open(sealedNew, binding)).toThrow(DecryptError)
    expect(new Keyring([newKey]).open(sealedNew, binding).equals(plaintext)).toBe(true)
  })

  it('security model S60: a keyring without the sealing key throws DecryptError (retired key)', () => {
    const retired = key('retired')
    const sealed = new Keyring([retired]).seal(plaintext, binding)
    const ring = new Keyring([key('current')])
    expect(() => ring.open(sealed, binding)).toThrow(DecryptError)
  })

  it('a key with the same id but different bytes does not open the entry', () => {
    const sealed = new Keyring([key('k1')]).seal(plaintext, binding)
    expect(() => new Keyring([key('k1')]).open(sealed, binding)).toThrow(DecryptError)
  })

  it('the ciphertext does not contain the plaintext', () => {
    const ring = new Keyring([key('k1')])
    const sealed = ring.seal(plaintext, binding)
    expect(sealed.includes(plaintext)).toBe(false)
    expect(sealed.includes(Buffer.from('rt-secret-value'))).toBe(false)
    expect(sealed.toString('latin1')).not.toContain('secret')
  })

  it('two seals of the same plaintext use different IVs and differ', () => {
    const ring = new Keyring([key('k1')])
    const a = ring.seal(plaintext, binding)
    const b = ring.seal(plaintext, binding)
    expect(a.equals(b)).toBe(false)
    // version(1) | kidLength(1) | kid | iv(12)
    const ivStart = 2 + a[1]!
    const ivA = a.subarray(ivStart, ivStart + 12)
    const ivB = b.subarray(ivStart, ivStart + 12)
    expect(ivA.equals(ivB)).toBe(false)
    expect(a.subarray(0, ivStart).equals(b.subarray(0, ivStart))).toBe(true)
  })

  it('refuses to build without keys or with a key that is not 32 bytes', () => {
    expect(() => new Keyring([])).toThrow()
    expect(() => new Keyring([{ id: 'short', key: randomBytes(16) }])).toThrow(/32 bytes/)
    expect(() => new Keyring([key('ok'), { id: 'long', key: randomBytes(33) }])).toThrow(/32 bytes/)
  })

  it('DecryptError is an Error with its own name', () => {
    const err = new DecryptError('x')
    expect(err).toBeInstanceOf(Error)
    expect(err.name).toBe('DecryptError')
  })
})

describe('generateKeyringEntry', () => {
  it('produces id:base64 of 32 random bytes', () => {
    const entry = generateKeyringEntry()
    const m = /^([A-Za-z0-9_-]{1,32}):([A-Za-z0-9+/]+={0,2})$/.exec(entry)
    expect(m, entry).not.toBeNull()
    expect(m![1]).toMatch(/^k\d{8}$/)
    expect(Buffer.from(m![2]!, 'base64').length).toBe(32)
    expect(Buffer.from(m![2]!, 'base64').toString('base64')).toBe(m![2])
    expect(generateKeyringEntry()).not.toBe(entry)
  })

  it('uses the given id', () => {
    const entry = generateKeyringEntry('rotated-2')
    expect(entry.startsWith('rotated-2:')).toBe(true)
    expect(Buffer.from(entry.slice('rotated-2:'.length), 'base64').length).toBe(32)
  })

  it('is accepted by BFF_ENCRYPTION_KEYS and yields a working keyring', () => {
    const config = loadConfig(testEnv({ BFF_ENCRYPTION_KEYS: `${generateKeyringEntry('a')},${generateKeyringEntry('b')}` }))
    expect(config.encryptionKeys.map((k) => k.id)).toEqual(['a', 'b'])
    const ring = new Keyring(config.encryptionKeys)
    expect(ring.currentKeyId).toBe('a')
    expect(ring.open(ring.seal(plaintext, binding), binding).equals(plaintext)).toBe(true)
  })
})
