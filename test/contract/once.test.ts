import { randomUUID } from 'node:crypto'
import { expect, it } from 'vitest'
import { eachStore, sleep } from './harness.js'

// OneTimeIds (src/store/types.ts): a logout token's `jti` is accepted once
// (OpenID Connect Back-Channel Logout 1.0 §2.6; security model S52).
eachStore('OneTimeIds', (subject) => {
  const once = () => subject().store.onceIds
  const id = () => `jti-${randomUUID()}`

  it('the first call is true, every later one false', async () => {
    const j = id()
    expect(await once().rememberOnce(j, 60_000)).toBe(true)
    expect(await once().rememberOnce(j, 60_000)).toBe(false)
    expect(await once().rememberOnce(j, 60_000)).toBe(false)
  })

  it('ids are independent', async () => {
    expect(await once().rememberOnce(id(), 60_000)).toBe(true)
    expect(await once().rememberOnce(id(), 60_000)).toBe(true)
  })

  it('concurrent calls with one id: exactly one is true', async () => {
    const j = id()
    const results = await Promise.all(Array.from({ length: 8 }, () => once().rememberOnce(j, 60_000)))
    expect(results.filter(Boolean)).toHaveLength(1)
  })

  it('another instance sees the id; another namespace does not', async () => {
    const j = id()
    expect(await once().rememberOnce(j, 60_000)).toBe(true)
    expect(await (await subject().peer()).onceIds.rememberOnce(j, 60_000)).toBe(false)
    expect(await (await subject().stranger()).onceIds.rememberOnce(j, 60_000)).toBe(true)
  })

  it('after the ttl the id is accepted again', async () => {
    const j = id()
    expect(await once().rememberOnce(j, 1_000)).toBe(true)
    await sleep(1_200)
    expect(await once().rememberOnce(j, 60_000)).toBe(true)
    expect(await once().rememberOnce(j, 60_000)).toBe(false)
  })

  it('an id is remembered for at least a second, however short the ttl', async () => {
    const j = id()
    expect(await once().rememberOnce(j, 10)).toBe(true)
    await sleep(300)
    expect(await once().rememberOnce(j, 10)).toBe(false)
  })

  it('ids with any characters work and are kept apart', async () => {
    for (const j of ['bcl\0https://idp\0abc', 'a:b{c}*', 'ünïcødé', '']) {
      expect(await once().rememberOnce(j, 60_000), JSON.stringify(j)).toBe(true)
      expect(await once().rememberOnce(j, 60_000), JSON.stringify(j)).toBe(false)
    }
  })
})
