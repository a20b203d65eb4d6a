// BFF_COOKIE_NAME (docs/configuration.md, security model S92): the session,
// login-transaction and bound cookies take the configured name, and only that
// name is read.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CookieJar, login } from '../helpers/login.js'
import { spaFetch } from '../helpers/session.js'
import { startWorld, type World } from '../helpers/world.js'

let world: World

beforeAll(async () => {
  world = await startWorld({ env: { BFF_COOKIE_NAME: '__Secure-shop' } })
})
afterAll(() => world?.close())

function named(lines: string[], name: string): string | undefined {
  return lines.find((l) => l.startsWith(`${name}=`))
}

describe('BFF_COOKIE_NAME', () => {
  it('names the transaction and session cookies, reads only that name, and clears it on logout', async () => {
    const { bff } = world
    expect(bff.config.cookie.name).toBe('__Secure-shop')
    const result = await login(bff.url, { username: 'alice' })
    const setCookies = result.exchanges.filter((e) => e.url.startsWith(bff.url)).flatMap((e) => e.headers.getSetCookie())

    const tx = named(setCookies, '__Secure-shop-tx')
    expect(tx).toMatch(/; Path=\/; .*HttpOnly; Secure; SameSite=Lax$/)
    const session = named(setCookies, '__Secure-shop')
    expect(session).toMatch(/; Path=\/; .*HttpOnly; Secure; SameSite=Strict$/)
    // Nothing is set under the default names any more.
    expect(setCookies.some((l) => l.startsWith('__Host-tokenward'))).toBe(false)

    const jar = result.jar
    const value = jar.get('__Secure-shop')!
    expect((await spaFetch(bff, jar, '/auth/session')).status).toBe(200)

    // The same seal under another name is no session: the name is part of the contract.
    const renamed = new CookieJar()
    renamed.set('__Host-tokenward', value, '127.0.0.1')
    renamed.set('__Host-tokenward', value, 'localhost')
    const other = await spaFetch(bff, renamed, '/auth/session')
    expect(other.status).toBe(401)

    const out = await spaFetch(bff, jar, '/auth/logout', { method: 'POST' })
    expect(out.status).toBe(200)
    expect(out.headers.getSetCookie().some((l) => l.startsWith('__Secure-shop=;') && /Max-Age=0/.test(l))).toBe(true)
  })
})
