import { randomUUID } from 'node:crypto'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { SessionStore, StoredEntry } from '../../src/session/store.js'

export interface StoreUnderTest {
  store: SessionStore
  cleanup(): Promise<void>
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

function entry(version: number, payload: Buffer, absExp = Date.now() + 60_000): StoredEntry {
  return { version, absExp, payload }
}

/** Every byte value, twice, including `:` (0x3a), the header separator. */
const ALL_BYTES = Buffer.from([...Array.from({ length: 256 }, (_, i) => i), ...Array.from({ length: 256 }, (_, i) => 255 - i)])

/**
 * One behavioural suite for every SessionStore implementation (the oauth2-proxy
 * pattern: `pkg/sessions/tests` runs the same cases against each store).
 */
export function runSessionStoreContract(name: string, make: () => Promise<StoreUnderTest>): void {
  describe(`SessionStore contract: ${name}`, () => {
    let subject: StoreUnderTest
    let store: SessionStore

    beforeEach(async () => {
      subject = await make()
      store = subject.store
    })

    afterEach(async () => {
      await subject.cleanup()
    })

    const sid = () => `sid-${randomUUID()}`
    const read = (id: string, slideMs = 0) => store.readSession(id, { slideMs, now: Date.now() })

    describe('createSession', () => {
      it('creates a new entry and reads it back unchanged', async () => {
        const id = sid()
        const e = entry(1, Buffer.from([1, 2, 3, 0x3a, 4]))
        expect(await store.createSession(id, e, 60_000)).toBe(true)
        const r = await read(id)
        expect(r).not.toBeNull()
        expect(r!.entry.version).toBe(1)
        expect(r!.entry.absExp).toBe(e.absExp)
        expect(Buffer.from(r!.entry.payload).equals(e.payload)).toBe(true)
        expect(r!.ttlMs).toBeGreaterThan(55_000)
        expect(r!.ttlMs).toBeLessThanOrEqual(60_000)
      })

      it('has NX semantics: a second create with the same id returns false and does not overwrite', async () => {
        const id = sid()
        expect(await store.createSession(id, entry(1, Buffer.from('first')), 60_000)).toBe(true)
        expect(await store.createSession(id, entry(9, Buffer.from('second')), 60_000)).toBe(false)
        const r = await read(id)
        expect(r!.entry.version).toBe(1)
        expect(r!.entry.payload.toString()).toBe('first')
      })

      it('keeps sessions apart', async () => {
        const a = sid()
        const b = sid()
        await store.createSession(a, entry(1, Buffer.from('a')), 60_000)
        await store.createSession(b, entry(2, Buffer.from('b')), 60_000)
        expect((await read(a))!.entry.payload.toString()).toBe('a')
        expect((await read(b))!.entry.payload.toString()).toBe('b')
        expect(await read(sid())).toBeNull()
      })

      it('security model S19, S59: the initial TTL is capped at the absolute expiry', async () => {
        const id = sid()
        await store.createSession(id, entry(1, Buffer.from('x'), Date.now() + 2_000), 60_000)
        const r = await read(id)
        expect(r!.ttlMs).toBeGreaterThan(0)
        expect(r!.ttlMs).toBeLessThanOrEqual(2_000)
      })
    })

    describe('readSession', () => {
      it('returns null for an unknown id', async () => {
        expect(await read(sid())).toBeNull()
        expect(await read(sid(), 60_000)).toBeNull()
      })

      it('security model S19: slides the idle TTL to slideMs', async () => {
        const id = sid()
        await store.createSession(id, entry(1, Buffer.from('x')), 1_000)
        const r = await read(id, 30_000)
        expect(r!.ttlMs).toBeGreaterThan(29_000)
        expect(r!.ttlMs).toBeLessThanOrEqual(30_000)
        // The slide is persisted: a non-sliding read sees the longer TTL.
        const again = await read(id)
        expect(again!.ttlMs).toBeGreaterThan(29_000)
        expect(again!.ttlMs).toBeLessThanOrEqual(30_000)
      })

      it('security model S19: the slide is capped at absExp - now', async () => {
        const id = sid()
        const absExp = Date.now() + 3_000
        await store.createSession(id, entry(1, Buffer.from('x'), absExp), 1_000)
        const now = Date.now()
        const r = await store.readSession(id, { slideMs: 60_000, now })
        expect(r!.ttlMs).toBeGreaterThan(0)
        expect(r!.ttlMs).toBeLessThanOrEqual(absExp - now)
        expect(r!.ttlMs).toBeGreaterThan(absExp - now - 500)
      })

      it('with slideMs 0 the TTL does not grow', async () => {
        const id = sid()
        await store.createSession(id, entry(1, Buffer.from('x')), 5_000)
        const first = await read(id, 0)
        expect(first!.ttlMs).toBeGreaterThan(4_000)
        expect(first!.ttlMs).toBeLessThanOrEqual(5_000)
        await sleep(50)
        const second = await read(id, 0)
        expect(second!.ttlMs).toBeLessThanOrEqual(first!.ttlMs)
        expect(second!.ttlMs).toBeGreaterThan(0)
      })

      it('security model S19: an entry past absExp reads as null and is deleted', async () => {
        const id = sid()
        const e = entry(1, Buffer.from('x'))
        await store.createSession(id, e, 60_000)
        expect(await store.readSession(id, { slideMs: 60_000, now: e.absExp + 1 })).toBeNull()
        // Gone for good, not only hidden from that read.
        expect(await read(id)).toBeNull()
        expect(await store.deleteSession(id)).toBe(false)
        expect(await store.createSession(id, entry(2, Buffer.from('y')), 60_000)).toBe(true)
      })

      it('security model S19: an entry whose absExp passed in real time reads as null, however it was slid', async () => {
        const id = sid()
        await store.createSession(id, entry(1, Buffer.from('x'), Date.now() + 250), 60_000)
        expect(await read(id, 60_000)).not.toBeNull()
        await sleep(400)
        expect(await read(id, 60_000)).toBeNull()
      })

      it('security model S19: an entry whose idle TTL passed reads as null', async () => {
        const id = sid()
        await store.createSession(id, entry(1, Buffer.from('x')), 150)
        await sleep(300)
        expect(await read(id)).toBeNull()
        expect(await read(id, 60_000)).toBeNull()
      })
    })

    describe('replaceSession', () => {
      it('replaces the entry when the expected version matches, without extending the TTL', async () => {
        const id = sid()
        await store.createSession(id, entry(1, Buffer.from('v1')), 5_000)
        const next = entry(2, Buffer.from('v2'))
        expect(await store.replaceSession(id, 1, next, 60_000)).toBe('ok')
        const r = await read(id)
        expect(r!.entry.version).toBe(2)
        expect(r!.entry.absExp).toBe(next.absExp)
        expect(r!.entry.payload.toString()).toBe('v2')
        expect(r!.ttlMs).toBeGreaterThan(0)
        expect(r!.ttlMs).toBeLessThanOrEqual(5_000)
      })

      it('security model S59: caps the TTL at maxTtlMs', async () => {
        const id = sid()
        await store.createSession(id, entry(1, Buffer.from('v1')), 60_000)
        expect(await store.replaceSession(id, 1, entry(2, Buffer.from('v2')), 1_000)).toBe('ok')
        const r = await read(id)
        expect(r!.entry.version).toBe(2)
        expect(r!.ttlMs).toBeGreaterThan(0)
        expect(r!.ttlMs).toBeLessThanOrEqual(1_000)
      })

      it('security model S34: a stale version is a conflict and leaves the entry unchanged', async () => {
        const id = sid()
        await store.createSession(id, entry(1, Buffer.from('v1')), 60_000)
        expect(await store.replaceSession(id, 1, entry(2, Buffer.from('v2')), 60_000)).toBe('ok')
        expect(await store.replaceSession(id, 1, entry(3, Buffer.from('stale')), 60_000)).toBe('conflict')
        expect(await store.replaceSession(id, 7, entry(8, Buffer.from('future')), 60_000)).toBe('conflict')
        const r = await read(id)
        expect(r!.entry.version).toBe(2)
        expect(r!.entry.payload.toString()).toBe('v2')
      })

      it('does not confuse versions that share a prefix (1 vs 10)', async () => {
        const id = sid()
        await store.createSession(id, entry(10, Buffer.from('v10')), 60_000)
        expect(await store.replaceSession(id, 1, entry(2, Buffer.from('x')), 60_000)).toBe('conflict')
        expect(await store.replaceSession(id, 10, entry(11, Buffer.from('v11')), 60_000)).toBe('ok')
        expect((await read(id))!.entry.version).toBe(11)
      })

      it("is 'missing' for an unknown or expired sid and creates nothing", async () => {
        const id = sid()
        expect(await store.replaceSession(id, 1, entry(2, Buffer.from('x')), 60_000)).toBe('missing')
        expect(await read(id)).toBeNull()
        const short = sid()
        await store.createSession(short, entry(1, Buffer.from('x')), 100)
        await sleep(250)
        expect(await store.replaceSession(short, 1, entry(2, Buffer.from('y')), 60_000)).toBe('missing')
        expect(await read(short)).toBeNull()
      })
    })

    describe('deleteSession', () => {
      it('returns true for an existing entry, then false', async () => {
        const id = sid()
        await store.createSession(id, entry(1, Buffer.from('x')), 60_000)
        expect(await store.deleteSession(id)).toBe(true)
        expect(await read(id)).toBeNull()
        expect(await store.deleteSession(id)).toBe(false)
        expect(await store.deleteSession(sid())).toBe(false)
      })
    })

    describe('transactions', () => {
      it('security model S2: put then take returns the bytes once; a second take is null', async () => {
        const id = `tx-${randomUUID()}`
        const payload = Buffer.from('{"state":"s","nonce":"n"}')
        await store.putTransaction(id, payload, 60_000)
        const first = await store.takeTransaction(id)
        expect(first).not.toBeNull()
        expect(Buffer.from(first!).equals(payload)).toBe(true)
        expect(await store.takeTransaction(id)).toBeNull()
      })

      it('take of an unknown id is null', async () => {
        expect(await store.takeTransaction(`tx-${randomUUID()}`)).toBeNull()
      })

      it('security model S2: a transaction past its ttl is null', async () => {
        const id = `tx-${randomUUID()}`
        await store.putTransaction(id, Buffer.from('x'), 100)
        await sleep(250)
        expect(await store.takeTransaction(id)).toBeNull()
      })

      it('security model S2: concurrent takes hand the transaction out once', async () => {
        const id = `tx-${randomUUID()}`
        await store.putTransaction(id, Buffer.from('once'), 60_000)
        const results = await Promise.all(Array.from({ length: 5 }, () => store.takeTransaction(id)))
        expect(results.filter((r) => r !== null)).toHaveLength(1)
      })

      it('transactions and sessions do not share a namespace', async () => {
        const id = `shared-${randomUUID()}`
        await store.putTransaction(id, Buffer.from('tx'), 60_000)
        expect(await read(id)).toBeNull()
        expect(await store.createSession(id, entry(1, Buffer.from('session')), 60_000)).toBe(true)
        expect((await store.takeTransaction(id))!.toString()).toBe('tx')
        expect((await read(id))!.entry.payload.toString()).toBe('session')
      })
    })

    it('ping resolves', async () => {
      await expect(store.ping()).resolves.toBeUndefined()
    })

    it('binary payloads with every byte value survive sessions, replaces and transactions', async () => {
      const id = sid()
      await store.createSession(id, entry(1, ALL_BYTES), 60_000)
      expect(Buffer.from((await read(id))!.entry.payload).equals(ALL_BYTES)).toBe(true)
      const reversed = Buffer.from(ALL_BYTES).reverse()
      expect(await store.replaceSession(id, 1, entry(2, reversed), 60_000)).toBe('ok')
      expect(Buffer.from((await read(id, 60_000))!.entry.payload).equals(reversed)).toBe(true)

      const tx = `tx-${randomUUID()}`
      await store.putTransaction(tx, ALL_BYTES, 60_000)
      expect(Buffer.from((await store.takeTransaction(tx))!).equals(ALL_BYTES)).toBe(true)
    })

    it('an empty payload survives', async () => {
      const id = sid()
      await store.createSession(id, entry(1, Buffer.alloc(0)), 60_000)
      const r = await read(id)
      expect(r).not.toBeNull()
      expect(r!.entry.payload.length).toBe(0)
    })
  })
}
