import { describe, expect, it } from 'vitest'
import { MemoryStore } from '../../src/store/memory/store.js'

// The behaviour every store shares is in test/contract/; here, what is the memory store's own.

describe('MemoryStore with an injected clock', () => {
  it('security model S19: expires idle entries by its own clock', async () => {
    let now = 1_000_000
    const store = new MemoryStore({ now: () => now })
    try {
      const absExp = now + 3_600_000
      expect(await store.records.create('s1', { version: 1, absExp, payload: Buffer.from('x') }, 1_000)).toBe(true)
      now += 999
      expect(await store.records.read('s1', { slideMs: 1_000, now })).not.toBeNull()
      now += 999
      expect(await store.records.read('s1', { slideMs: 0, now })).not.toBeNull()
      now += 2
      expect(await store.records.read('s1', { slideMs: 0, now })).toBeNull()
      expect(store.kind).toBe('memory')
    } finally {
      await store.close()
    }
  })
})
