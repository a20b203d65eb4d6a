// SessionManager's memory of sessions it read (BFF_SESSION_CACHE_MS), on the
// real in-memory store: the rules that keep it from ever answering with a
// session that changed. The cross-instance side (CLIENT TRACKING) is in
// test/integration/session-cache.test.ts.

import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { Keyring } from '../../src/crypto/keyring.js'
import { SessionManager, type SessionData } from '../../src/session/sessions.js'
import { MemoryStore } from '../../src/store/memory/store.js'
import type { ReadOptions, SessionRecords } from '../../src/store/types.js'

/** The memory store's session entries, counting reads, whose answers can be held back. */
class CountingStore {
  reads = 0
  #hold: Promise<void> | undefined
  readonly #inner: MemoryStore
  readonly records: SessionRecords
  readonly indexes: MemoryStore['indexes']

  constructor(options: { now: () => number }) {
    this.#inner = new MemoryStore(options)
    this.indexes = this.#inner.indexes
    const inner = this.#inner.records
    this.records = {
      create: (sid, entry, ttlMs) => inner.create(sid, entry, ttlMs),
      read: async (sid: string, o: ReadOptions) => {
        this.reads++
        const r = await inner.read(sid, o)
        if (this.#hold) await this.#hold
        return r
      },
      replace: (sid, expected, entry, maxTtlMs) => inner.replace(sid, expected, entry, maxTtlMs),
      delete: (sid) => inner.delete(sid),
      count: () => inner.count(),
    }
  }

  /** Runs `start`, then `meanwhile` while the reads it began are still out, then lets them answer. */
  async whileReadsAreOut<T>(start: () => Promise<T>, meanwhile: () => void): Promise<T> {
    let release!: () => void
    this.#hold = new Promise<void>((r) => (release = r))
    const result = start()
    await new Promise((r) => setImmediate(r))
    meanwhile()
    this.#hold = undefined
    release()
    return result
  }
}

function data(): SessionData {
  return { sub: 'alice', iss: 'https://idp', aud: ['c'], claims: {}, createdAt: Date.now(), accessToken: 'at', tokenType: 'Bearer' }
}

function setup(cacheMs = 1000) {
  let t = Date.now()
  const store = new CountingStore({ now: () => t })
  const sessions = new SessionManager({
    store,
    keyring: new Keyring([{ id: 'k1', key: randomBytes(32) }]),
    idleTimeoutMs: 60_000,
    maxAgeMs: 3_600_000,
    cacheMs,
    now: () => t,
  })
  return { store, sessions, now: () => t, advance: (ms: number) => (t += ms) }
}

describe('SessionManager session cache', () => {
  it('serves nothing from memory until enableCache(), then within cacheMs of a read only', async () => {
    const { store, sessions, advance } = setup()
    const { handle } = await sessions.create(data())
    await sessions.load(handle, { slide: true })
    await sessions.load(handle, { slide: true })
    expect(store.reads).toBe(2)
    sessions.enableCache()
    await sessions.load(handle, { slide: true }) // the first read after enabling fills it
    await sessions.load(handle, { slide: true })
    await sessions.load(handle, { slide: true })
    expect(store.reads).toBe(3)
    advance(999)
    await sessions.load(handle, { slide: true })
    expect(store.reads).toBe(3)
    advance(2)
    await sessions.load(handle, { slide: true })
    expect(store.reads).toBe(4)
  })

  it('a newly created session is not served from memory (Redis tracks only keys that were read)', async () => {
    const { store, sessions } = setup()
    sessions.enableCache()
    const { handle } = await sessions.create(data())
    await sessions.load(handle, { slide: true })
    expect(store.reads).toBe(1)
  })

  it('invalidate(sid) and invalidate(null) make the next request read', async () => {
    const { store, sessions } = setup()
    sessions.enableCache()
    const { handle, session } = await sessions.create(data())
    await sessions.load(handle, { slide: true })
    sessions.invalidate(session.sid)
    await sessions.load(handle, { slide: true })
    await sessions.load(handle, { slide: true })
    expect(store.reads).toBe(2)
    sessions.invalidate(null)
    await sessions.load(handle, { slide: true })
    expect(store.reads).toBe(3)
  })

  it('a read that overlapped an invalidation is used once but not remembered', async () => {
    const { store, sessions } = setup()
    sessions.enableCache()
    const { handle, session } = await sessions.create(data())
    // The announcement of a change arrives while the read's answer is on its way.
    const read = await store.whileReadsAreOut(
      () => sessions.load(handle, { slide: true }),
      () => sessions.invalidate(session.sid),
    )
    expect(read).not.toBeNull()
    await sessions.load(handle, { slide: true })
    expect(store.reads).toBe(2)
  })

  it('disableCache() (subscription or tracking lost) stops answering from memory at once, and a read that overlapped it is not remembered', async () => {
    const { store, sessions } = setup()
    sessions.enableCache()
    const { handle } = await sessions.create(data())
    await sessions.load(handle, { slide: true })
    sessions.disableCache()
    await sessions.load(handle, { slide: true })
    expect(store.reads).toBe(2)
    // Up again while a read that started "down" is in flight.
    await store.whileReadsAreOut(
      () => sessions.load(handle, { slide: true }),
      () => sessions.enableCache(),
    )
    await sessions.load(handle, { slide: true })
    expect(store.reads).toBe(4)
  })

  it('what was read before the cache went off is not served when it comes back (changes meanwhile were not announced)', async () => {
    const { store, sessions } = setup()
    sessions.enableCache()
    const { handle } = await sessions.create(data())
    await sessions.load(handle, { slide: true })
    await sessions.load(handle, { slide: true })
    expect(store.reads).toBe(1)
    sessions.disableCache()
    sessions.enableCache()
    await sessions.load(handle, { slide: true })
    expect(store.reads).toBe(2)
  })

  it('concurrent requests share one read, unless an announcement overtook it', async () => {
    const { store, sessions } = setup()
    sessions.enableCache()
    const { handle, session } = await sessions.create(data())
    const all = await Promise.all([1, 2, 3, 4, 5].map(() => sessions.load(handle, { slide: true })))
    expect(all.every((s) => s?.sid === session.sid)).toBe(true)
    expect(store.reads).toBe(1)
    sessions.invalidate(session.sid)
    // A change is announced while the first request's read is out.
    await store.whileReadsAreOut(
      () => Promise.all([sessions.load(handle, { slide: true }), sessions.load(handle, { slide: true })]),
      () => sessions.invalidate(session.sid),
    )
    expect(store.reads).toBe(3) // the second request read for itself
  })

  it('with the cache off, every request reads for itself', async () => {
    const { store, sessions } = setup()
    const { handle } = await sessions.create(data())
    await Promise.all([1, 2, 3].map(() => sessions.load(handle, { slide: true })))
    expect(store.reads).toBe(3)
  })

  it('never past the idle or absolute expiry it knows of', async () => {
    const { store, sessions, now, advance } = setup(10_000)
    sessions.enableCache()
    const { handle, session } = await sessions.create(data())
    const s = await sessions.load(handle, { slide: false })
    expect(s!.idleExp - now()).toBeLessThanOrEqual(60_000)
    advance(9_000)
    await sessions.load(handle, { slide: false })
    expect(store.reads).toBe(1)
    // The unslid idle timeout (60 s from creation) ends before the 10 s window of a late read.
    advance(48_000)
    await sessions.load(handle, { slide: false }) // read: 3 s of idle time left
    advance(3_001)
    expect(await sessions.load(handle, { slide: false })).toBeNull()
    expect(store.reads).toBe(3)
    expect(session.sid).toBeTruthy()
  })

  it('its own compare-and-set write is remembered; a conflicting one is forgotten', async () => {
    const { store, sessions } = setup()
    sessions.enableCache()
    const { handle } = await sessions.create(data())
    const s = (await sessions.load(handle, { slide: true }))!
    const { result, session: updated } = await sessions.replace(s, { ...s.data, accessToken: 'at2' })
    expect(result).toBe('ok')
    expect((await sessions.load(handle, { slide: true }))!.data.accessToken).toBe('at2')
    expect(store.reads).toBe(1)
    const stale = await sessions.replace(s, { ...s.data, accessToken: 'at3' })
    expect(stale.result).toBe('conflict')
    expect((await sessions.load(handle, { slide: true }))!.version).toBe(updated.version)
    expect(store.reads).toBe(2)
  })
})
