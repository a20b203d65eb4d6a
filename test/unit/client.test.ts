// The browser helper (`tokenward/client`) in Node, with fake fetch, location
// and EventSource: the headers and credentials tokenward insists on, what a
// 401 does, the session() shapes, logout, and the session-end subscription.
// The real browser runs it in test/e2e/browser.test.ts.

import { spawnSync } from 'node:child_process'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import {
  BffRequestError,
  createBff,
  type BffOptions,
  type EventSourceLike,
  type LocationLike,
  type SessionEndedEvent,
} from '../../src/client/index.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
const DEMO_COPY = join(root, 'demo/spa/client.js')
const DEMO_HEADER = `// GENERATED from src/client/index.ts: the JavaScript that \`npm run build\` writes
// to dist/client/index.js (tokenward/client), copied here so that the demo SPA,
// which runs from source, can load it. Do not edit; change src/client/index.ts, then
//   TOKENWARD_UPDATE_CLIENT=1 npx vitest run test/unit/client.test.ts
`

const SESSION = {
  authenticated: true,
  sub: 'alice',
  claims: { name: 'Alice', email: 'alice@example.com' },
  sid: 'c2lkLW9mLWFsaWNl',
  expiresAt: 1_900_000_000,
  idleExpiresAt: 1_800_000_000,
}
const LOGIN_REQUIRED = { error: 'login_required', message: 'No active session.' }

class FakeLocation implements LocationLike {
  pathname = '/orders/7'
  search = '?tab=open'
  hash = '#top'
  readonly assigned: string[] = []
  assign(url: string): void {
    this.assigned.push(url)
  }
}

interface Call {
  url: string
  method: string
  headers: Headers
  credentials: string | undefined
  body: unknown
}

/** A fetch that answers from `routes` ("METHOD path" → response) and records each call. */
function fakeFetch(routes: Record<string, () => Response>) {
  const calls: Call[] = []
  const fetch = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url
    const method = init.method ?? (input instanceof Request ? input.method : 'GET')
    calls.push({ url, method, headers: new Headers(init.headers), credentials: init.credentials, body: init.body })
    const route = routes[`${method} ${url}`]
    if (!route) throw new TypeError(`fake fetch: nothing at ${method} ${url}`)
    return route()
  }
  return { fetch, calls }
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } })
}

type Listener = (event: { readonly data?: unknown }) => void

/** EventSource as the client sees it; the test plays the server and the browser. */
class FakeEventSource implements EventSourceLike {
  static instances: FakeEventSource[] = []
  readonly url: string
  readyState = 0
  closed = false
  readonly #listeners = new Map<string, Listener[]>()

  constructor(url: string) {
    this.url = url
    FakeEventSource.instances.push(this)
  }

  addEventListener(type: string, listener: Listener): void {
    this.#listeners.set(type, [...(this.#listeners.get(type) ?? []), listener])
  }

  close(): void {
    this.readyState = 2
    this.closed = true
  }

