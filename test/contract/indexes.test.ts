import { describe, expect, it } from 'vitest'
import type { Store } from '../../src/store/types.js'
import { eachStore, entry, newSid, sleep } from './harness.js'

// SessionIndexes (src/store/types.ts): sessions by user (`sub`) and by IdP
// session (`sid` claim), for back-channel logout and administration.
eachStore('SessionIndexes', (subject) => {
  const store = () => subject().store
  /** A live session (60 s) indexed under `sub`/`value`. */
  async function indexed(value: string, absExp = Date.now() + 60_000, s: Store = store()): Promise<string> {
    const sid = newSid()
    await s.records.create(sid, entry(1, 'x', Date.now() + 60_000), 60_000)
    await s.indexes.add('sub', value, sid, absExp)
    return sid
  }
  const sorted = (a: string[]) => [...a].sort()

  describe('add and read', () => {
    it('lists every live session added under a value', async () => {
      const a = await indexed('alice')
      const b = await indexed('alice')
      expect(sorted(await store().indexes.read('sub', 'alice'))).toEqual(sorted([a, b]))
    })

    it('an unknown index reads empty', async () => {
      expect(await store().indexes.read('sub', 'nobody')).toEqual([])
      expect(await store().indexes.read('idp', 'nobody')).toEqual([])
    })

    it('adding a session twice lists it once', async () => {
      const a = await indexed('alice')
      await store().indexes.add('sub', 'alice', a, Date.now() + 60_000)
      expect(await store().indexes.read('sub', 'alice')).toEqual([a])
    })

    it('kinds and values are kept apart', async () => {
      const a = await indexed('alice')
      const b = newSid()
      await store().records.create(b, entry(1), 60_000)
      await store().indexes.add('idp', 'alice', b, Date.now() + 60_000)
      expect(await store().indexes.read('sub', 'alice')).toEqual([a])
      expect(await store().indexes.read('idp', 'alice')).toEqual([b])
      expect(await store().indexes.read('sub', 'bob')).toEqual([])
    })

    it('values with any characters (personal data, separators, unicode) work', async () => {
      for (const value of ['a:b{c}*', 'x\0y', 'ünïcødé 👤', 'https://idp.example/sid?x=1', '']) {
        const sid = await indexed(value)
        expect(await store().indexes.read('sub', value), JSON.stringify(value)).toEqual([sid])
      }
    })

    it('another instance reads the same index; another namespace does not', async () => {
      const a = await indexed('alice')
      expect(await (await subject().peer()).indexes.read('sub', 'alice')).toEqual([a])
      expect(await (await subject().stranger()).indexes.read('sub', 'alice')).toEqual([])
    })
  })

  describe('remove', () => {
    it('removes that session only', async () => {
      const a = await indexed('alice')
      const b = await indexed('alice')
      await store().indexes.remove('sub', 'alice', a)
      expect(await store().indexes.read('sub', 'alice')).toEqual([b])
    })

    it('of an unknown member or index does nothing', async () => {
      const a = await indexed('alice')
      await store().indexes.remove('sub', 'alice', newSid())
      await store().indexes.remove('idp', 'alice', a)
      await store().indexes.remove('sub', 'nobody', a)
      expect(await store().indexes.read('sub', 'alice')).toEqual([a])
    })
  })

  describe('pruning and expiry', () => {
    it('a deleted session is not listed, and is pruned for good (not only hidden)', async () => {
      const a = await indexed('alice')
      const b = await indexed('alice')
      await store().records.delete(a)
      expect(await store().indexes.read('sub', 'alice')).toEqual([b])
      // The same sid coming back (it never does: 128-bit handles) is not re-listed by the old entry.
      await store().records.create(a, entry(1), 60_000)
      expect(await store().indexes.read('sub', 'alice')).toEqual([b])
    })

    it('a session whose idle time ran out is not listed', async () => {
      const sid = newSid()
      await store().records.create(sid, entry(1), 150)
      await store().indexes.add('sub', 'alice', sid, Date.now() + 60_000)
      expect(await store().indexes.read('sub', 'alice')).toEqual([sid])
      await sleep(300)
      expect(await store().indexes.read('sub', 'alice')).toEqual([])
    })

    it('the index expires with its longest-lived member (at least a second after the add)', async () => {
      await indexed('short', Date.now() + 10)
      await sleep(1_200)
      expect(await store().indexes.read('sub', 'short')).toEqual([])
    })

    it('a shorter-lived member never shortens the index', async () => {
      const long = await indexed('alice', Date.now() + 60_000)
      const short = await indexed('alice', Date.now() + 10)
      await sleep(1_200)
      expect(sorted(await store().indexes.read('sub', 'alice'))).toEqual(sorted([long, short]))
    })

    it('a longer-lived member extends it', async () => {
      const short = await indexed('alice', Date.now() + 10)
      const long = await indexed('alice', Date.now() + 60_000)
      await sleep(1_200)
      expect(sorted(await store().indexes.read('sub', 'alice'))).toEqual(sorted([long, short]))
    })
  })
})
