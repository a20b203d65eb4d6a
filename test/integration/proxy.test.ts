import { request } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { auditEvents } from '../helpers/bff.js'
import { type CookieJar, login } from '../helpers/login.js'
import { sessionOf, spaFetch, spaRequest } from '../helpers/session.js'
import { startWorld, type World } from '../helpers/world.js'

let world: World
let jar: CookieJar

beforeAll(async () => {
  world = await startWorld({
    routes: [
      { prefix: '/api', upstream: '{upstream}/v1', token: 'user' },
      { prefix: '/public', upstream: '{upstream}/pub', token: 'none' },
      { prefix: '/maybe', upstream: '{upstream}/opt', token: 'optional' },
      { prefix: '/ro', upstream: '{upstream}/ro', token: 'user', methods: ['GET'] },
      { prefix: '/small', upstream: '{upstream}/small', token: 'user', maxBodyBytes: 1024 },
      { prefix: '/timeout', upstream: '{upstream}', token: 'user', timeoutMs: 300 },
      { prefix: '/down', upstream: 'http://127.0.0.1:9/', token: 'none' },
      { prefix: '/svc', upstream: '{upstream}/svc', token: 'client' },
    ],
  })
  jar = (await login(world.bff.url)).jar
})
afterAll(() => world?.close())

/** A raw HTTP request, so the test controls the exact request target and headers. */
function raw(path: string, headers: Record<string, string> = {}, method = 'GET', body?: Buffer) {
  return spaRequest(world.bff, jar, method, path, headers, body)
}

const last = () => world.upstream.requests.at(-1)!

