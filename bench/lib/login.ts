// Logging in many users for a benchmark, each from a client address of its own.
//
// tokenward limits /auth/login and /auth/callback per client address (300 a
// minute), as it should: a thousand real users do not share one address. So
// user i talks to tokenward from its own loopback address (127.1.x.y: Linux
// routes all of 127.0.0.0/8 to the loopback interface), while the IdP part
// of the walk (its login form) is the test helper's, test/helpers/login.ts.

import { request } from 'node:http'
import { CookieJar, completeAtIdp } from '../../test/helpers/login.js'

interface Answer {
  status: number
  headers: Headers
}

function get(url: string, cookie: string, localAddress: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: 'GET', localAddress, headers: { accept: 'text/html', ...(cookie ? { cookie } : {}) }, agent: false },
      (res) => {
        res.resume()
        res.on('end', () => {
          const headers = new Headers()
          for (let i = 0; i < res.rawHeaders.length; i += 2) headers.append(res.rawHeaders[i]!, res.rawHeaders[i + 1]!)
          resolve({ status: res.statusCode ?? 0, headers })
        })
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.end()
  })
}

/** The loopback address user `i` connects from: 127.1.0.1, 127.1.0.2, ..., 127.1.0.250, 127.1.1.1, ... */
export function clientAddress(i: number): string {
  return `127.1.${Math.floor(i / 250) % 256}.${1 + (i % 250)}`
}

/**
 * Logs `username` in through tokenward (from `localAddress`) and the dev IdP;
 * returns the Cookie header the SPA would then send: tokenward's session cookie only.
 */
export async function loginFrom(bffUrl: string, username: string, localAddress: string): Promise<string> {
  const jar = new CookieJar()
  const loginUrl = `${bffUrl}/auth/login?returnTo=%2F`
  const start = await get(loginUrl, '', localAddress)
  const location = start.headers.get('location')
  if (start.status < 300 || start.status >= 400 || !location) throw new Error(`/auth/login answered ${start.status} for ${username}`)
  jar.store(loginUrl, start.headers)
  const callbackUrl = await completeAtIdp(new URL(location, loginUrl).href, jar, username, 'demo')
  const callback = await get(callbackUrl, jar.header(callbackUrl), localAddress)
  if (callback.status < 300 || callback.status >= 400) throw new Error(`/auth/callback answered ${callback.status} for ${username}`)
  // The session cookie, not the cleared login-transaction cookie (empty, Max-Age=0).
  const cookie = callback.headers
    .getSetCookie()
    .filter((line) => !/;\s*max-age=0\b/i.test(line))
    .map((line) => (line.includes(';') ? line.slice(0, line.indexOf(';')) : line).trim())
    .filter((pair) => pair.slice(pair.indexOf('=') + 1) !== '')
    .join('; ')
  if (!cookie) throw new Error(`login as ${username} set no session cookie`)
  return cookie
}
