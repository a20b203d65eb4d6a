import { describe, expect, it } from 'vitest'
import { eachStore, entry, newSid, sleep } from './harness.js'

// RefreshLeases (src/store/types.ts): one refresh per session across every
// instance, and the journal that survives a holder that died (security model S33).
eachStore('RefreshLeases', (subject) => {
  const leases = () => subject().store.leases

  describe('acquire', () => {
    it('takes a free lease and reports no journal', async () => {
      expect(await leases().acquire(newSid(), 'a', 5_000)).toEqual({ acquired: true, journal: null })
    })

    it('a second holder cannot acquire while the lease is held, on any instance', async () => {
      const sid = newSid()
      const other = await subject().peer()
      expect((await leases().acquire(sid, 'a', 5_000)).acquired).toBe(true)
      expect((await leases().acquire(sid, 'b', 5_000)).acquired).toBe(false)
      expect((await other.leases.acquire(sid, 'c', 5_000)).acquired).toBe(false)
      // Not even the holder's own token acquires it twice.
      expect((await leases().acquire(sid, 'a', 5_000)).acquired).toBe(false)
    })

    it('leases of different sessions are independent', async () => {
      const a = newSid()
      expect((await leases().acquire(a, 'x', 5_000)).acquired).toBe(true)
      expect((await leases().acquire(newSid(), 'y', 5_000)).acquired).toBe(true)
    })

    it('expiry frees the lease: another holder acquires it, and the old holder can no longer renew it', async () => {
      const sid = newSid()
      await leases().acquire(sid, 'a', 150)
      await sleep(300)
      expect((await leases().acquire(sid, 'b', 5_000)).acquired).toBe(true)
      expect(await leases().renew(sid, 'a', 5_000)).toBe(false)
    })

    it('a store in another namespace has its own leases', async () => {
      const sid = newSid()
      const stranger = await subject().stranger()
      await leases().acquire(sid, 'a', 5_000)
      expect((await stranger.leases.acquire(sid, 'b', 5_000)).acquired).toBe(true)
    })
  })

  describe('renew', () => {
    it('by the holder: true, and the lease outlives its first term', async () => {
      const sid = newSid()
      await leases().acquire(sid, 'a', 300)
      await sleep(150)
      expect(await leases().renew(sid, 'a', 1_000)).toBe(true)
      await sleep(300) // past the first term
      expect((await leases().acquire(sid, 'b', 5_000)).acquired).toBe(false)
    })

    it('by a non-holder: false, and the lease is not extended', async () => {
      const sid = newSid()
      await leases().acquire(sid, 'a', 200)
      expect(await leases().renew(sid, 'b', 10_000)).toBe(false)
      await sleep(350)
      expect((await leases().acquire(sid, 'b', 5_000)).acquired).toBe(true)
    })

    it('of a lease nobody holds: false, and it stays free', async () => {
      const sid = newSid()
      expect(await leases().renew(sid, 'a', 5_000)).toBe(false)
      expect((await leases().acquire(sid, 'b', 5_000)).acquired).toBe(true)
    })
  })

  describe('release', () => {
    it('by the holder frees the lease at once', async () => {
      const sid = newSid()
      await leases().acquire(sid, 'a', 5_000)
      await leases().release(sid, 'a')
      expect((await leases().acquire(sid, 'b', 5_000)).acquired).toBe(true)
    })

    it('by a non-holder does nothing: the holder keeps it and can still renew it', async () => {
      const sid = newSid()
      await leases().acquire(sid, 'a', 5_000)
      await leases().release(sid, 'b')
      expect((await leases().acquire(sid, 'c', 5_000)).acquired).toBe(false)
      expect(await leases().renew(sid, 'a', 5_000)).toBe(true)
    })

    it('after expiry, by the old holder, does not free the next holder’s lease', async () => {
      const sid = newSid()
      await leases().acquire(sid, 'a', 100)
      await sleep(250)
      await leases().acquire(sid, 'b', 5_000)
      await leases().release(sid, 'a')
      expect((await leases().acquire(sid, 'c', 5_000)).acquired).toBe(false)
    })

    it('of a free lease is harmless', async () => {
      const sid = newSid()
      await expect(leases().release(sid, 'a')).resolves.toBeUndefined()
      expect((await leases().acquire(sid, 'a', 5_000)).acquired).toBe(true)
    })
  })

  describe('journal', () => {
    /** Writes the journal as a holder does: under the lease, released afterwards. */
    const journal = async (sid: string, version: number, ttlMs: number) => {
      expect((await leases().acquire(sid, 'writer', 5_000)).acquired).toBe(true)
      expect(await leases().writeJournal(sid, 'writer', version, ttlMs)).toBe(true)
      await leases().release(sid, 'writer')
    }

    it('written: reported by every acquire, whether it gets the lease or not', async () => {
      const sid = newSid()
      await journal(sid, 7, 60_000)
      expect(await leases().acquire(sid, 'a', 5_000)).toEqual({ acquired: true, journal: 7 })
      expect(await leases().acquire(sid, 'b', 5_000)).toEqual({ acquired: false, journal: 7 })
      const other = await subject().peer()
      expect((await other.leases.acquire(sid, 'c', 5_000)).journal).toBe(7)
    })

    it('a later write replaces it', async () => {
      const sid = newSid()
      await journal(sid, 7, 60_000)
      await journal(sid, 8, 60_000)
      expect((await leases().acquire(sid, 'a', 5_000)).journal).toBe(8)
    })

    it('survives the lease: a holder that dies leaves it for the next one', async () => {
      const sid = newSid()
      await leases().acquire(sid, 'a', 100)
      expect(await leases().writeJournal(sid, 'a', 3, 60_000)).toBe(true)
      await sleep(250)
      expect(await leases().acquire(sid, 'b', 5_000)).toEqual({ acquired: true, journal: 3 })
    })

    it('cleared: acquire reports null', async () => {
      const sid = newSid()
      await journal(sid, 7, 60_000)
      await leases().clearJournal(sid)
      expect((await leases().acquire(sid, 'a', 5_000)).journal).toBeNull()
      await expect(leases().clearJournal(newSid())).resolves.toBeUndefined()
    })

    it('expires after its ttl', async () => {
      const sid = newSid()
      await journal(sid, 7, 150)
      await sleep(300)
      expect((await leases().acquire(sid, 'a', 5_000)).journal).toBeNull()
    })

    it('only the lease holder writes it: a holder whose lease expired and was taken writes nothing (security model S78)', async () => {
      const sid = newSid()
      expect(await leases().writeJournal(sid, 'a', 1, 60_000)).toBe(false)
      expect((await leases().acquire(sid, 'a', 100)).journal).toBeNull()
      await sleep(250)
      const other = await subject().peer()
      expect((await other.leases.acquire(sid, 'b', 5_000)).acquired).toBe(true)
      // 'a' paused past its lease; 'b' now holds it and may be redeeming.
      expect(await leases().writeJournal(sid, 'a', 1, 60_000)).toBe(false)
      expect(await other.leases.writeJournal(sid, 'b', 1, 60_000)).toBe(true)
      await other.leases.release(sid, 'b')
      expect((await leases().acquire(sid, 'c', 5_000)).journal).toBe(1)
    })

    it('journals of different sessions are independent', async () => {
      const a = newSid()
      await journal(a, 1, 60_000)
      expect((await leases().acquire(newSid(), 'x', 5_000)).journal).toBeNull()
    })

    it('a successful replace of the session clears it; a conflicting one does not', async () => {
      const { store } = subject()
      const sid = newSid()
      await store.records.create(sid, entry(1), 60_000)
      await journal(sid, 1, 60_000)
      expect(await store.records.replace(sid, 5, entry(6), 60_000)).toBe('conflict')
      expect((await leases().acquire(sid, 'a', 5_000)).journal).toBe(1)
      expect(await store.records.replace(sid, 1, entry(2), 60_000)).toBe('ok')
      expect((await leases().acquire(sid, 'b', 5_000)).journal).toBeNull()
    })
  })

  it('deleting the session drops its lease and journal', async () => {
    const { store } = subject()
    const sid = newSid()
    await store.records.create(sid, entry(1), 60_000)
    await leases().acquire(sid, 'a', 60_000)
    expect(await leases().writeJournal(sid, 'a', 1, 60_000)).toBe(true)
    expect(await store.records.delete(sid)).toBe(true)
    expect(await leases().acquire(sid, 'b', 5_000)).toEqual({ acquired: true, journal: null })
  })
})
