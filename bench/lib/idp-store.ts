// An unbounded in-memory storage adapter for the dev IdP (oidc-provider), for
// benchmarks that log in many users.
//
// Why: oidc-provider's default memory adapter keeps at most 1,000 entries in
// an LRU shared by every Provider in the process, and one login uses about
// seven (interactions, session, grant, code, access and refresh tokens). Past
// ~150 logins it silently evicts the grants and refresh tokens of the oldest
// sessions, whose next refresh then fails with `invalid_grant` ("grant request
// is invalid"): a limit of the dev IdP, not tokenward behaviour. This adapter
// keeps everything until it expires. Same semantics otherwise (the interface of
// oidc-provider's example/my_adapter.js): grant-wide revocation, consumption
// marks for refresh-token reuse detection, lookups by uid and user code.

import type { Adapter, AdapterFactory, AdapterPayload } from 'oidc-provider'

/** Models whose tokens belong to a grant and are revoked with it. */
const GRANTABLE = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
  'PreAuthorizedCode',
])

export function unboundedAdapter(): AdapterFactory {
  const entries = new Map<string, { payload: AdapterPayload; expiresAt: number }>()
  const sessionByUid = new Map<string, string>()
  const keyByUserCode = new Map<string, string>()
  const keysByGrant = new Map<string, Set<string>>()

  const read = (key: string): AdapterPayload | undefined => {
    const e = entries.get(key)
    if (!e) return undefined
    if (e.expiresAt <= Date.now()) {
      entries.delete(key)
      return undefined
    }
    return e.payload
  }

  return (model: string): Adapter => {
    const key = (id: string) => `${model}:${id}`
    return {
      async upsert(id, payload, expiresIn) {
        const k = key(id)
        entries.set(k, { payload, expiresAt: typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Number.POSITIVE_INFINITY })
        if (model === 'Session' && typeof payload.uid === 'string') sessionByUid.set(payload.uid, id)
        if (typeof payload.userCode === 'string') keyByUserCode.set(payload.userCode, k)
        if (GRANTABLE.has(model) && typeof payload.grantId === 'string') {
          let keys = keysByGrant.get(payload.grantId)
          if (!keys) keysByGrant.set(payload.grantId, (keys = new Set()))
          keys.add(k)
        }
      },
      async find(id) {
        return read(key(id))
      },
      async findByUid(uid) {
        const id = sessionByUid.get(uid)
        return id === undefined ? undefined : read(`Session:${id}`)
      },
      async findByUserCode(userCode) {
        const k = keyByUserCode.get(userCode)
        return k === undefined ? undefined : read(k)
      },
      async consume(id) {
        const payload = read(key(id))
        if (payload) payload.consumed = Math.floor(Date.now() / 1000)
      },
      async destroy(id) {
        const k = key(id)
        const payload = entries.get(k)?.payload
        entries.delete(k)
        if (payload && typeof payload.uid === 'string' && sessionByUid.get(payload.uid) === id) sessionByUid.delete(payload.uid)
        if (payload && typeof payload.grantId === 'string') keysByGrant.get(payload.grantId)?.delete(k)
      },
      async revokeByGrantId(grantId) {
        for (const k of keysByGrant.get(grantId) ?? []) entries.delete(k)
        keysByGrant.delete(grantId)
      },
    }
  }
}
