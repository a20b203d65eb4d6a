import { request, type IncomingHttpHeaders } from 'node:http'
import type { Session } from '../../src/session/sessions.js'
import type { TestBff } from './bff.js'
import type { CookieJar } from './login.js'

/** tokenward's session for a browser's cookie jar, read through the instance's own deps (white-box, for assertions). */
export async function sessionOf(bff: TestBff, jar: CookieJar): Promise<Session | null> {
  const sealed = jar.get(bff.config.cookie.name)
  const data = await bff.server.deps.cookies.unseal<{ h?: string }>(sealed, bff.config.session.maxAge)
  return data?.h ? bff.server.deps.sessions.load(data.h, { slide: false }) : null
}

/**
 * Makes the session's access token look expired, as if its lifetime had passed
 * (white-box); returns the session as it was before, with the old token.
 */
export async function expireAccessToken(bff: TestBff, jar: CookieJar): Promise<Session> {
  const s = await sessionOf(bff, jar)
  if (!s) throw new Error('no session to expire')
  const { result } = await bff.server.deps.sessions.replace(s, { ...s.data, accessTokenExpiresAt: Date.now() - 1000 })
  if (result !== 'ok') throw new Error(`could not expire the access token: ${result}`)
  return s
}

/** A request as the SPA sends it: the jar's cookies, `X-CSRF: 1`. */
export async function spaFetch(bff: TestBff, jar: CookieJar, path: string, init: RequestInit & { csrf?: boolean } = {}): Promise<Response> {
  const url = `${bff.url}${path}`
  const headers = new Headers(init.headers)
  const cookie = jar.header(url)
  if (cookie) headers.set('cookie', cookie)
  if (init.csrf !== false && !headers.has('x-csrf')) headers.set('x-csrf', '1')
  const res = await fetch(url, { ...init, headers, redirect: 'manual' })
  jar.store(url, res.headers)
  return res
}

/**
 * A request as the SPA sends it (the jar's cookies, `X-CSRF: 1`), over Node's
 * http client so the test controls the exact request target: fetch would
 * normalise `..`, `;` or case before tokenward sees them.
 */
export function spaRequest(
  bff: Pick<TestBff, 'url'>,
  jar: CookieJar,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: Buffer,
): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  const url = new URL(bff.url)
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, path, method, headers: { cookie: jar.header(bff.url), 'x-csrf': '1', ...headers } },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }))
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}

/** Every spelling of a secret that must never appear somewhere (raw, base64, base64url, JSON-escaped). */
export function spellings(secret: string): string[] {
  return [
    secret,
    Buffer.from(secret).toString('base64'),
    Buffer.from(secret).toString('base64url'),
    JSON.stringify(secret).slice(1, -1),
    encodeURIComponent(secret),
  ]
}

export function containsAny(haystack: string | Buffer, secrets: string[]): string | undefined {
  const text = typeof haystack === 'string' ? haystack : haystack.toString('latin1')
  for (const s of secrets) for (const v of spellings(s)) if (v.length >= 16 && text.includes(v)) return v.slice(0, 12)
  return undefined
}
