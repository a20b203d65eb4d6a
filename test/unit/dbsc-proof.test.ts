import { createHmac, generateKeyPairSync } from 'node:crypto'
import { exportJWK } from 'jose'
import { describe, expect, it } from 'vitest'
import { DbscProofError, verifyRefreshProof, verifyRegistrationProof } from '../../src/session/dbsc-proof.js'
import { deviceKey, proof } from '../helpers/dbsc-client.js'

// Proof verification of Device Bound Session Credentials (W3C webappsec-dbsc;
// security model S85): only ES256/RS256, typ dbsc+jwt, a public key, a valid signature.

const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url')

async function refused(p: Promise<unknown>, reason: RegExp): Promise<void> {
  await expect(p).rejects.toThrow(DbscProofError)
  await expect(p).rejects.toThrow(reason)
}

describe('registration proofs', () => {
  it('accepts an ES256 proof signed by the key in its header and returns the public key and its thumbprint', async () => {
    const key = await deviceKey('ES256')
    const r = await verifyRegistrationProof(await proof(key, { jti: 'c1', authorization: 'a1' }, { withJwk: true }))
    expect(r).toMatchObject({ alg: 'ES256', jti: 'c1', authorization: 'a1', jwk: { kty: 'EC', crv: 'P-256' } })
    expect(r.thumbprint).toMatch(/^[\w-]{43}$/)
    expect(Object.keys(r.jwk).sort()).toEqual(['crv', 'kty', 'x', 'y'])
  })

  it('accepts RS256 with a 2048-bit key, refuses a 1024-bit one', async () => {
    const ok = await deviceKey('RS256', 2048)
    expect((await verifyRegistrationProof(await proof(ok, { jti: 'c' }, { withJwk: true }))).alg).toBe('RS256')
    const weak = await deviceKey('RS256', 1024)
    await refused(verifyRegistrationProof(await proof(weak, { jti: 'c' }, { withJwk: true })), /RSA key of 1024 bits/)
  })

  it('refuses a proof signed by another key than the one in its header', async () => {
    const key = await deviceKey()
    const other = await deviceKey()
    const jwt = await proof(other, { jti: 'c' }, { header: { jwk: key.publicJwk } })
    await refused(verifyRegistrationProof(jwt), /signature/)
  })

  it('refuses alg none', async () => {
    const key = await deviceKey()
    const jwt = `${b64({ alg: 'none', typ: 'dbsc+jwt', jwk: key.publicJwk })}.${b64({ jti: 'c' })}.`
    await refused(verifyRegistrationProof(jwt), /compact JWS|alg/)
    const withSig = `${b64({ alg: 'none', typ: 'dbsc+jwt', jwk: key.publicJwk })}.${b64({ jti: 'c' })}.AAAA`
    await refused(verifyRegistrationProof(withSig), /alg/)
  })

  it('refuses HS256 keyed with the public key (algorithm confusion)', async () => {
    const key = await deviceKey()
    const input = `${b64({ alg: 'HS256', typ: 'dbsc+jwt', jwk: key.publicJwk })}.${b64({ jti: 'c' })}`
    for (const secret of [JSON.stringify(key.publicJwk), String(key.publicJwk.x)]) {
      const sig = createHmac('sha256', secret).update(input).digest('base64url')
      await refused(verifyRegistrationProof(`${input}.${sig}`), /alg/)
    }
  })

  it('refuses ES256 announced over an RSA key, and RS256 over an EC key', async () => {
    const ec = await deviceKey('ES256')
    const rsa = await deviceKey('RS256')
    await refused(verifyRegistrationProof(await proof(ec, { jti: 'c' }, { header: { alg: 'ES256', jwk: rsa.publicJwk } })), /EC P-256/)
    await refused(verifyRegistrationProof(await proof(rsa, { jti: 'c' }, { header: { jwk: ec.publicJwk } })), /RSA key/)
  })

  it('refuses a key on another curve', async () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' })
    const key = await deviceKey()
    const jwt = await proof(key, { jti: 'c' }, { header: { jwk: await exportJWK(publicKey) } })
    await refused(verifyRegistrationProof(jwt), /P-256/)
  })

  it('refuses a jwk with private members', async () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const priv = await exportJWK(privateKey)
    const key = await deviceKey()
    await refused(verifyRegistrationProof(await proof(key, { jti: 'c' }, { header: { jwk: priv } })), /private member d/)
    await refused(verifyRegistrationProof(await proof(key, { jti: 'c' }, { header: { jwk: { ...key.publicJwk, k: 'AAAA' } } })), /private/)
  })

  it('refuses a wrong or missing typ', async () => {
    const key = await deviceKey()
    await refused(verifyRegistrationProof(await proof(key, { jti: 'c' }, { withJwk: true, header: { typ: 'JWT' } })), /typ/)
    await refused(verifyRegistrationProof(await proof(key, { jti: 'c' }, { withJwk: true, header: { typ: undefined } })), /typ/)
  })

  it('refuses a tampered payload', async () => {
    const key = await deviceKey()
    const [h, , s] = (await proof(key, { jti: 'c1', authorization: 'a' }, { withJwk: true })).split('.')
    await refused(verifyRegistrationProof(`${h}.${b64({ jti: 'c2', authorization: 'a' })}.${s}`), /signature/)
  })

  it('refuses a proof without jti, without jwk, with crit, or too long', async () => {
    const key = await deviceKey()
    await refused(verifyRegistrationProof(await proof(key, { authorization: 'a' }, { withJwk: true })), /jti/)
    await refused(verifyRegistrationProof(await proof(key, { jti: 'c' })), /no jwk/)
    await refused(verifyRegistrationProof(await proof(key, { jti: 'c', pad: 'x'.repeat(9000) }, { withJwk: true })), /too long/)
  })
})

describe('refresh proofs', () => {
  it('accepts a proof signed by the registered key, without jwk', async () => {
    const key = await deviceKey()
    const reg = await verifyRegistrationProof(await proof(key, { jti: 'r' }, { withJwk: true }))
    expect(await verifyRefreshProof(await proof(key, { jti: 'c2' }), reg)).toEqual({ jti: 'c2' })
  })

  it('refuses another key, even when the proof carries that key in its header', async () => {
    const key = await deviceKey()
    const thief = await deviceKey()
    const reg = await verifyRegistrationProof(await proof(key, { jti: 'r' }, { withJwk: true }))
    await refused(verifyRefreshProof(await proof(thief, { jti: 'c' }, { withJwk: true }), reg), /signature/)
  })

  it('refuses an algorithm other than the registered one', async () => {
    const key = await deviceKey('ES256')
    const rsa = await deviceKey('RS256')
    const reg = await verifyRegistrationProof(await proof(key, { jti: 'r' }, { withJwk: true }))
    await refused(verifyRefreshProof(await proof(rsa, { jti: 'c' }), reg), /registered/)
    const input = `${b64({ alg: 'HS256', typ: 'dbsc+jwt' })}.${b64({ jti: 'c' })}`
    const sig = createHmac('sha256', JSON.stringify(reg.jwk)).update(input).digest('base64url')
    await refused(verifyRefreshProof(`${input}.${sig}`, reg), /alg/)
  })
})