  emit(type: string, data?: string): void {
    for (const listener of this.#listeners.get(type) ?? []) listener(data === undefined ? {} : { data })
  }

  /** Connected: tokenward's first event. */
  connect(): void {
    this.readyState = 1
    this.emit('open')
    this.emit('session', JSON.stringify({ authenticated: true, expiresAt: SESSION.expiresAt }))
  }

  /** The connection dropped; the browser will reconnect by itself. */
  drop(): void {
    this.readyState = 0
    this.emit('error')
  }

  /** The server answered the (re)connection with an error status; EventSource gives up. */
  refuse(): void {
    this.readyState = 2
    this.emit('error')
  }
}

let location: FakeLocation

function client(routes: Record<string, () => Response>, options: Partial<BffOptions> = {}) {
  const fake = fakeFetch(routes)
  const bff = createBff({ fetch: fake.fetch, location, EventSource: FakeEventSource, ...options })
  return { bff, calls: fake.calls }
}

beforeEach(() => {
  location = new FakeLocation()
  FakeEventSource.instances = []
})

afterEach(() => {
  vi.useRealTimers()
  vi.unstubAllGlobals()
})

describe('fetch', () => {
  it('adds X-CSRF: 1 and same-origin credentials, and keeps everything else', async () => {
    const { bff, calls } = client({ 'POST /api/orders': () => json(201, { id: 7 }) })
    const res = await bff.fetch('/api/orders', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Trace': 'abc', 'X-CSRF': '0' },
      body: '{"item":1}',
      credentials: 'include',
    })
    expect(res.status).toBe(201)
    expect(await res.json()).toEqual({ id: 7 })
    expect(calls).toHaveLength(1)
    const [call] = calls
    expect(call!.headers.get('x-csrf')).toBe('1')
    expect(call!.headers.get('content-type')).toBe('application/json')
    expect(call!.headers.get('x-trace')).toBe('abc')
    expect(call!.credentials).toBe('same-origin')
    expect(call!.body).toBe('{"item":1}')
  })

  it('keeps the headers of a Request given as input, and init.headers replace them as in fetch', async () => {
    const { bff, calls } = client({ 'GET http://localhost/api/x': () => json(200, {}) })
    await bff.fetch(new Request('http://localhost/api/x', { headers: { 'X-From-Request': '1' } }))
    await bff.fetch(new Request('http://localhost/api/x', { headers: { 'X-From-Request': '1' } }), { headers: { 'X-From-Init': '1' } })
    expect(calls.map((c) => [c.headers.get('x-from-request'), c.headers.get('x-from-init'), c.headers.get('x-csrf')])).toEqual([
      ['1', null, '1'],
      [null, '1', '1'],
    ])
  })

  it('navigates to the login with the current path, query and hash on 401 login_required, once for parallel calls', async () => {
    const { bff } = client({ 'GET /api/a': () => json(401, LOGIN_REQUIRED), 'GET /api/b': () => json(401, LOGIN_REQUIRED) })
    const [a, b] = await Promise.all([bff.fetch('/api/a'), bff.fetch('/api/b')])
    expect(location.assigned).toEqual([`/auth/login?returnTo=${encodeURIComponent('/orders/7?tab=open#top')}`])
    // The caller still gets the response, body unread.
    expect(a.status).toBe(401)
    expect(await a.json()).toEqual(LOGIN_REQUIRED)
    expect(b.bodyUsed).toBe(false)
  })

  it('calls a configured onLoginRequired instead of navigating', async () => {
    const onLoginRequired = vi.fn()
    const { bff } = client({ 'GET /api/a': () => json(401, LOGIN_REQUIRED) }, { onLoginRequired })
    await bff.fetch('/api/a')
    expect(onLoginRequired).toHaveBeenCalledExactlyOnceWith({ url: '/api/a', returnTo: '/orders/7?tab=open#top' })
    expect(location.assigned).toEqual([])
  })

  it("passes an upstream's own 401 and other errors through without a login", async () => {
    const onLoginRequired = vi.fn()
    const { bff } = client(
      {
        'GET /api/upstream': () =>
          new Response('{"error":"invalid_token"}', {
            status: 401,
            headers: { 'content-type': 'application/json', 'www-authenticate': 'Bearer error="invalid_token"' },
          }),
        'GET /api/text': () => new Response('login_required', { status: 401 }),
        'GET /api/forbidden': () => json(403, { error: 'csrf_failed', message: 'no' }),
      },
      { onLoginRequired },
    )
    expect((await bff.fetch('/api/upstream')).status).toBe(401)
    expect((await bff.fetch('/api/text')).status).toBe(401)
    expect((await bff.fetch('/api/forbidden')).status).toBe(403)
    expect(onLoginRequired).not.toHaveBeenCalled()
    expect(location.assigned).toEqual([])
  })

  it('leaves fetch URLs alone but puts the /auth endpoints under basePath', async () => {
    const { bff, calls } = client(
      {
        'GET /api/a': () => json(401, LOGIN_REQUIRED),
        'GET /bff/auth/session': () => json(200, SESSION),
      },
      { basePath: '/bff/' },
    )
    await bff.fetch('/api/a')
    await bff.session()
    bff.onSessionEnded(() => {})
    expect(calls.map((c) => c.url)).toEqual(['/api/a', '/bff/auth/session'])
    expect(location.assigned).toEqual([`/bff/auth/login?returnTo=${encodeURIComponent('/orders/7?tab=open#top')}`])
    expect(FakeEventSource.instances.map((e) => e.url)).toEqual(['/bff/auth/events'])
    expect(() => createBff({ basePath: 'https://elsewhere.example' })).toThrow(TypeError)
    expect(() => createBff({ basePath: '//elsewhere.example' })).toThrow(TypeError)
  })
})