describe('forwarding (docs/endpoints.md, security model S42, S44)', () => {
  it('maps the path and query, sets the bearer token, and cleans the request headers', async () => {
    const session = await sessionOf(world.bff, jar)
    const n = world.upstream.requests.length
    const res = await raw('/api/orders/7?x=1&y=%20z', {
      authorization: 'Bearer from-the-browser',
      'x-forwarded-for': '6.6.6.6',
      'x-forwarded-host': 'evil.example',
      forwarded: 'for=6.6.6.6',
      connection: 'keep-alive, x-drop-me',
      'x-drop-me': 'secret',
      'x-custom': 'kept',
      accept: 'application/json',
      'proxy-authorization': 'Basic abc',
      te: 'trailers',
    })
    expect(res.status).toBe(200)
    expect(world.upstream.requests.length).toBe(n + 1)
    const got = last()
    expect(got.url).toBe('/v1/orders/7?x=1&y=%20z')
    expect(got.headers.authorization).toBe(`Bearer ${session!.data.accessToken}`)
    expect(got.headers.cookie).toBeUndefined()
    expect(got.headers['x-csrf']).toBeUndefined()
    expect(got.headers['x-drop-me']).toBeUndefined()
    expect(got.headers['proxy-authorization']).toBeUndefined()
    expect(got.headers.te).toBeUndefined()
    expect(got.headers.forwarded).toBeUndefined()
    expect(got.headers['x-forwarded-for']).toBe('127.0.0.1')
    expect(got.headers['x-forwarded-host']).toBe(new URL(world.bff.url).host)
    expect(got.headers['x-forwarded-proto']).toBe('http')
    expect(got.headers['x-custom']).toBe('kept')
    expect(got.headers.accept).toBe('application/json')
    expect(got.headers.host).toBe(new URL(world.upstream.url).host)
  })

  it('forwards the request id upstream and returns it: the browser one when well-formed, else a new one', async () => {
    const given = await raw('/api/echo', { 'x-request-id': 'trace-abc.123' })
    expect(last().headers['x-request-id']).toBe('trace-abc.123')
    expect(given.headers['x-request-id']).toBe('trace-abc.123')
    const bad = await raw('/api/echo', { 'x-request-id': 'no spaces <allowed>' })
    const id = String(bad.headers['x-request-id'])
    expect(id).toMatch(/^[0-9a-f-]{36}$/)
    expect(last().headers['x-request-id']).toBe(id)
  })

  it('drops upstream Set-Cookie and CORS headers on the way back (#53)', async () => {
    const res = await raw('/api/set-cookie')
    expect(res.status).toBe(200)
    expect(res.headers['set-cookie']).toBeUndefined()
    expect(res.headers['access-control-allow-origin']).toBeUndefined()
  })

  it('token modes: none sends no token, optional sends one only with a session', async () => {
    await raw('/public/x')
    expect(last().headers.authorization).toBeUndefined()
    await raw('/maybe/x')
    expect(last().headers.authorization).toMatch(/^Bearer /)
    await raw('/maybe/x', { cookie: '' })
    expect(last().headers.authorization).toBeUndefined()
    const anon = await raw('/api/x', { cookie: '' })
    expect(anon.status).toBe(401)
    expect(JSON.parse(anon.body)).toMatchObject({ error: 'login_required' })
  })

  it("token mode client: tokenward's own client-credentials token, cached, with or without a user session", async () => {
    const userToken = (await sessionOf(world.bff, jar))!.data.accessToken
    const before = world.idp.counts.tokenRequests
    const anon = await raw('/svc/a', { cookie: '' })
    expect(anon.status).toBe(200)
    const first = last().headers.authorization
    expect(first).toMatch(/^Bearer .+/)
    expect(first).not.toBe(`Bearer ${userToken}`)
    await raw('/svc/b')
    expect(last().headers.authorization).toBe(first)
    expect(world.idp.counts.tokenRequests).toBe(before + 1)
    // Rejected by the upstream as invalid: one new token, one retry.
    world.upstream.rejectToken(first!.slice('Bearer '.length))
    try {
      const n = world.upstream.requests.length
      expect((await raw('/svc/c')).status).toBe(200)
      expect(world.upstream.requests.length - n).toBe(2)
      expect(last().headers.authorization).not.toBe(first)
      expect(world.idp.counts.tokenRequests).toBe(before + 2)
    } finally {
      world.upstream.rejectToken(undefined)
    }
  })

  it('drops response fields named in any of several Connection fields (RFC 9110 §7.6.1)', async () => {
    const res = await raw('/api/hop-headers')
    expect(res.status).toBe(200)
    expect(res.headers['x-hop-a']).toBeUndefined()
    expect(res.headers['x-hop-b']).toBeUndefined()
    expect(res.headers['x-end']).toBe('3')
  })

  it('passes an upstream 401 or 403 through unchanged (#54)', async () => {
    const r401 = await raw('/api/status/401')
    expect(r401.status).toBe(401)
    expect(r401.headers['www-authenticate']).toBe('Bearer realm="api"')
    expect(JSON.parse(r401.body)).toEqual({ status: 401 })
    expect((await raw('/api/status/403')).status).toBe(403)
  })
})

