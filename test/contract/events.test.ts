import { describe, expect, it } from 'vitest'
import type { SessionEvent } from '../../src/store/types.js'
import { eachStore, entry, eventually, newSid, sleep } from './harness.js'

// SessionEventBus (src/store/types.ts): session_ended reaches every instance
// (and so the user's open tabs), and, where the store can, changes to sessions
// this instance read are announced so its cache can trust what it holds.
eachStore('SessionEventBus', (subject) => {
  const bus = () => subject().store.events
  const ended = (sid: string, reason = 'logout'): SessionEvent => ({ sid, type: 'session_ended', reason })

  describe('publish and subscribe', () => {
    it('an event published by any instance reaches a subscriber, as published', async () => {
      const got: SessionEvent[] = []
      const stop = await bus().subscribe((e) => got.push(e))
      const other = await subject().peer()
      const sid = newSid()
      await other.events.publish(ended(sid, 'backchannel_logout'))
      expect(await eventually(() => got.length === 1)).toBe(true)
      expect(got[0]).toEqual(ended(sid, 'backchannel_logout'))
      await stop()
    })

    it('every subscriber receives every event, in order', async () => {
      const a: string[] = []
      const b: string[] = []
      const stopA = await bus().subscribe((e) => a.push(e.sid))
      const stopB = await (await subject().peer()).events.subscribe((e) => b.push(e.sid))
      const sids = [newSid(), newSid(), newSid()]
      for (const sid of sids) await bus().publish(ended(sid))
      expect(await eventually(() => a.length === 3 && b.length === 3)).toBe(true)
      expect(a).toEqual(sids)
      expect(b).toEqual(sids)
      await stopA()
      await stopB()
    })

    it('after unsubscribing, nothing more is delivered to that listener; others still receive', async () => {
      const gone: string[] = []
      const kept: string[] = []
      const stopGone = await bus().subscribe((e) => gone.push(e.sid))
      const stopKept = await bus().subscribe((e) => kept.push(e.sid))
      await bus().publish(ended('first'))
      expect(await eventually(() => gone.length === 1 && kept.length === 1)).toBe(true)
      await stopGone()
      await bus().publish(ended('second'))
      expect(await eventually(() => kept.length === 2)).toBe(true)
      await sleep(100)
      expect(gone).toEqual(['first'])
      await stopKept()
    })

    it('a store in another namespace does not hear these events', async () => {
      const heard: string[] = []
      const stranger = await subject().stranger()
      const stop = await stranger.events.subscribe((e) => heard.push(e.sid))
      const mine: string[] = []
      const stopMine = await bus().subscribe((e) => mine.push(e.sid))
      await bus().publish(ended('ours'))
      expect(await eventually(() => mine.length === 1)).toBe(true)
      await sleep(100)
      expect(heard).toEqual([])
      await stop()
      await stopMine()
    })

    it('publishing with nobody subscribed is fine', async () => {
      await expect(bus().publish(ended(newSid()))).resolves.toBeUndefined()
    })
  })

  describe('subscription hooks', () => {
    it('up (onUp) by the time subscribe resolves; down (onDown) once when unsubscribed', async () => {
      const said: string[] = []
      const stop = await bus().subscribe(() => {}, { onUp: () => said.push('up'), onDown: () => said.push('down') })
      expect(said).toEqual(['up'])
      await stop()
      expect(said).toEqual(['up', 'down'])
    })

    it('coherent stores: a change by another instance to a session read here is announced (onInvalidate)', async (ctx) => {
      if (!bus().coherentEvents) return ctx.skip()
      const invalidated: Array<string | null> = []
      const stop = await bus().subscribe(() => {}, { onInvalidate: (sid) => invalidated.push(sid) })
      const other = await subject().peer()
      const [changed, deleted, untouched] = [newSid(), newSid(), newSid()]
      for (const sid of [changed, deleted, untouched]) {
        await other.records.create(sid, entry(1), 60_000)
        await subject().store.records.read(sid, { slideMs: 0, now: Date.now() })
      }
      await other.records.replace(changed, 1, entry(2), 60_000)
      await other.records.delete(deleted)
      expect(await eventually(() => invalidated.includes(changed) && invalidated.includes(deleted))).toBe(true)
      expect(invalidated).not.toContain(untouched)
      await stop()
    })
  })
})