describe('session', () => {
  it('returns the signed-in session, sent with X-CSRF and sliding by default', async () => {
    const { bff, calls } = client({ 'GET /auth/session': () => json(200, SESSION) })
    expect(await bff.session()).toEqual(SESSION)
    expect(calls[0]!.headers.get('x-csrf')).toBe('1')
    expect(calls[0]!.credentials).toBe('same-origin')
  })

  it('asks with ?slide=false when told not to slide', async () => {
    const { bff, calls } = client({ 'GET /auth/session?slide=false': () => json(200, SESSION) })
    expect((await bff.session({ slide: false }))?.sub).toBe('alice')
    expect(calls.map((c) => c.url)).toEqual(['/auth/session?slide=false'])
  })

  it('returns null when signed out, and neither navigates nor calls onLoginRequired', async () => {
    const onLoginRequired = vi.fn()
    const { bff } = client({ 'GET /auth/session': () => json(401, { authenticated: false, ...LOGIN_REQUIRED }) }, { onLoginRequired })
    expect(await bff.session()).toBeNull()
    expect(onLoginRequired).not.toHaveBeenCalled()
    expect(location.assigned).toEqual([])
  })

  it('throws a BffRequestError with the code and Retry-After for other answers', async () => {
    const { bff } = client({
      'GET /auth/session': () => json(503, { error: 'session_store_unavailable', message: 'Try again.' }, { 'retry-after': '2' }),
    })
    const err = await bff.session().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(BffRequestError)
    expect(err).toMatchObject({
      status: 503,
      code: 'session_store_unavailable',
      retryAfter: 2,
      message: 'tokenward answered 503 session_store_unavailable: Try again.',
    })
  })

  it.each([
    ['a body that is not a session', () => json(200, { authenticated: false })],
    ['a session without its times', () => json(200, { ...SESSION, expiresAt: undefined })],
    ['HTML', () => new Response('<!doctype html>', { status: 200, headers: { 'content-type': 'text/html' } })],
  ])('refuses %s', async (_, answer) => {
    const { bff } = client({ 'GET /auth/session': answer })
    await expect(bff.session()).rejects.toMatchObject({ name: 'BffRequestError', code: 'invalid_response' })
  })
})

describe('login and logout', () => {
  it('login() comes back to the current page, or to the path given', () => {
    const { bff } = client({})
    bff.login()
    bff.login('/settings?x=1')
    expect(location.assigned).toEqual([
      `/auth/login?returnTo=${encodeURIComponent('/orders/7?tab=open#top')}`,
      `/auth/login?returnTo=${encodeURIComponent('/settings?x=1')}`,
    ])
  })

  it('logout() POSTs with X-CSRF, then navigates to redirectTo', async () => {
    const redirectTo = 'https://idp.example/session/end?client_id=app&post_logout_redirect_uri=https%3A%2F%2Fapp.example%2F'
    const { bff, calls } = client({ 'POST /auth/logout': () => json(200, { redirectTo }) })
    await bff.logout()
    expect(calls).toHaveLength(1)
    expect(calls[0]!.headers.get('x-csrf')).toBe('1')
    expect(calls[0]!.credentials).toBe('same-origin')
    expect(location.assigned).toEqual([redirectTo])
  })

  it.each([
    ['a javascript: URL', () => json(200, { redirectTo: 'javascript:alert(1)' })],
    ['no redirectTo', () => json(200, {})],
    ['403 csrf_failed', () => json(403, { error: 'csrf_failed', message: 'no' })],
  ])('logout() with %s throws and navigates nowhere', async (_, answer) => {
    const { bff } = client({ 'POST /auth/logout': answer })
    await expect(bff.logout()).rejects.toBeInstanceOf(BffRequestError)
    expect(location.assigned).toEqual([])
  })
})

