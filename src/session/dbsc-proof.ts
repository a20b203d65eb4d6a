// jose: JWS verification (RFC 7515) and JWK thumbprints (RFC 7638), so no
// signature or key parsing code of our own.
import { calculateJwkThumbprint, compactVerify, decodeProtectedHeader, importJWK, type JWK } from 'jose'

/**
 * Verification of Device Bound Session Credentials proofs (W3C webappsec-dbsc,
 * "Secure-Session-Response"): a compact JWS with header `typ: dbsc+jwt`, signed
 * by the browser's device key. At registration the header carries the public
 * key (`jwk`); at refresh it is verified with the key registered for the
 * session. Only ES256 (P-256) and RS256 (RSA, at least 2048 bits): `none`,
 * HMAC and anything else are refused before any key is used (security model S85).
 */

export const DBSC_ALGORITHMS = ['ES256', 'RS256'] as const
export type DbscAlgorithm = (typeof DBSC_ALGORITHMS)[number]

/** A device's public key, with only the members that define it (RFC 7638 §3.2). */
export type DbscPublicJwk = { kty: 'EC'; crv: 'P-256'; x: string; y: string } | { kty: 'RSA'; n: string; e: string }

export class DbscProofError extends Error {
  constructor(reason: string) {
    super(reason)
    this.name = 'DbscProofError'
  }
}

export interface RegistrationProof {
  readonly alg: DbscAlgorithm
  readonly jwk: DbscPublicJwk
  /** RFC 7638 SHA-256 thumbprint of `jwk`, base64url. */
  readonly thumbprint: string
  /** The challenge the browser signed. */
  readonly jti: string
  readonly authorization: string | undefined
}

export interface RefreshProof {
  readonly jti: string
}

const MAX_PROOF_LENGTH = 8192
const RSA_MIN_BITS = 2048
const RSA_MAX_BITS = 8192
/** Members of a private or symmetric JWK (RFC 7518 §6.2.2, §6.3.2, §6.4.1). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']

function fail(reason: string): never {
  throw new DbscProofError(reason)
}

function b64urlBytes(value: unknown, what: string): Buffer {
  if (typeof value !== 'string' || !/^[A-Za-z0-9_-]+$/.test(value)) fail(`${what} is not base64url`)
  return Buffer.from(value, 'base64url')
}

/** The header, checked for shape before any cryptography. */
function header(jwt: string): Record<string, unknown> {
  if (typeof jwt !== 'string' || jwt.length > MAX_PROOF_LENGTH) fail('proof missing or too long')
  if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(jwt)) fail('proof is not a compact JWS')
  let h: Record<string, unknown>
  try {
    h = decodeProtectedHeader(jwt) as Record<string, unknown>
  } catch {
    fail('proof header is not JSON')
  }
  if (h.typ !== 'dbsc+jwt') fail('proof typ is not dbsc+jwt')
  if (typeof h.alg !== 'string' || !(DBSC_ALGORITHMS as readonly string[]).includes(h.alg)) fail('proof alg is not ES256 or RS256')
  // jose refuses unknown `crit` extensions itself; a proof has no use for any.
  if (h.crit !== undefined) fail('proof header has crit')
  return h
}

/** The public key in a registration proof's header: EC P-256 for ES256, RSA ≥ 2048 bits for RS256, never a private member. */
export function publicJwk(value: unknown, alg: DbscAlgorithm): DbscPublicJwk {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('proof header has no jwk')
  const jwk = value as Record<string, unknown>
  for (const m of PRIVATE_MEMBERS) if (m in jwk) fail(`jwk has the private member ${m}`)
  if (alg === 'ES256') {
    if (jwk.kty !== 'EC' || jwk.crv !== 'P-256') fail('ES256 needs an EC P-256 key')
    if (b64urlBytes(jwk.x, 'jwk x').length !== 32 || b64urlBytes(jwk.y, 'jwk y').length !== 32) fail('EC key coordinates are not 32 bytes')
    return { kty: 'EC', crv: 'P-256', x: jwk.x as string, y: jwk.y as string }
  }
  if (jwk.kty !== 'RSA') fail('RS256 needs an RSA key')
  const n = b64urlBytes(jwk.n, 'jwk n')
  b64urlBytes(jwk.e, 'jwk e')
  const bits = n.length * 8 - (n[0] === undefined ? 8 : Math.clz32(n[0]) - 24)
  if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS) fail(`RSA key of ${bits} bits (needs ${RSA_MIN_BITS} to ${RSA_MAX_BITS})`)
  return { kty: 'RSA', n: jwk.n as string, e: jwk.e as string }
}

/** Verifies the signature with `jwk` under exactly `alg` and returns the payload object. */
async function verified(jwt: string, jwk: DbscPublicJwk, alg: DbscAlgorithm): Promise<Record<string, unknown>> {
  let payload: unknown
  try {
    const key = await importJWK(jwk as JWK, alg)
    const result = await compactVerify(jwt, key, { algorithms: [alg] })
    payload = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(result.payload))
  } catch {
    fail('proof signature does not verify')
  }
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) fail('proof payload is not a JSON object')
  return payload as Record<string, unknown>
}

function jti(payload: Record<string, unknown>): string {
  const v = payload.jti
  if (typeof v !== 'string' || v.length === 0 || v.length > 256) fail('proof without a challenge (jti)')
  return v
}

/**
 * A registration proof: signed by the key in its own header. Whether its `jti`
 * is a live challenge of this session, and its `authorization` this session's,
 * is the caller's check (it needs the store).
 */
export async function verifyRegistrationProof(jwt: string): Promise<RegistrationProof> {
  const h = header(jwt)
  const alg = h.alg as DbscAlgorithm
  const jwk = publicJwk(h.jwk, alg)
  const payload = await verified(jwt, jwk, alg)
  const authorization = payload.authorization
  if (authorization !== undefined && typeof authorization !== 'string') fail('proof authorization is not a string')
  return { alg, jwk, thumbprint: await calculateJwkThumbprint(jwk as JWK, 'sha256'), jti: jti(payload), authorization }
}

/** A refresh proof: signed by the session's registered key, with the registered algorithm; a `jwk` in the header is ignored. */
export async function verifyRefreshProof(jwt: string, registered: { jwk: DbscPublicJwk; alg: DbscAlgorithm }): Promise<RefreshProof> {
  const h = header(jwt)
  if (h.alg !== registered.alg) fail('proof alg is not the registered one')
  return { jti: jti(await verified(jwt, registered.jwk, registered.alg)) }
}
