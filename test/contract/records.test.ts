import { describe, expect, it } from 'vitest'
import { ALL_BYTES, eachStore, entry, newSid, sleep } from './harness.js'

// SessionRecords (src/store/types.ts): the encrypted session entries.
eachStore('SessionRecords', (subject) => {
  const store = () => subject().store
  const read = (id: string, slideMs = 0) => store().records.read(id, { slideMs, now: Date.now() })

  describe('create', () => {
    it('creates a new entry and reads it back unchanged', async () => {
      const id = newSid()
      const e = entry(1, Buffer.from([1, 2, 3, 0x3a, 4]))
      expect(await store().records.create(id, e, 60_000)).toBe(true)
      const r = await read(id)
      expect(r).not.toBeNull()
      expect(r!.entry.version).toBe(1)
      expect(r!.entry.absExp).toBe(e.absExp)
      expect(Buffer.from(r!.entry.payload).equals(e.payload)).toBe(true)
      expect(r!.ttlMs).toBeGreaterThan(55_000)
      expect(r!.ttlMs).toBeLessThanOrEqual(60_000)
    })

    it('has NX semantics: a second create with the same id returns false and does not overwrite', async () => {
      const id = newSid()
      expect(await store().records.create(id, entry(1, Buffer.from('first')), 60_000)).toBe(true)
      expect(await store().records.create(id, entry(9, Buffer.from('second')), 60_000)).toBe(false)
      const r = await read(id)
      expect(r!.entry.version).toBe(1)
      expect(r!.entry.payload.toString()).toBe('first')
    })

    it('keeps sessions apart', async () => {
      const a = newSid()
      const b = newSid()
      await store().records.create(a, entry(1, Buffer.from('a')), 60_000)
      await store().records.create(b, entry(2, Buffer.from('b')), 60_000)
      expect((await read(a))!.entry.payload.toString()).toBe('a')
      expect((await read(b))!.entry.payload.toString()).toBe('b')
      expect(await read(newSid())).toBeNull()
    })

    it('security model S19, S59: the initial TTL is capped at the absolute expiry', async () => {
      const id = newSid()
      await store().records.create(id, entry(1, Buffer.from('x'), Date.now() + 2_000), 60_000)
      const r = await read(id)
      expect(r!.ttlMs).toBeGreaterThan(0)
      expect(r!.ttlMs).toBeLessThanOrEqual(2_000)
    })
  })

  describe('read', () => {
    it('returns null for an unknown id', async () => {
      expect(await read(newSid())).toBeNull()
      expect(await read(newSid(), 60_000)).toBeNull()
    })

    it('security model S19: slides the idle TTL to slideMs', async () => {
      const id = newSid()
      await store().records.create(id, entry(1), 1_000)
      const r = await read(id, 30_000)
      expect(r!.ttlMs).toBeGreaterThan(29_000)
      expect(r!.ttlMs).toBeLessThanOrEqual(30_000)
      // The slide is persisted: a non-sliding read sees the longer TTL.
      const again = await read(id)
      expect(again!.ttlMs).toBeGreaterThan(29_000)
      expect(again!.ttlMs).toBeLessThanOrEqual(30_000)
    })

    it('security model S19: the slide is capped at absExp - now', async () => {
      const id = newSid()
      const absExp = Date.now() + 3_000
      await store().records.create(id, entry(1, Buffer.from('x'), absExp), 1_000)
      const now = Date.now()
      const r = await store().records.read(id, { slideMs: 60_000, now })
      expect(r!.ttlMs).toBeGreaterThan(0)
      expect(r!.ttlMs).toBeLessThanOrEqual(absExp - now)
      expect(r!.ttlMs).toBeGreaterThan(absExp - now - 500)
    })

    it('with slideMs 0 the TTL does not grow', async () => {
      const id = newSid()
      await store().records.create(id, entry(1), 5_000)
      const first = await read(id, 0)
      expect(first!.ttlMs).toBeGreaterThan(4_000)
      expect(first!.ttlMs).toBeLessThanOrEqual(5_000)
      await sleep(50)
      const second = await read(id, 0)
      expect(second!.ttlMs).toBeLessThanOrEqual(first!.ttlMs)
      expect(second!.ttlMs).toBeGreaterThan(0)
    })

    it('security model S19: an entry past absExp reads as null and is deleted', async () => {
      const id = newSid()
      const e = entry(1)
      await store().records.create(id, e, 60_000)
      expect(await store().records.read(id, { slideMs: 60_000, now: e.absExp + 1 })).toBeNull()
      // Gone for good, not only hidden from that read.
      expect(await read(id)).toBeNull()
      expect(await store().records.delete(id)).toBe(false)
      expect(await store().records.create(id, entry(2, Buffer.from('y')), 60_000)).toBe(true)
    })

    it('security model S19: an entry whose absExp passed in real time reads as null, however it was slid', async () => {
      const id = newSid()
      await store().records.create(id, entry(1, Buffer.from('x'), Date.now() + 250), 60_000)
      expect(await read(id, 60_000)).not.toBeNull()
      await sleep(400)
      expect(await read(id, 60_000)).toBeNull()
    })

    it('security model S19: an entry whose idle TTL passed reads as null', async () => {
      const id = newSid()
      await store().records.create(id, entry(1), 150)
      await sleep(300)
      expect(await read(id)).toBeNull()
      expect(await read(id, 60_000)).toBeNull()
    })
  })

  describe('replace', () => {
    it('replaces the entry when the expected version matches, without extending the TTL', async () => {
      const id = newSid()
      await store().records.create(id, entry(1, Buffer.from('v1')), 5_000)
      const next = entry(2, Buffer.from('v2'))
      expect(await store().records.replace(id, 1, next, 60_000)).toBe('ok')
      const r = await read(id)
      expect(r!.entry.version).toBe(2)
      expect(r!.entry.absExp).toBe(next.absExp)
      expect(r!.entry.payload.toString()).toBe('v2')
      expect(r!.ttlMs).toBeGreaterThan(0)
      expect(r!.ttlMs).toBeLessThanOrEqual(5_000)
    })

    it('security model S59: caps the TTL at maxTtlMs', async () => {
      const id = newSid()
      await store().records.create(id, entry(1, Buffer.from('v1')), 60_000)
      expect(await store().records.replace(id, 1, entry(2, Buffer.from('v2')), 1_000)).toBe('ok')
      const r = await read(id)
      expect(r!.entry.version).toBe(2)
      expect(r!.ttlMs).toBeGreaterThan(0)
      expect(r!.ttlMs).toBeLessThanOrEqual(1_000)
    })

    it('security model S19, S77: slideMs slides the TTL as a read would, never past maxTtlMs, and never shortens it', async () => {
      const id = newSid()
      await store().records.create(id, entry(1, Buffer.from('v1')), 2_000)
      expect(await store().records.replace(id, 1, entry(2, Buffer.from('v2')), 60_000, 30_000)).toBe('ok')
      const slid = (await read(id))!.ttlMs
      expect(slid).toBeGreaterThan(25_000)
      expect(slid).toBeLessThanOrEqual(30_000)
      expect(await store().records.replace(id, 2, entry(3, Buffer.from('v3')), 60_000, 1_000)).toBe('ok')
      expect((await read(id))!.ttlMs).toBeGreaterThan(25_000)
      expect(await store().records.replace(id, 3, entry(4, Buffer.from('v4')), 10_000, 30_000)).toBe('ok')
      const capped = (await read(id))!.ttlMs
      expect(capped).toBeGreaterThan(0)
      expect(capped).toBeLessThanOrEqual(10_000)
    })

    it('security model S34: a stale version is a conflict and leaves the entry unchanged', async () => {
      const id = newSid()
      await store().records.create(id, entry(1, Buffer.from('v1')), 60_000)
      expect(await store().records.replace(id, 1, entry(2, Buffer.from('v2')), 60_000)).toBe('ok')
      expect(await store().records.replace(id, 1, entry(3, Buffer.from('stale')), 60_000)).toBe('conflict')
      expect(await store().records.replace(id, 7, entry(8, Buffer.from('future')), 60_000)).toBe('conflict')
      const r = await read(id)
      expect(r!.entry.version).toBe(2)
      expect(r!.entry.payload.toString()).toBe('v2')
    })

    it('does not confuse versions that share a prefix (1 vs 10)', async () => {
      const id = newSid()
      await store().records.create(id, entry(10, Buffer.from('v10')), 60_000)
      expect(await store().records.replace(id, 1, entry(2, Buffer.from('x')), 60_000)).toBe('conflict')
      expect(await store().records.replace(id, 10, entry(11, Buffer.from('v11')), 60_000)).toBe('ok')
      expect((await read(id))!.entry.version).toBe(11)
    })

    it("is 'missing' for an unknown or expired sid and creates nothing", async () => {
      const id = newSid()
      expect(await store().records.replace(id, 1, entry(2, Buffer.from('x')), 60_000)).toBe('missing')
      expect(await read(id)).toBeNull()
      const short = newSid()
      await store().records.create(short, entry(1), 100)
      await sleep(250)
      expect(await store().records.replace(short, 1, entry(2, Buffer.from('y')), 60_000)).toBe('missing')
      expect(await read(short)).toBeNull()
    })
  })

  describe('delete', () => {
    it('returns true for an existing entry, then false', async () => {
      const id = newSid()
      await store().records.create(id, entry(1), 60_000)
      expect(await store().records.delete(id)).toBe(true)
      expect(await read(id)).toBeNull()
      expect(await store().records.delete(id)).toBe(false)
      expect(await store().records.delete(newSid())).toBe(false)
    })
  })

  describe('count', () => {
    it('counts the live sessions', async () => {
      expect(await store().records.count()).toBe(0)
      const a = newSid()
      await store().records.create(a, entry(1), 60_000)
      await store().records.create(newSid(), entry(1), 60_000)
      expect(await store().records.count()).toBe(2)
      await store().records.delete(a)
      expect(await store().records.count()).toBe(1)
    })
  })

  describe('another instance', () => {
    it('sees what this one wrote, and its compare-and-set guards against this one', async () => {
      const other = await subject().peer()
      const id = newSid()
      await store().records.create(id, entry(1, 'mine'), 60_000)
      expect((await other.records.read(id, { slideMs: 0, now: Date.now() }))!.entry.payload.toString()).toBe('mine')
      expect(await other.records.replace(id, 1, entry(2, 'theirs'), 60_000)).toBe('ok')
      expect(await store().records.replace(id, 1, entry(2, 'stale'), 60_000)).toBe('conflict')
      expect((await read(id))!.entry.payload.toString()).toBe('theirs')
    })

    it('a store in another namespace sees none of it', async () => {
      const stranger = await subject().stranger()
      const id = newSid()
      await store().records.create(id, entry(1), 60_000)
      expect(await stranger.records.read(id, { slideMs: 0, now: Date.now() })).toBeNull()
      expect(await stranger.records.delete(id)).toBe(false)
      expect(await stranger.records.count()).toBe(0)
      expect(await read(id)).not.toBeNull()
    })
  })

  it('binary payloads with every byte value survive create, replace and read', async () => {
    const id = newSid()
    await store().records.create(id, entry(1, ALL_BYTES), 60_000)
    expect(Buffer.from((await read(id))!.entry.payload).equals(ALL_BYTES)).toBe(true)
    const reversed = Buffer.from(ALL_BYTES).reverse()
    expect(await store().records.replace(id, 1, entry(2, reversed), 60_000)).toBe('ok')
    expect(Buffer.from((await read(id, 60_000))!.entry.payload).equals(reversed)).toBe(true)
  })

  it('an empty payload survives', async () => {
    const id = newSid()
    await store().records.create(id, entry(1, Buffer.alloc(0)), 60_000)
    const r = await read(id)
    expect(r).not.toBeNull()
    expect(r!.entry.payload.length).toBe(0)
  })
})