describe('onSessionEnded', () => {
  it('opens one EventSource on /auth/events for all subscribers and calls each once on session_ended', async () => {
    const { bff } = client({})
    const first: SessionEndedEvent[] = []
    const second: SessionEndedEvent[] = []
    bff.onSessionEnded((e) => first.push(e))
    bff.onSessionEnded((e) => second.push(e))
    expect(FakeEventSource.instances.map((e) => e.url)).toEqual(['/auth/events'])
    const [stream] = FakeEventSource.instances
    stream!.connect()
    stream!.emit('session_ended', JSON.stringify({ reason: 'logout' }))
    stream!.emit('session_ended', JSON.stringify({ reason: 'logout' }))
    expect(first).toEqual([{ reason: 'logout' }])
    expect(second).toEqual([{ reason: 'logout' }])
    // Closed, so the browser does not reconnect to a stream that can only say 401.
    expect(stream!.closed).toBe(true)
  })

  it('closes the stream when the last subscriber leaves', () => {
    const { bff } = client({})
    const stopA = bff.onSessionEnded(() => {})
    const stopB = bff.onSessionEnded(() => {})
    const [stream] = FakeEventSource.instances
    stopA()
    expect(stream!.closed).toBe(false)
    stopB()
    expect(stream!.closed).toBe(true)
    stream!.emit('session_ended', JSON.stringify({ reason: 'logout' }))
  })

  it("leaves a dropped connection to the browser's own reconnect", () => {
    const { bff, calls } = client({})
    const ended = vi.fn()
    bff.onSessionEnded(ended)
    const [stream] = FakeEventSource.instances
    stream!.connect()
    stream!.drop()
    expect(calls).toEqual([])
    expect(FakeEventSource.instances).toHaveLength(1)
    stream!.connect()
    stream!.emit('session_ended', JSON.stringify({ reason: 'session_revoked' }))
    expect(ended).toHaveBeenCalledExactlyOnceWith({ reason: 'session_revoked' })
  })

  it('when the stream is refused and the session is gone, reports no_session', async () => {
    const { bff, calls } = client({ 'GET /auth/session?slide=false': () => json(401, LOGIN_REQUIRED) })
    const ended = vi.fn()
    bff.onSessionEnded(ended)
    FakeEventSource.instances[0]!.refuse()
    await vi.waitFor(() => expect(ended).toHaveBeenCalledExactlyOnceWith({ reason: 'no_session' }))
    // Asked without sliding the idle timeout.
    expect(calls.map((c) => c.url)).toEqual(['/auth/session?slide=false'])
    expect(FakeEventSource.instances).toHaveLength(1)
  })

  it('when the stream is refused but the session lives (or tokenward is down), streams again with backoff', async () => {
    vi.useFakeTimers()
    let answer = (): Response => json(200, SESSION)
    const { bff } = client({ 'GET /auth/session?slide=false': () => answer() })
    const ended = vi.fn()
    bff.onSessionEnded(ended)
    FakeEventSource.instances[0]!.refuse()
    await vi.advanceTimersByTimeAsync(2_000)
    expect(FakeEventSource.instances).toHaveLength(2)

    // tokenward unreachable: keep trying, further apart each time.
    answer = () => {
      throw new TypeError('fetch failed')
    }
    FakeEventSource.instances[1]!.refuse()
    await vi.advanceTimersByTimeAsync(1_000)
    expect(FakeEventSource.instances).toHaveLength(2)
    await vi.advanceTimersByTimeAsync(3_000)
    expect(FakeEventSource.instances).toHaveLength(3)

    const last = FakeEventSource.instances[2]!
    last.connect()
    last.emit('session_ended', JSON.stringify({ reason: 'backchannel_logout' }))
    expect(ended).toHaveBeenCalledExactlyOnceWith({ reason: 'backchannel_logout' })
    expect(FakeEventSource.instances.slice(0, 2).map((e) => e.readyState)).toEqual([2, 2])
  })

  it('stops retrying when unsubscribed while waiting', async () => {
    vi.useFakeTimers()
    const { bff } = client({ 'GET /auth/session?slide=false': () => json(200, SESSION) })
    const stop = bff.onSessionEnded(() => {})
    FakeEventSource.instances[0]!.refuse()
    await vi.advanceTimersByTimeAsync(0)
    stop()
    await vi.advanceTimersByTimeAsync(120_000)
    expect(FakeEventSource.instances).toHaveLength(1)
  })

  it("does not tell this tab's subscribers about its own logout, which navigates to the IdP instead", async () => {
    const redirectTo = 'https://idp.example/session/end'
    const { bff } = client({
      'POST /auth/logout': () => {
        // tokenward publishes session_ended before it answers.
        stream.emit('session_ended', JSON.stringify({ reason: 'logout' }))
        return json(200, { redirectTo })
      },
    })
    const ended = vi.fn()
    bff.onSessionEnded(ended)
    const stream = FakeEventSource.instances[0]!
    stream.connect()
    await bff.logout()
    expect(ended).not.toHaveBeenCalled()
    expect(stream.closed).toBe(true)
    expect(location.assigned).toEqual([redirectTo])
  })

  it('a subscriber that throws does not keep the others from hearing, and its error still surfaces', () => {
    const queued: Array<() => void> = []
    vi.stubGlobal('queueMicrotask', (task: () => void) => queued.push(task))
    const { bff } = client({})
    const later = vi.fn()
    bff.onSessionEnded(() => {
      throw new Error('subscriber bug')
    })
    bff.onSessionEnded(later)
    FakeEventSource.instances[0]!.emit('session_ended', '{"reason":"logout"}')
    expect(later).toHaveBeenCalledExactlyOnceWith({ reason: 'logout' })
    expect(queued).toHaveLength(1)
    expect(() => queued[0]!()).toThrow('subscriber bug')
  })

  it('reports a malformed session_ended as an ended session all the same', () => {
    const { bff } = client({})
    const ended = vi.fn()
    bff.onSessionEnded(ended)
    FakeEventSource.instances[0]!.emit('session_ended', 'not json')
    expect(ended).toHaveBeenCalledExactlyOnceWith({ reason: 'unknown' })
  })
})