describe('refusals: nothing is forwarded', () => {
  it.each([
    ['/api/..%2f..%2fadmin', 400],
    ['/api/%2e%2e/', 400],
    ['/api/../admin', 400],
    ['/api//evil.com', 400],
    ['/api/@evil.com', 400],
    ['/api/http://evil.com', 400],
    ['/api/a%5cb', 400],
    ['/x/../api/y', 400],
    ['/%61pi/y', 400],
    ['/nothing/here', 404],
  ])('%s gives %i (security model S39)', async (path, code) => {
    const n = world.upstream.requests.length
    const res = await raw(path)
    expect(res.status).toBe(code)
    expect((JSON.parse(res.body) as { error: string }).error).toBe(code === 400 ? 'invalid_request' : 'not_found')
    expect(world.upstream.requests.length).toBe(n)
  })

  it('a forged Host or X-Forwarded-Host changes nothing (#50)', async () => {
    await raw('/api/echo', { host: 'evil.example', 'x-forwarded-host': 'evil.example' })
    expect(last().headers.host).toBe(new URL(world.upstream.url).host)
    expect(last().headers['x-forwarded-host']).toBe(new URL(world.bff.url).host)
  })

  it.each([
    ['without X-CSRF', { 'x-csrf': '' }],
    ['with a cross-site Sec-Fetch-Site', { 'sec-fetch-site': 'cross-site' }],
    ['with a foreign Origin', { origin: 'https://evil.example' }],
    ['with Origin null', { origin: 'null' }],
  ])('%s: 403 csrf_failed (security model S26, S28)', async (_name, headers) => {
    const n = world.upstream.requests.length
    for (const method of ['GET', 'POST', 'DELETE']) {
      const res = await raw('/api/echo', headers as Record<string, string>, method)
      expect(res.status).toBe(403)
      expect(JSON.parse(res.body)).toMatchObject({ error: 'csrf_failed' })
    }
    expect(world.upstream.requests.length).toBe(n)
    expect(auditEvents(world.bff.logs).some((e) => e.event === 'csrf_rejected')).toBe(true)
  })

  it.each(['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x'])(
    'a form post with %s from a sibling site (same-site: even a Strict cookie arrives) is refused: it cannot carry X-CSRF',
    async (type) => {
      const n = world.upstream.requests.length
      const res = await raw(
        '/api/echo',
        { 'x-csrf': '', 'content-type': type, 'sec-fetch-site': 'same-site', origin: 'https://other.127.0.0.1.example' },
        'POST',
        Buffer.from('a=1'),
      )
      expect(res.status).toBe(403)
      // Without Fetch Metadata and Origin (an old browser), the missing header alone refuses it.
      const old = await raw('/api/echo', { 'x-csrf': '', 'content-type': type }, 'POST', Buffer.from('a=1'))
      expect(old.status).toBe(403)
      expect(world.upstream.requests.length).toBe(n)
    },
  )

  it('a CORS preflight from a foreign origin gets no CORS grant (security model S27)', async () => {
    const res = await raw('/api/echo', { origin: 'https://evil.example', 'access-control-request-method': 'GET', 'x-csrf': '' }, 'OPTIONS')
    expect(res.status).toBe(403)
    expect(res.headers['access-control-allow-origin']).toBeUndefined()
    expect(res.headers['access-control-allow-credentials']).toBeUndefined()
  })

  it('a method outside the route allowlist: 405 (security model S41)', async () => {
    const n = world.upstream.requests.length
    const res = await raw('/ro/x', {}, 'POST', Buffer.from('{}'))
    expect(res.status).toBe(405)
    expect(res.headers.allow).toBe('GET')
    expect(world.upstream.requests.length).toBe(n)
  })

  it('a body over maxBodyBytes: 413, declared or streamed', async () => {
    expect((await raw('/small/upload', { 'content-type': 'application/json' }, 'POST', Buffer.alloc(2048))).status).toBe(413)
    const chunked = await new Promise<number>((resolve, reject) => {
      const url = new URL(world.bff.url)
      const req = request(
        {
          host: url.hostname,
          port: url.port,
          path: '/small/upload',
          method: 'POST',
          headers: { cookie: jar.header(world.bff.url), 'x-csrf': '1', 'transfer-encoding': 'chunked' },
        },
        (res) => {
          res.resume()
          resolve(res.statusCode ?? 0)
        },
      )
      req.on('error', reject)
      for (let i = 0; i < 4; i++) req.write(Buffer.alloc(512))
      req.end()
    })
    expect(chunked).toBe(413)
  })

  it('an unreachable upstream: 502; a slow one: 504', async () => {
    const down = await raw('/down/x')
    expect(down.status).toBe(502)
    expect(JSON.parse(down.body)).toMatchObject({ error: 'upstream_unavailable' })
    const slow = await raw('/timeout/slow?ms=2000')
    expect(slow.status).toBe(504)
    expect(JSON.parse(slow.body)).toMatchObject({ error: 'upstream_timeout' })
  })
})

