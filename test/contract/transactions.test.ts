import { randomUUID } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { ALL_BYTES, eachStore, entry, sleep } from './harness.js'

// TransactionRecords (src/store/types.ts): login transactions, single use.
eachStore('TransactionRecords', (subject) => {
  const store = () => subject().store
  const read = (id: string) => store().records.read(id, { slideMs: 0, now: Date.now() })

  describe('transactions', () => {
    it('security model S2: put then take returns the bytes once; a second take is null', async () => {
      const id = `tx-${randomUUID()}`
      const payload = Buffer.from('{"state":"s","nonce":"n"}')
      await store().transactions.put(id, payload, 60_000)
      const first = await store().transactions.take(id)
      expect(first).not.toBeNull()
      expect(Buffer.from(first!).equals(payload)).toBe(true)
      expect(await store().transactions.take(id)).toBeNull()
    })

    it('take of an unknown id is null', async () => {
      expect(await store().transactions.take(`tx-${randomUUID()}`)).toBeNull()
    })

    it('security model S2: a transaction past its ttl is null', async () => {
      const id = `tx-${randomUUID()}`
      await store().transactions.put(id, Buffer.from('x'), 100)
      await sleep(250)
      expect(await store().transactions.take(id)).toBeNull()
    })

    it('security model S2: concurrent takes hand the transaction out once', async () => {
      const id = `tx-${randomUUID()}`
      await store().transactions.put(id, Buffer.from('once'), 60_000)
      const results = await Promise.all(Array.from({ length: 5 }, () => store().transactions.take(id)))
      expect(results.filter((r) => r !== null)).toHaveLength(1)
    })

    it('transactions and sessions do not share a namespace', async () => {
      const id = `shared-${randomUUID()}`
      await store().transactions.put(id, Buffer.from('tx'), 60_000)
      expect(await read(id)).toBeNull()
      expect(await store().records.create(id, entry(1, Buffer.from('session')), 60_000)).toBe(true)
      expect((await store().transactions.take(id))!.toString()).toBe('tx')
      expect((await read(id))!.entry.payload.toString()).toBe('session')
    })
  })

  it('another instance can take what this one put, once', async () => {
    const other = await subject().peer()
    const id = `tx-${randomUUID()}`
    await store().transactions.put(id, Buffer.from('x'), 60_000)
    expect((await other.transactions.take(id))!.toString()).toBe('x')
    expect(await store().transactions.take(id)).toBeNull()
  })

  it('a store in another namespace cannot take it', async () => {
    const stranger = await subject().stranger()
    const id = `tx-${randomUUID()}`
    await store().transactions.put(id, Buffer.from('x'), 60_000)
    expect(await stranger.transactions.take(id)).toBeNull()
    expect((await store().transactions.take(id))!.toString()).toBe('x')
  })

  it('put overwrites an earlier put under the same id', async () => {
    const id = `tx-${randomUUID()}`
    await store().transactions.put(id, Buffer.from('first'), 60_000)
    await store().transactions.put(id, Buffer.from('second'), 60_000)
    expect((await store().transactions.take(id))!.toString()).toBe('second')
  })

  it('binary payloads with every byte value survive', async () => {
    const tx = `tx-${randomUUID()}`
    await store().transactions.put(tx, ALL_BYTES, 60_000)
    expect(Buffer.from((await store().transactions.take(tx))!).equals(ALL_BYTES)).toBe(true)
  })
})
