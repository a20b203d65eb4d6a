// Sessions written by the previous release kept exchanged tokens (RFC 8693)
// in audienceTokens under `x:` and the exchange key; they must keep working.

import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { Keyring } from '../../src/crypto/keyring.js'
import { upgradeSessionData, type SessionData } from '../../src/session/data.js'
import { SessionManager } from '../../src/session/sessions.js'
import { MemoryStore } from '../../src/store/memory/store.js'
import { exchangeKey } from '../../src/tokens/exchange.js'

const base: SessionData = { sub: 'alice', iss: 'https://idp', aud: ['c'], claims: {}, createdAt: 1, accessToken: 'at', tokenType: 'Bearer' }
const target = { audience: 'https://api-b', resource: undefined, scopes: ['b.write', 'b.read'] }
const kept = (accessToken: string) => ({ accessToken, tokenType: 'Bearer', expiresAt: 9_999_999_999_999 })
const audienceKey = 'https://orders.example orders:read'

describe('upgradeSessionData', () => {
  it('moves the previous release’s exchanged tokens to their own map and leaves audience tokens alone', () => {
    const old = { ...base, audienceTokens: { [audienceKey]: kept('aud'), [exchangeKey(target)]: kept('exchanged') } }
    const now = upgradeSessionData(old)
    expect(now.audienceTokens).toEqual({ [audienceKey]: kept('aud') })
    expect(now.exchangedTokens).toEqual({ [exchangeKey(target)]: kept('exchanged') })
  })

  it('data in the current shape is returned as it is', () => {
    const current = { ...base, audienceTokens: { [audienceKey]: kept('aud') }, exchangedTokens: { [exchangeKey(target)]: kept('x') } }
    expect(upgradeSessionData(current)).toBe(current)
    expect(upgradeSessionData(base)).toBe(base)
  })

  it('an audience whose resource starts with x: is no exchanged token (audience keys always hold a space)', () => {
    const odd = { ...base, audienceTokens: { 'x:urn:thing orders:read': kept('aud') } }
    expect(upgradeSessionData(odd)).toBe(odd)
  })

  it('where both shapes hold the same target, the current one wins', () => {
    const both = {
      ...base,
      audienceTokens: { [exchangeKey(target)]: kept('old') },
      exchangedTokens: { [exchangeKey(target)]: kept('new') },
    }
    expect(upgradeSessionData(both).exchangedTokens).toEqual({ [exchangeKey(target)]: kept('new') })
  })
})

describe('a session written by the previous release', () => {
  it('is read in the current shape, and written back in it', async () => {
    const store = new MemoryStore()
    try {
      const keyring = new Keyring([{ id: 'k1', key: randomBytes(32) }])
      const manager = () => new SessionManager({ store, keyring, idleTimeoutMs: 60_000, maxAgeMs: 3_600_000 })
      // The previous release's instance wrote it (the entry's sealed JSON has the old shape) ...
      const old = {
        ...base,
        createdAt: Date.now(),
        audienceTokens: { [audienceKey]: kept('aud'), [exchangeKey(target)]: kept('exchanged') },
      }
      const { session } = await manager().create(old)
      // ... and this release's instance reads it.
      const sessions = manager()
      const read = (await sessions.loadBySid(session.sid, { slide: false }))!
      expect(read.data.exchangedTokens?.[exchangeKey(target)]?.accessToken).toBe('exchanged')
      expect(read.data.audienceTokens).toEqual({ [audienceKey]: kept('aud') })
      const { result } = await sessions.replace(read, { ...read.data, accessToken: 'at-2' })
      expect(result).toBe('ok')
      const again = (await sessions.loadBySid(session.sid, { slide: false }))!
      expect(again.data.exchangedTokens?.[exchangeKey(target)]?.accessToken).toBe('exchanged')
      expect(Object.keys(again.data.audienceTokens ?? {})).toEqual([audienceKey])
    } finally {
      await store.close()
    }
  })
})
