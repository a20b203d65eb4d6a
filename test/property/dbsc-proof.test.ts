// Property tests of device-key proof verification (security model S85): any
// input is refused with a DbscProofError (never another exception), and a
// signed proof whose header or payload is changed in any way is refused.
// Replay a failure with FC_SEED=<seed> FC_PATH=<path> npx vitest run test/property.
import fc from 'fast-check'
import { beforeAll, describe, expect, it } from 'vitest'
import { DbscProofError, verifyRefreshProof, verifyRegistrationProof, type RegistrationProof } from '../../src/session/dbsc-proof.js'
import { deviceKey, proof, type DeviceKey } from '../helpers/dbsc-client.js'
import { runs } from '../helpers/fast-check.js'

const replay = {
  ...(process.env.FC_SEED ? { seed: Number(process.env.FC_SEED) } : {}),
  ...(process.env.FC_PATH ? { path: process.env.FC_PATH } : {}),
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url')

async function refusal(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (err: unknown) => err,
  )
}

describe('device-key proofs', () => {
  let key: DeviceKey
  let reg: RegistrationProof
  let valid: string
  beforeAll(async () => {
    key = await deviceKey()
    valid = await proof(key, { jti: 'challenge', authorization: 'auth' }, { withJwk: true })
    reg = await verifyRegistrationProof(valid)
  })

  it('arbitrary strings and JWS-shaped junk are refused with DbscProofError only', async () => {
    const jwsish = fc
      .tuple(fc.json(), fc.json(), fc.base64String())
      .map(
        ([h, p, s]) =>
          `${Buffer.from(h).toString('base64url')}.${Buffer.from(p).toString('base64url')}.${s.replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_')}`,
      )
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string(), jwsish), async (input) => {
        for (const err of [await refusal(verifyRegistrationProof(input)), await refusal(verifyRefreshProof(input, reg))]) {
          expect(err).toBeInstanceOf(DbscProofError)
        }
      }),
      { numRuns: runs(500), ...replay },
    )
  })

  it('a signed proof with any other header or payload is refused', async () => {
    const [h, , s] = valid.split('.') as [string, string, string]
    const header = JSON.parse(Buffer.from(h, 'base64url').toString()) as Record<string, unknown>
    const change = fc.oneof(
      fc.record({ part: fc.constant('payload' as const), value: fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue()) }),
      fc.record({
        part: fc.constant('header' as const),
        value: fc.record({ name: fc.constantFrom('alg', 'typ', 'kid', 'x5u', 'extra'), v: fc.jsonValue() }),
      }),
    )
    await fc.assert(
      fc.asyncProperty(change, async (c) => {
        let jwt: string
        if (c.part === 'payload') {
          fc.pre(JSON.stringify(c.value) !== JSON.stringify({ jti: 'challenge', authorization: 'auth' }))
          jwt = `${h}.${b64(c.value)}.${s}`
        } else {
          fc.pre(JSON.stringify(header[c.value.name]) !== JSON.stringify(c.value.v))
          jwt = `${b64({ ...header, [c.value.name]: c.value.v })}.${valid.split('.')[1]}.${s}`
        }
        expect(await refusal(verifyRegistrationProof(jwt))).toBeInstanceOf(DbscProofError)
        expect(await refusal(verifyRefreshProof(jwt, reg))).toBeInstanceOf(DbscProofError)
      }),
      { numRuns: runs(500), ...replay },
    )
  })
})