describe('onSessionEnding', () => {
  const at = (seconds: number) => vi.setSystemTime(seconds * 1000)

  it('calls back once, `before` seconds ahead of expiresAt, after reading the session again without sliding it', async () => {
    vi.useFakeTimers()
    at(SESSION.expiresAt - 300)
    const { bff, calls } = client({ 'GET /auth/session?slide=false': () => json(200, SESSION) })
    const ending = vi.fn()
    bff.onSessionEnding(ending, { before: 60 })
    await vi.advanceTimersByTimeAsync(239_000)
    expect(ending).not.toHaveBeenCalled()
    await vi.advanceTimersByTimeAsync(1_000)
    expect(ending).toHaveBeenCalledExactlyOnceWith({ expiresAt: SESSION.expiresAt, secondsLeft: 60 })
    expect(calls.map((c) => c.url)).toEqual(['/auth/session?slide=false', '/auth/session?slide=false'])
    await vi.advanceTimersByTimeAsync(600_000)
    expect(ending).toHaveBeenCalledTimes(1)
    expect(calls).toHaveLength(2)
  })

  it('waits for the new end when a refresh moved it later (a rotated refresh token), by default 60 s ahead', async () => {
    vi.useFakeTimers()
    at(SESSION.expiresAt - 120)
    let expiresAt = SESSION.expiresAt
    const { bff } = client({ 'GET /auth/session?slide=false': () => json(200, { ...SESSION, expiresAt }) })
    const ending = vi.fn()
    bff.onSessionEnding(ending)
    await vi.advanceTimersByTimeAsync(0)
    expiresAt += 600
    await vi.advanceTimersByTimeAsync(60_000)
    expect(ending).not.toHaveBeenCalled()
    await vi.advanceTimersByTimeAsync(600_000)
    expect(ending).toHaveBeenCalledExactlyOnceWith({ expiresAt, secondsLeft: 60 })
  })

  it('already within `before`: at once; signed out: never; unsubscribed: never; tokenward down: asks again later', async () => {
    vi.useFakeTimers()
    at(SESSION.expiresAt - 10)
    const soon = vi.fn()
    client({ 'GET /auth/session?slide=false': () => json(200, SESSION) }).bff.onSessionEnding(soon)
    await vi.advanceTimersByTimeAsync(0)
    expect(soon).toHaveBeenCalledExactlyOnceWith({ expiresAt: SESSION.expiresAt, secondsLeft: 10 })

    const signedOut = vi.fn()
    client({ 'GET /auth/session?slide=false': () => json(401, { authenticated: false, ...LOGIN_REQUIRED }) }).bff.onSessionEnding(signedOut)
    const gone = vi.fn()
    at(SESSION.expiresAt - 300)
    const stop = client({ 'GET /auth/session?slide=false': () => json(200, SESSION) }).bff.onSessionEnding(gone)
    await vi.advanceTimersByTimeAsync(0)
    stop()
    let down = true
    const later = vi.fn()
    client({
      'GET /auth/session?slide=false': () =>
        down ? json(503, { error: 'session_store_unavailable', message: '...' }) : json(200, SESSION),
    }).bff.onSessionEnding(later)
    await vi.advanceTimersByTimeAsync(1_000)
    down = false
    await vi.advanceTimersByTimeAsync(300_000)
    expect(signedOut).not.toHaveBeenCalled()
    expect(gone).not.toHaveBeenCalled()
    expect(later).toHaveBeenCalledTimes(1)
    expect(location.assigned).toEqual([])
  })

  it('a session end further away than a timer can wait is reached in steps', async () => {
    vi.useFakeTimers()
    at(SESSION.expiresAt - 40 * 86_400)
    const { bff } = client({ 'GET /auth/session?slide=false': () => json(200, SESSION) })
    const ending = vi.fn()
    bff.onSessionEnding(ending)
    await vi.advanceTimersByTimeAsync(0)
    await vi.advanceTimersByTimeAsync(30 * 86_400_000)
    expect(ending).not.toHaveBeenCalled()
    await vi.advanceTimersByTimeAsync(10 * 86_400_000)
    expect(ending).toHaveBeenCalledExactlyOnceWith({ expiresAt: SESSION.expiresAt, secondsLeft: 60 })
  })
})

