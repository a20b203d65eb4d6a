import { expect, it } from 'vitest'
import { eachStore, entry, newSid } from './harness.js'

// Store (src/store/types.ts): the backend as a whole, for health checks and shutdown.
eachStore('Store', (subject) => {
  it('ping resolves while the backend answers', async () => {
    await expect(subject().store.ping()).resolves.toBeUndefined()
  })

  it('names its backend', () => {
    expect(['redis', 'memory']).toContain(subject().store.kind)
  })

  it('close ends its subscriptions and resolves; what it wrote stays for the other instances', async () => {
    const other = await subject().peer()
    const sid = newSid()
    await other.records.create(sid, entry(1), 60_000)
    const closing = other === subject().store ? subject().store : other
    await closing.events.subscribe(() => {})
    await expect(closing.close()).resolves.toBeUndefined()
    if (closing !== subject().store) expect(await subject().store.records.read(sid, { slideMs: 0, now: Date.now() })).not.toBeNull()
  })
})
