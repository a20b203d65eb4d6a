import { describe, expect, it } from 'vitest'
import { SingleFlight } from '../../src/single-flight.js'

/** A call that settles when told to, counting how often it was started. */
function gate<T>() {
  let resolve!: (v: T) => void
  let reject!: (e: unknown) => void
  const promise = new Promise<T>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

describe('SingleFlight', () => {
  it('concurrent callers with one key share one call and its result', async () => {
    const flights = new SingleFlight<string, number>()
    const g = gate<number>()
    let calls = 0
    const start = () => {
      calls++
      return g.promise
    }
    const all = Array.from({ length: 10 }, () => flights.run('k', start))
    expect(flights.size).toBe(1)
    expect(flights.get('k')).toBe(all[0])
    g.resolve(42)
    expect(await Promise.all(all)).toEqual(Array(10).fill(42))
    expect(calls).toBe(1)
  })

  it('is forgotten once settled: the next caller starts a new call', async () => {
    const flights = new SingleFlight<string, number>()
    let calls = 0
    expect(await flights.run('k', async () => ++calls)).toBe(1)
    expect(flights.size).toBe(0)
    expect(flights.get('k')).toBeUndefined()
    expect(await flights.run('k', async () => ++calls)).toBe(2)
  })

  it('a rejection is shared by every waiting caller, then forgotten', async () => {
    const flights = new SingleFlight<string, number>()
    const g = gate<number>()
    const a = flights.run('k', () => g.promise)
    const b = flights.run('k', () => Promise.resolve(0))
    const boom = new Error('boom')
    g.reject(boom)
    await expect(a).rejects.toBe(boom)
    await expect(b).rejects.toBe(boom)
    expect(flights.size).toBe(0)
    expect(await flights.run('k', async () => 7)).toBe(7)
  })

  it('different keys do not share', async () => {
    const flights = new SingleFlight<string, string>()
    const ga = gate<string>()
    const gb = gate<string>()
    const a = flights.run('a', () => ga.promise)
    const b = flights.run('b', () => gb.promise)
    expect(flights.size).toBe(2)
    gb.resolve('B')
    ga.resolve('A')
    expect(await Promise.all([a, b])).toEqual(['A', 'B'])
    expect(flights.size).toBe(0)
  })

  it('the entry is gone before the callers see the result', async () => {
    const flights = new SingleFlight<string, number>()
    const seen = await flights.run('k', async () => 1).then(() => flights.size)
    expect(seen).toBe(0)
  })

  it('a start that throws synchronously rejects and leaves nothing behind', async () => {
    const flights = new SingleFlight<string, number>()
    await expect(
      flights.run('k', () => {
        throw new Error('sync')
      }),
    ).rejects.toThrow('sync')
    expect(flights.size).toBe(0)
  })

  it('beyond the limit of keys in flight, a new key is refused at once; joining a flight never is', async () => {
    const full = new Error('full')
    const flights = new SingleFlight<string, number>({ limit: 2, full: () => full })
    const ga = gate<number>()
    const a = flights.run('a', () => ga.promise)
    void flights.run('b', () => new Promise<number>(() => {}))
    let started = false
    await expect(
      flights.run('c', async () => {
        started = true
        return 3
      }),
    ).rejects.toBe(full)
    expect(started).toBe(false)
    expect(flights.run('a', () => Promise.resolve(0))).toBe(a)
    ga.resolve(1)
    expect(await a).toBe(1)
    expect(await flights.run('c', async () => 3)).toBe(3)
  })
})