describe('packaging', () => {
  it('keeps nothing in browser storage', async () => {
    const source = await readFile(join(root, 'src/client/index.ts'), 'utf8')
    // Code only: the comments say that it stores nothing.
    const code = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '')
    expect(code).not.toMatch(/localStorage|sessionStorage|indexedDB|document\.cookie|caches\./)
  })

  it('exports tokenward/client from what tsconfig.client.json builds, and the server build leaves it out', async () => {
    const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as {
      exports: Record<string, unknown>
      scripts: Record<string, string>
    }
    const clientConfig = JSON.parse(await readFile(join(root, 'tsconfig.client.json'), 'utf8')) as {
      compilerOptions: { outDir: string; declaration: boolean }
    }
    const serverConfig = JSON.parse(await readFile(join(root, 'tsconfig.build.json'), 'utf8')) as { exclude?: string[] }
    const out = `./${clientConfig.compilerOptions.outDir}`
    expect(pkg.exports['./client']).toEqual({ types: `${out}/index.d.ts`, default: `${out}/index.js` })
    expect(clientConfig.compilerOptions.declaration).toBe(true)
    expect(pkg.scripts.build).toContain('tsc -p tsconfig.client.json')
    expect(serverConfig.exclude).toContain('src/client')
  })

  it('demo/spa/client.js is the JavaScript the build emits for tokenward/client', async () => {
    const out = join(root, '.test-dist', `client-${process.pid}`)
    await mkdir(out, { recursive: true })
    try {
      const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
      const r = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.client.json', '--outDir', out], { cwd: root, encoding: 'utf8' })
      expect(r.status, `${r.stdout}${r.stderr}`).toBe(0)
      const expected = DEMO_HEADER + (await readFile(join(out, 'index.js'), 'utf8'))
      if (process.env.TOKENWARD_UPDATE_CLIENT === '1') await writeFile(DEMO_COPY, expected)
      const copy = await readFile(DEMO_COPY, 'utf8').catch(() => '(missing)')
      expect(copy === expected, 'demo/spa/client.js is stale: TOKENWARD_UPDATE_CLIENT=1 npx vitest run test/unit/client.test.ts').toBe(true)
    } finally {
      await rm(out, { recursive: true, force: true })
    }
  }, 30_000)
})