describe('streaming', () => {
  it('server-sent events arrive event by event, not buffered', async () => {
    const res = await spaFetch(world.bff, jar, '/api/sse')
    expect(res.headers.get('content-type')).toBe('text/event-stream')
    const reader = (res.body as ReadableStream<Uint8Array>).getReader()
    const arrivals: number[] = []
    const start = Date.now()
    let text = ''
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      text += Buffer.from(value).toString()
      arrivals.push(Date.now() - start)
    }
    expect(text).toBe('data: 0\n\ndata: 1\n\ndata: 2\n\n')
    expect(arrivals.length).toBeGreaterThanOrEqual(3)
    expect(arrivals[0]!).toBeLessThan(arrivals.at(-1)! - 150)
  })

  it('an empty 204, a HEAD and an Expect: 100-continue upload come through whole', async () => {
    const empty = await raw('/api/status/204')
    expect(empty.status).toBe(204)
    expect(empty.body).toBe('')
    const head = await raw('/api/echo', {}, 'HEAD')
    expect(head.status).toBe(200)
    expect(head.body).toBe('')
    const body = Buffer.alloc(5000, 120)
    const up = await raw(
      '/api/echo',
      { 'content-type': 'application/octet-stream', expect: '100-continue', 'content-length': String(body.length) },
      'POST',
      body,
    )
    expect(up.status).toBe(200)
    expect(last().bodyBytes).toBe(5000)
    // tokenward's own server answered the Expect; the upstream gets a plain request.
    expect(last().headers.expect).toBeUndefined()
  })

  it('a connection that breaks before the answer: a GET is sent once more, a POST never (RFC 9110 §9.2.2)', async () => {
    const count = () => world.upstream.requests.filter((r) => r.url.endsWith('/hangup')).length
    const before = count()
    expect((await raw('/api/hangup')).status).toBe(502)
    expect(count() - before).toBe(2)
    const mid = count()
    expect((await raw('/api/hangup', {}, 'POST')).status).toBe(502)
    expect(count() - mid).toBe(1)
  })

  it('an upstream body that breaks off midway is not passed off as complete', async () => {
    const url = new URL(world.bff.url)
    const outcome = await new Promise<string>((resolve) => {
      const req = request(
        { host: url.hostname, port: url.port, path: '/api/broken', headers: { cookie: jar.header(world.bff.url), 'x-csrf': '1' } },
        (res) => {
          let bytes = 0
          res.on('data', (c: Buffer) => (bytes += c.length))
          res.on('end', () => resolve(res.complete ? `complete with ${bytes} bytes` : `incomplete at ${bytes} bytes`))
          res.on('error', () => resolve(`cut off at ${bytes} bytes`))
          res.on('aborted', () => resolve(`aborted at ${bytes} bytes`))
        },
      )
      req.on('error', () => resolve('connection error'))
      req.end()
    })
    expect(outcome).not.toMatch(/^complete/)
    // The session and the connection pool are fine afterwards.
    expect((await spaFetch(world.bff, jar, '/api/echo')).status).toBe(200)
  })

  it('streams a large upload and download with bounded memory', async () => {
    const size = 100 * 1024 * 1024
    const before = process.memoryUsage().rss
    const down = await spaFetch(world.bff, jar, `/api/download?bytes=${size}`)
    let got = 0
    for await (const chunk of down.body!) got += (chunk as Uint8Array).length
    expect(got).toBe(size)
    const up = await new Promise<number>((resolve, reject) => {
      const url = new URL(world.bff.url)
      const req = request(
        {
          host: url.hostname,
          port: url.port,
          path: '/api/upload',
          method: 'POST',
          headers: {
            cookie: jar.header(world.bff.url),
            'x-csrf': '1',
            'content-type': 'application/octet-stream',
            'content-length': String(10 * 1024 * 1024),
          },
        },
        (res) => {
          res.resume()
          resolve(res.statusCode ?? 0)
        },
      )
      req.on('error', reject)
      const chunk = Buffer.alloc(64 * 1024, 1)
      let left = 10 * 1024 * 1024
      const pump = () => {
        while (left > 0) {
          left -= chunk.length
          if (!req.write(chunk)) return void req.once('drain', pump)
        }
        req.end()
      }
      pump()
    })
    expect(up).toBe(200)
    expect(last().bodyBytes).toBe(10 * 1024 * 1024)
    // Test process, proxy and upstream share this process: 100 MB through it
    // must not be held in memory at once.
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * 1024 * 1024)
  })
})
