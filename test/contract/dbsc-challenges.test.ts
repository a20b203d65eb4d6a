import { expect, it } from 'vitest'
import { DbscChallenges } from '../../src/session/dbsc.js'
import { eachStore, newSid, sleep } from './harness.js'

// Device-binding challenges (src/session/dbsc.ts) on the store's single-use
// records: one instance issues, any instance consumes, once, for the session
// and purpose it was issued to (W3C webappsec-dbsc; security model S85).
eachStore('DbscChallenges', (subject) => {
  const challenges = () => new DbscChallenges(subject().store.transactions)

  it('a challenge is consumed once', async () => {
    const sid = newSid()
    const c = await challenges().issue(sid, 'refresh', 60_000)
    expect(await challenges().consume(c, sid, 'refresh')).toBe(true)
    expect(await challenges().consume(c, sid, 'refresh')).toBe(false)
  })

  it("another session's challenge, or another purpose's, is refused and used up", async () => {
    const sid = newSid()
    const c = await challenges().issue(sid, 'refresh', 60_000)
    expect(await challenges().consume(c, newSid(), 'refresh')).toBe(false)
    expect(await challenges().consume(c, sid, 'refresh')).toBe(false)
    const r = await challenges().issue(sid, 'register', 60_000, 'auth')
    expect(await challenges().consume(r, sid, 'refresh')).toBe(false)
  })

  it('registration needs the authorization it was issued with', async () => {
    const sid = newSid()
    const a = await challenges().issue(sid, 'register', 60_000, 'auth-1')
    expect(await challenges().consume(a, sid, 'register', 'auth-2')).toBe(false)
    const b = await challenges().issue(sid, 'register', 60_000, 'auth-1')
    expect(await challenges().consume(b, sid, 'register')).toBe(false)
    const c = await challenges().issue(sid, 'register', 60_000, 'auth-1')
    expect(await challenges().consume(c, sid, 'register', 'auth-1')).toBe(true)
  })

  it('an expired challenge is refused', async () => {
    const sid = newSid()
    const c = await challenges().issue(sid, 'refresh', 50)
    await sleep(120)
    expect(await challenges().consume(c, sid, 'refresh')).toBe(false)
  })

  it('unknown challenges are refused, and only the hash is the key', async () => {
    expect(await challenges().consume('nope', newSid(), 'refresh')).toBe(false)
    expect(await challenges().consume('', newSid(), 'refresh')).toBe(false)
    expect(DbscChallenges.key('abc')).not.toContain('abc')
  })

  it('another instance consumes what one issued; another namespace does not', async () => {
    const sid = newSid()
    const c = await challenges().issue(sid, 'refresh', 60_000)
    const stranger = new DbscChallenges((await subject().stranger()).transactions)
    expect(await stranger.consume(c, sid, 'refresh')).toBe(false)
    const peer = new DbscChallenges((await subject().peer()).transactions)
    expect(await peer.consume(c, sid, 'refresh')).toBe(true)
  })

  it('concurrent consumers: exactly one wins', async () => {
    const sid = newSid()
    const c = await challenges().issue(sid, 'refresh', 60_000)
    const results = await Promise.all(Array.from({ length: 8 }, () => challenges().consume(c, sid, 'refresh')))
    expect(results.filter(Boolean)).toHaveLength(1)
  })
})
