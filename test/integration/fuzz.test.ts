// HTTP-level fuzzing of a running tokenward (issue 9): thousands of malformed
// and hostile requests written as raw bytes on TCP sockets, so that what
// fetch would refuse to send (broken framing, control bytes, conflicting
// lengths) really reaches Node's parser and the app. Reproducible: the cases
// come from a seeded PRNG; the seed is printed, and FUZZ_SEED=<seed> replays it.
import { connect } from 'node:net'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import type { RecordedRequest } from '../helpers/upstream.js'
import { login } from '../helpers/login.js'
import { startWorld, type World } from '../helpers/world.js'

const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : (Date.now() ^ (process.pid << 8)) >>> 0
const BATCHES = 5
const PER_BATCH = 1200
const CONCURRENCY = 24
/** Long enough for a loaded CI machine, short enough that a hung request fails the run. */
const REQUEST_TIMEOUT_MS = 5_000
/** Heap growth allowed between the first and the last batch, after GC. */
const HEAP_BUDGET_BYTES = 48 * 1024 * 1024

/** mulberry32: small, fast and good enough to pick fuzz cases reproducibly. */
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const random = prng(SEED)
const int = (n: number) => Math.floor(random() * n)
const chance = (p: number) => random() < p
const pick = <T>(items: readonly T[]): T => items[int(items.length)]!
/** A string as raw bytes: each UTF-8 byte becomes one latin1 character, so Buffer.from(s, 'latin1') sends exactly them. */
const utf8Bytes = (s: string) => Buffer.from(s, 'utf8').toString('latin1')

interface RouteSpec {
  prefix: string
  base: string
  token: 'user' | 'none'
  methods?: string[]
  maxBodyBytes: number
}

// Three routes on the one echo upstream, told apart by their base paths.
const ROUTES: RouteSpec[] = [
  { prefix: '/api/admin', base: '/admin', token: 'user', methods: ['GET'], maxBodyBytes: 10 * 1024 * 1024 },
  { prefix: '/api', base: '/v1', token: 'user', maxBodyBytes: 10 * 1024 * 1024 },
  { prefix: '/pub', base: '/public', token: 'none', maxBodyBytes: 4096 },
]

/** The route a raw path names literally, on whole segments, longest prefix first (docs/routes.md). */
function literalRoute(rawPath: string): RouteSpec | undefined {
  return ROUTES.find((r) => rawPath === r.prefix || rawPath.startsWith(`${r.prefix}/`))
}

interface Case {
  id: string
  kind: string
  bytes: Buffer
  /** Close our side after writing: the request is incomplete on purpose. */
  halfClose: boolean
  /** Node's parser may refuse it by closing the connection without an answer. */
  mayClose: boolean
  /** Whether tokenward may forward it (refusing is always allowed). */
  forwardable: boolean
  /** Header names that must not reach the upstream for this request. */
  mustNotForward: string[]
  /** A route request that must be refused: a 4xx or a close, never 2xx/3xx. */
  mustRefuse: boolean
}

interface Outcome {
  status: number | undefined
  timedOut: boolean
  head: string
}

let world: World
let port = 0
let hostHeader = ''
let seal = ''
let publicOrigin = ''
const cookieName = '__Host-tokenward'

beforeAll(async () => {
  // eslint-disable-next-line no-console
  console.log(`fuzz seed ${SEED} (replay with FUZZ_SEED=${SEED})`)
  world = await startWorld({
    routes: ROUTES.map((r) => ({
      prefix: r.prefix,
      upstream: `{upstream}${r.base}`,
      token: r.token,
      ...(r.methods ? { methods: r.methods } : {}),
      maxBodyBytes: r.maxBodyBytes,
    })),
  })
  port = Number(new URL(world.bff.url).port)
  hostHeader = `127.0.0.1:${port}`
  publicOrigin = world.bff.config.publicOrigin
  expect(world.bff.config.cookie.name).toBe(cookieName)
  const { jar } = await login(world.bff.url)
  seal = jar.get(cookieName) ?? ''
  expect(seal).toMatch(/^Fe26\.2\*/)
})
afterAll(() => world?.close())

// ---------------------------------------------------------------------------
// Request bytes

type Headers = Array<[string, string]>

interface Spec {
  method: string
  target: string
  version?: string
  /** Host header value; null sends none. */
  host?: string | null
  headers: Headers
  body?: string
  /** Bytes appended after the request (a pipelined or smuggled one). */
  trailer?: string
  /** Stop inside the header block: no blank line, no body. */
  cut?: boolean
}

function render(id: string, s: Spec): string {
  const lines = [`${s.method} ${s.target} ${s.version ?? 'HTTP/1.1'}`]
  if (s.host !== null) lines.push(`Host: ${s.host ?? hostHeader}`)
  lines.push(`X-Fuzz: ${id}`)
  for (const [n, v] of s.headers) lines.push(`${n}: ${v}`)
  if (s.cut) return `${lines.join('\r\n')}\r\nX-Ha`
  return `${lines.join('\r\n')}\r\n\r\n${s.body ?? ''}${s.trailer ?? ''}`
}

/** A header as Node folds duplicates: the first for the fields it discards duplicates of, else joined. */
function nodeHeader(headers: Headers, name: string): string | undefined {
  const values = headers.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v.trim())
  if (values.length === 0) return undefined
  if (['host', 'authorization', 'content-length', 'content-type', 'user-agent', 'referer', 'proxy-authorization'].includes(name))
    return values[0]
  return values.join(name === 'cookie' ? '; ' : ', ')
}

/** The first `name=` pair of a Cookie header, unquoted (the brief's rule). */
function firstCookie(cookie: string | undefined, name: string): string | undefined {
  for (const part of (cookie ?? '').split(';')) {
    const p = part.replace(/^ +/, '')
    if (p.startsWith(`${name}=`)) {
      const v = p.slice(name.length + 1).trim()
      return v.length >= 2 && v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v
    }
  }
  return undefined
}

/** Whether the CSRF rules let a well-formed request to `route` through (docs/endpoints.md, the proxy row). */
function passesCsrf(headers: Headers): boolean {
  if (nodeHeader(headers, 'x-csrf') !== '1') return false
  if (nodeHeader(headers, 'sec-fetch-site') === 'cross-site') return false
  const origin = nodeHeader(headers, 'origin')
  return origin === undefined || origin === publicOrigin
}

function mayForward(route: RouteSpec | undefined, method: string, headers: Headers, bodyBytes: number): boolean {
  if (!route) return false
  if (route.methods && !route.methods.includes(method)) return false
  if (!passesCsrf(headers)) return false
  if (route.token === 'user' && firstCookie(nodeHeader(headers, 'cookie'), cookieName) !== seal) return false
  const length = Number(nodeHeader(headers, 'content-length') ?? 0)
  if (length > route.maxBodyBytes || bodyBytes > route.maxBodyBytes) return false
  return true
}

// ---------------------------------------------------------------------------
// Pieces

/** Path pieces the contract says escape a prefix (security model S39): requests carrying one are refused. */
const EVIL_PIECES = [
  '..',
  '%2e%2e',
  '%2E%2e',
  '.%2e',
  '%2e.',
  '.',
  '%2e',
  '%2f',
  '%2F',
  'a%2fb',
  '%5c',
  '%5C',
  'a%5cb',
  '%00',
  '%0a',
  '%0d%0aHost:%20evil',
  '%zz',
  '%',
  '%2',
  '%c0%ae%c0%ae',
  '%e0%80%ae',
  '%ff',
  '..%2f..%2fadmin',
  '%2e%2e%2f',
  'x%00y',
]
/** Refused only as the first segment after the prefix: it reads as a scheme or an authority. */
const EVIL_FIRST = ['@evil.com', '%40evil.com', 'http:', 'http:%2f%2fevil.com', 'HTTPS:evil.com', 'javascript:x']
/** Odd but allowed pieces, forwarded as sent. */
const ODD_PIECES = [
  'a',
  'orders',
  '7',
  'x.y',
  '...',
  'a..b',
  '%20',
  '%41',
  '%C3%A9',
  '%EF%BC%8E%EF%BC%8E',
  '%252e%252e',
  '%252f',
  '~user',
  'x;y',
  '..;',
  'a=b',
  "it's",
  '(x)',
  '*',
  '!',
  '$',
  '+',
  ',',
  'x@y',
  'x:y',
  utf8Bytes('é'),
  utf8Bytes('．．'),
  utf8Bytes('ａｐｉ'),
  utf8Bytes('\u202e'),
  utf8Bytes('K'),
  utf8Bytes('İ'),
  utf8Bytes('a\u0301'),
  'A'.repeat(300),
]
/** Prefix spellings that name no route literally: never forwarded (400 or 404). */
const EVASIVE_STARTS = [
  '/%61pi',
  '/API',
  '/apix',
  '/api%2fadmin',
  '/x/../api',
  '/./api',
  '//api',
  '/%2e/api',
  '/x/%2e%2e/api',
  '/%70ub',
  utf8Bytes('/ａpi'),
  '/pub%2f',
  '/api..',
  '/api;/x',
]

function randomPath(): { path: string; evil: boolean } {
  const start = chance(0.8) ? pick(ROUTES).prefix : pick(EVASIVE_STARTS)
  let evil = false
  let path = start
  const n = int(5)
  for (let i = 0; i < n; i++) {
    const r = random()
    let sep = '/'
    if (chance(0.06)) {
      sep = pick(['//', '/./', '/../', '\\', '/%2e%2e/'])
      evil = true
    }
    let piece: string
    if (r < 0.25) {
      piece = pick(EVIL_PIECES)
      evil = true
    } else if (r < 0.3 && i === 0) {
      piece = pick(EVIL_FIRST)
      evil = true
    } else {
      piece = pick(ODD_PIECES)
    }
    path += `${sep}${piece}`
  }
  if (chance(0.1)) path += '/'
  return { path, evil }
}

function randomQuery(): string {
  switch (int(8)) {
    case 0:
      return `?${'q=1&'.repeat(int(3000))}`
    case 1:
      return `?x=${pick(['%zz', '%', '%00', '%c0%ae', '..%2f', '%2f%2fevil.com', utf8Bytes('é'), 'a+b', '%0d%0aSet-Cookie:x=1'])}`
    case 2:
      return '?a=1#frag'
    case 3:
      return `?${utf8Bytes('．．=／')}`
    default:
      return chance(0.5) ? '' : `?x=${int(1000)}`
  }
}

function sessionCookie(): string | undefined {
  return chance(0.7) ? `${cookieName}=${seal}` : undefined
}

/** The headers of a request the SPA would send, with a session or not. */
function spaHeaders(options: { csrf?: boolean; cookie?: string | undefined } = {}): Headers {
  const h: Headers = []
  if (options.csrf ?? chance(0.9)) h.push(['X-CSRF', '1'])
  const cookie = 'cookie' in options ? options.cookie : sessionCookie()
  if (cookie !== undefined) h.push(['Cookie', cookie])
  if (chance(0.2)) h.push(['Accept', 'application/json'])
  return h
}

function mutateSeal(): string {
  const s = seal
  switch (int(6)) {
    case 0:
      return s.slice(0, int(s.length))
    case 1: {
      const i = int(s.length - 3)
      return `${s.slice(0, i)}${s[i] === 'A' ? 'B' : 'A'}${s.slice(i + 1)}`
    }
    case 2:
      return s.replace(/\*/g, '**')
    case 3:
      return `Fe26.2*${'A'.repeat(int(3000))}`
    case 4:
      return s.toUpperCase()
    default:
      return `${s.slice(0, 40)}${s.slice(60)}`
  }
}

// ---------------------------------------------------------------------------
// Case generators: each returns the request and what may happen to it.

type Gen = () => Omit<Case, 'id' | 'bytes'> & { spec: Spec }

function routeCase(kind: string, spec: Spec, evil = false, extra: Partial<Case> = {}): Omit<Case, 'id' | 'bytes'> & { spec: Spec } {
  const q = spec.target.indexOf('?')
  const rawPath = q < 0 ? spec.target : spec.target.slice(0, q)
  const route = literalRoute(rawPath)
  const hash = spec.target.slice(q < 0 ? spec.target.length : q).includes('#')
  const forwardable = !evil && !hash && mayForward(route, spec.method, spec.headers, Buffer.byteLength(spec.body ?? '', 'latin1'))
  return {
    kind,
    spec,
    halfClose: false,
    mayClose: false,
    forwardable,
    mustNotForward: [],
    mustRefuse: route !== undefined && !forwardable,
    ...extra,
  }
}

const generators: Array<[number, string, Gen]> = [
  [
    8,
    'path',
    () => {
      const { path, evil } = randomPath()
      // No HEAD: a proxied HEAD makes @hono/node-server write headers twice (the BUG case below).
      const method = pick(['GET', 'GET', 'GET', 'DELETE', 'OPTIONS', 'POST', 'PUT', 'PATCH'])
      const body = ['POST', 'PUT', 'PATCH'].includes(method) ? '{"a":1}' : undefined
      const headers = spaHeaders()
      if (body !== undefined) headers.push(['Content-Type', 'application/json'], ['Content-Length', String(body.length)])
      // Raw bytes Node's parser refuses in a request line: it may close without an answer.
      // eslint-disable-next-line no-control-regex -- control characters are what is looked for here
      const mayClose = /[\x00-\x20\x7f]/.test(path)
      return routeCase('path', { method, target: `${path}${randomQuery()}`, headers, body }, evil, { mayClose })
    },
  ],
  [
    4,
    'cookie',
    () => {
      const route = pick(ROUTES)
      const variants: Array<() => string> = [
        () => `${cookieName}=${seal}`,
        () => `x${cookieName}=garbage; ${cookieName}=${seal}`,
        () => `${cookieName}x=garbage; ${cookieName}-tx=garbage; ${cookieName}=${seal}`,
        () => `${cookieName}=garbage; ${cookieName}=${seal}`,
        () => `${cookieName}=${seal}; ${cookieName}=garbage`,
        () => `${cookieName}="${seal}"`,
        () => `${cookieName.toLowerCase()}=${seal}`,
        () => `${cookieName}=${mutateSeal()}`,
        () => `${cookieName} =${seal}`,
        () => `a=${'b'.repeat(8000 + int(6000))}; ${cookieName}=${seal}`,
        () => Array.from({ length: 200 + int(300) }, (_, i) => `c${i}=${i}`).join('; '),
        // Not `seal + 'é'`: data appended to a seal still opens it, a bug covered in test/property/cookies.test.ts.
        () => `${cookieName}=${utf8Bytes('é')}${seal}`,
        () => `=${cookieName}=${seal}`,
        () => `${cookieName}=${seal.slice(0, 100)}\t${seal.slice(100)}`,
        () => ';;;;',
        () => `${cookieName}=`,
        () => `${cookieName}=${'%'.repeat(int(100))}`,
      ]
      const cookie = pick(variants)()
      const headers = spaHeaders({ cookie, csrf: chance(0.95) })
      // Two Cookie fields: Node joins them with `; `, so the first still wins.
      if (chance(0.15)) headers.push(['Cookie', `${cookieName}=${chance(0.5) ? seal : 'garbage'}`])
      const huge = cookie.length > 16 * 1024 - 400
      return routeCase('cookie', { method: 'GET', target: `${route.prefix}/c${int(100)}`, headers }, false, { mayClose: huge })
    },
  ],
  [
    5,
    'headers',
    () => {
      const route = pick(ROUTES)
      const headers = spaHeaders()
      const mustNotForward: string[] = []
      let mayClose = false
      let forwardable: boolean | undefined
      switch (int(14)) {
        case 0:
          headers.push(['X-Big', 'a'.repeat(17_000 + int(30_000))])
          mayClose = true
          break
        case 1:
          headers.push(['X-Big', 'a'.repeat(14_000)])
          break
        case 2:
          // Below Node's 1,000 header lines per message: beyond it, the BUG case
          // below (tokenward's own fields pushed out at the upstream) fires.
          for (let i = 0, n = 100 + int(850); i < n; i++) headers.push(['X-Rep', String(i % 10)])
          break
        case 3:
          headers.push(['X-CSRF', chance(0.5) ? '1' : '0'])
          break
        case 4:
          // Whatever Node makes of these, a smuggled credential must not reach the
          // upstream and the tail request (no X-Fuzz, no Host) must not be forwarded.
          headers.push([
            'X-Inject',
            pick([
              'a\rCookie: x',
              'a\nAuthorization: Bearer evil-browser-token',
              'a\r\n Cookie: x',
              'a\u0000b',
              'a\r\n\r\nGET /api/../admin HTTP/1.1',
            ]),
          ])
          mayClose = true
          break
        case 5:
          headers.push(
            ['Host', pick(['evil.com', 'evil.com:80', hostHeader])],
            ['X-Forwarded-Host', 'evil.com'],
            ['Forwarded', 'host=evil.com;proto=https'],
          )
          headers.push(['X-Forwarded-For', '6.6.6.6'], ['X-Real-IP', '6.6.6.6'])
          mustNotForward.push('forwarded', 'x-real-ip')
          break
        case 6:
          headers.push(['Origin', pick([publicOrigin, 'https://evil.com', 'null', `${publicOrigin}.evil.com`, publicOrigin.toUpperCase()])])
          break
        case 7:
          headers.push(['Sec-Fetch-Site', pick(['cross-site', 'same-origin', 'same-site', 'none', 'CROSS-SITE'])])
          break
        case 8:
          headers.push(['Authorization', 'Bearer evil-browser-token'], ['Proxy-Authorization', 'Basic evil-browser-token'])
          mustNotForward.push('proxy-authorization')
          break
        case 9: {
          const listed = pick(['x-secret', 'x-secret, accept', 'X-SECRET , keep-alive', 'close, x-secret'])
          headers.push(['Connection', listed], ['X-Secret', 'hop'], ['Keep-Alive', 'timeout=5'], ['TE', 'trailers'], ['Trailer', 'x'])
          mustNotForward.push('x-secret', 'keep-alive', 'te', 'trailer')
          break
        }
        case 10:
          headers.push([pick(['X Bad', 'X-Bad ', ' X-Lead', 'X\u0000', 'X:Colon', utf8Bytes('X-é'), '']), 'v'])
          mayClose = true
          break
        case 11:
          headers.push(['X-Value', utf8Bytes(pick(['é', '\u202e', '．．', '\ud83d\ude00'])) + '\u00ff'])
          break
        case 12:
          headers.push(
            ['Upgrade', pick(['websocket', 'h2c', 'foo'])],
            ['Connection', 'Upgrade'],
            ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='],
            ['Sec-WebSocket-Version', '13'],
          )
          mayClose = true
          // Not a WebSocket route: the handshake is refused whatever else it carries.
          forwardable = false
          break
        default:
          headers.push(['Expect', pick(['100-continue', 'bogus'])])
          mayClose = true
      }
      const c = routeCase('headers', { method: 'GET', target: `${route.prefix}/h${int(100)}`, headers }, false, {
        mayClose,
        mustNotForward,
      })
      if (forwardable === false) {
        c.forwardable = false
        c.mustRefuse = true
      }
      return c
    },
  ],
  [
    2,
    'method',
    () => {
      const route = pick(ROUTES)
      const method = pick([
        'FOO',
        'GETT',
        'get',
        'Get',
        'G\u0000T',
        'X'.repeat(200),
        'TRACE',
        'PROPFIND',
        'MKCOL',
        'M-SEARCH',
        'PURGE',
        'QUERY',
        'SEARCH',
        'LINK',
        'PRI',
        'CONNECT',
        'POST',
        'DELETE',
      ])
      const known = /^(TRACE|PROPFIND|MKCOL|M-SEARCH|PURGE|QUERY|SEARCH|LINK|POST|DELETE)$/.test(method)
      const target = method === 'CONNECT' ? pick(['evil.com:443', `${route.prefix}/m`]) : `${route.prefix}/m${int(100)}`
      return routeCase('method', { method, target, headers: spaHeaders() }, !known, { mayClose: true })
    },
  ],
  [
    2,
    'request-line',
    () => {
      const route = pick(ROUTES)
      const variants: Array<() => Spec> = [
        () => ({
          method: 'GET',
          target: `${route.prefix}/v`,
          version: pick(['HTTP/1.0', 'HTTP/2.0', 'HTTP/9.9', 'HTTP/1.1x', 'HTTP/1', 'http/1.1', 'HTTP/01.1', '']),
          headers: spaHeaders(),
        }),
        () => ({ method: 'GET', target: `http://evil.com${route.prefix}/v`, headers: spaHeaders() }),
        () => ({ method: 'GET', target: `http://${hostHeader}${route.prefix}/v`, headers: spaHeaders() }),
        () => ({ method: 'GET', target: `//evil.com${route.prefix}/v`, headers: spaHeaders() }),
        () => ({ method: 'OPTIONS', target: '*', headers: spaHeaders() }),
        () => ({ method: 'GET', target: `${route.prefix}/v`, host: null, headers: spaHeaders() }),
        () => ({
          method: 'GET',
          target: `${route.prefix}/v`,
          host: pick(['a b', 'a/b', '[::1', 'a@b', '', 'evil.com:99999', '..', utf8Bytes('é')]),
          headers: spaHeaders(),
        }),
        () => ({ method: 'GET', target: `${route.prefix}/${'a'.repeat(20_000 + int(10_000))}`, headers: spaHeaders() }),
        () => ({ method: 'GET', target: `${route.prefix}/v w`, headers: spaHeaders() }),
        () => ({ method: 'GET', target: `${route.prefix}/v\tw`, headers: spaHeaders() }),
      ]
      const spec = pick(variants)()
      const c = routeCase('request-line', spec, false, { mayClose: true })
      // Versions other than 1.0, 1.1 and 2.0 (which Node's parser reads with
      // HTTP/1.1 framing), whitespace inside the target and targets beyond the
      // header limit are refused by the parser. An odd Host header changes
      // nothing about routing, so those stay as the oracle says.
      if (
        (spec.version !== undefined && !['HTTP/1.0', 'HTTP/2.0'].includes(spec.version)) ||
        /[ \t]/.test(spec.target) ||
        spec.target.length > 16_000
      ) {
        c.forwardable = false
        c.mustRefuse = literalRoute(spec.target) !== undefined
      }
      return c
    },
  ],
  [
    4,
    'framing',
    () => {
      const route = pick(ROUTES)
      const target = `${route.prefix}/f${int(100)}`
      const headers = spaHeaders()
      let body: string
      let halfClose = false
      let mayClose = true
      let forwardable: boolean | undefined
      let trailer: string | undefined
      switch (int(12)) {
        case 0:
          // Both lengths (RFC 9112 §6.1): a smuggling classic; Node refuses it.
          headers.push(['Content-Length', '4'], ['Transfer-Encoding', 'chunked'])
          body = '0\r\n\r\n'
          trailer = `GET ${route.prefix}/../admin HTTP/1.1\r\nHost: ${hostHeader}\r\nX-Fuzz: SMUGGLED\r\n\r\n`
          forwardable = false
          break
        case 1: {
          // Codings other than a final `chunked` leave the length unknown: Node refuses them.
          // Case and surrounding whitespace do not matter: those are plain chunked.
          const te = pick(['chunked, identity', 'xchunked', 'chunked\u000b', 'identity', 'gzip', ' chunked', 'CHUNKED', 'Chunked '])
          headers.push(['Transfer-Encoding', te])
          body = '5\r\nhello\r\n0\r\n\r\n'
          if (te.trim().toLowerCase() !== 'chunked') forwardable = false
          break
        }
        case 2:
          headers.push(['Transfer-Encoding', 'chunked'], ['Transfer-Encoding', 'chunked'])
          body = '5\r\nhello\r\n0\r\n\r\n'
          break
        case 3:
          headers.push(['Content-Length', '5'], ['Content-Length', pick(['6', '5', '05'])])
          body = 'hello'
          forwardable = false
          break
        case 4:
          headers.push(['Content-Length', pick(['-1', '+5', '0x5', '5.0', '1e1', ' 5 5', '99999999999999999999999'])])
          body = 'hello'
          forwardable = false
          break
        case 5:
          // Larger than the route allows: 413 before anything is forwarded.
          headers.push(['Content-Length', String(route.maxBodyBytes + 1 + int(1000))])
          body = 'x'.repeat(100)
          mayClose = false
          forwardable = false
          break
        case 6:
          // A chunked body over the route's limit: cut off while streaming (413), never delivered whole.
          headers.push(['Transfer-Encoding', 'chunked'])
          body = `${'1000\r\n' + 'y'.repeat(4096) + '\r\n'}`.repeat(route.maxBodyBytes > 4096 ? 1 : 2) + '0\r\n\r\n'
          mayClose = false
          forwardable = route.maxBodyBytes > 4096 ? undefined : false
          break
        case 7:
          // Truncated: fewer bytes than announced, then the client goes away.
          headers.push(['Content-Length', String(50 + int(1000))])
          body = 'z'.repeat(int(40))
          halfClose = true
          forwardable = false
          break
        case 8:
          headers.push(['Transfer-Encoding', 'chunked'])
          body = pick([
            '10\r\nshort',
            '5\r\nhello\r\n',
            'zz\r\nhello\r\n0\r\n\r\n',
            '5;ext="a\r\nhello\r\n0\r\n\r\n',
            '-5\r\nhello\r\n0\r\n\r\n',
          ])
          halfClose = true
          forwardable = false
          break
        case 9:
          // Headers cut off mid-way, then the client goes away.
          return {
            ...routeCase('framing', { method: 'GET', target, headers, cut: true }),
            halfClose: true,
            mayClose: true,
            forwardable: false,
          }
        case 10:
          headers.push(['Transfer-Encoding', 'chunked'])
          body = '5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n'
          break
        default:
          headers.push(['Content-Length', '5'], ['Expect', '100-continue'])
          body = 'hello'
      }
      // Only methods Node's client frames a body for by itself: a chunked GET,
      // DELETE or OPTIONS body is smuggled to the upstream today (the BUG case
      // below), which would drown every other finding of this generator.
      const method = pick(['POST', 'PUT', 'PATCH'])
      const c = routeCase('framing', { method, target, headers, body, ...(trailer ? { trailer } : {}) }, false, { halfClose, mayClose })
      if (forwardable === false) {
        c.forwardable = false
        if (c.mustRefuse === false && literalRoute(target)) c.mustRefuse = true
      }
      return c
    },
  ],
  [
    1,
    'pipelined',
    () => {
      // A well-formed request followed by one the contract refuses: the second must not be forwarded either.
      const route = pick(ROUTES)
      const second = pick([
        `GET ${route.prefix}/%2e%2e/x HTTP/1.1\r\nHost: ${hostHeader}\r\nX-CSRF: 1\r\nCookie: ${cookieName}=${seal}\r\nX-Fuzz: PIPELINED-EVIL\r\n\r\n`,
        `GET ${route.prefix}/x HTTP/1.1\r\nHost: ${hostHeader}\r\nCookie: ${cookieName}=${seal}\r\nX-Fuzz: PIPELINED-NOCSRF\r\n\r\n`,
      ])
      return routeCase('pipelined', { method: 'GET', target: `${route.prefix}/p`, headers: spaHeaders(), trailer: second })
    },
  ],
  [
    2,
    'endpoints',
    () => {
      const variants: Array<() => Spec> = [
        () => ({ method: 'GET', target: '/healthz', headers: [] }),
        () => ({ method: 'GET', target: `/healthz${pick(['?x=%zz', '/', '%00', '/../api/x'])}`, headers: [] }),
        () => ({ method: 'GET', target: '/metrics', headers: [] }),
        () => ({ method: 'GET', target: '/auth/session', headers: spaHeaders() }),
        () => ({
          method: 'GET',
          target: `/auth/login?returnTo=${pick(['//evil.com', '/\\evil.com', '%2f%2fevil.com', '/x/../%2f%2fevil.com', 'https://evil.com', utf8Bytes('/é')])}`,
          headers: [],
        }),
        () => ({
          method: 'GET',
          target: `/auth/callback?${pick(['code=x&state=y', 'error=access_denied&error_description=%3Cscript%3E', 'iss=%zz', ''])}`,
          headers: [],
        }),
        () => ({
          method: 'POST',
          target: '/auth/backchannel-logout',
          headers: [
            ['Content-Type', 'application/x-www-form-urlencoded'],
            ['Content-Length', '17'],
          ],
          body: 'logout_token=a.b.',
        }),
        () => ({
          method: 'GET',
          target: `/auth/frontchannel-logout?${pick(['iss=%zz&sid=x', 'sid=%00', 'iss=a&iss=b&sid=c', `sid=${'s'.repeat(300)}`, 'iss=http%3A%2F%2Fevil&sid=%F0%9F%92%A9', 'sid=a%0d%0aSet-Cookie:x=y', ''])}`,
          headers: [],
        }),
        () => ({
          method: 'GET',
          target: pick(['/', '/nope', '/auth', '/auth/', '/auth/../api/x', '/api/../auth/session', '/.env', '/%2e%2e/etc/passwd']),
          headers: spaHeaders(),
        }),
        () => ({
          method: 'POST',
          target: '/auth/logout',
          headers: [
            ['X-CSRF', '1'],
            ['Content-Length', '0'],
          ],
        }),
      ]
      const spec = pick(variants)()
      return routeCase('endpoints', spec)
    },
  ],
]

const totalWeight = generators.reduce((n, [w]) => n + w, 0)

function nextCase(id: string): Case {
  let r = random() * totalWeight
  const gen = generators.find(([w]) => (r -= w) < 0)![2]
  const { spec, ...rest } = gen()
  return { ...rest, id, bytes: Buffer.from(render(id, spec), 'latin1') }
}

// ---------------------------------------------------------------------------
// Sending

function send(c: Case): Promise<Outcome> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    let buf = Buffer.alloc(0)
    let done = false
    const finish = (o: Outcome) => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      resolve(o)
    }
    const timer = setTimeout(() => finish({ status: undefined, timedOut: true, head: buf.toString('latin1', 0, 200) }), REQUEST_TIMEOUT_MS)
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      // Skip interim 1xx answers (100 Continue); the first final status is the answer.
      for (;;) {
        const end = buf.indexOf('\r\n\r\n')
        if (end < 0) return
        const head = buf.toString('latin1', 0, end)
        const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1])
        if (status >= 100 && status < 200) {
          buf = buf.subarray(end + 4)
          continue
        }
        return finish({ status: Number.isNaN(status) ? -1 : status, timedOut: false, head })
      }
    })
    socket.on('error', () => finish({ status: undefined, timedOut: false, head: '' }))
    socket.on('close', () => finish({ status: undefined, timedOut: false, head: buf.toString('latin1', 0, 200) }))
    socket.write(c.bytes, () => {
      if (c.halfClose) socket.end()
    })
  })
}

async function runAll(cases: Case[]): Promise<Map<string, Outcome>> {
  const outcomes = new Map<string, Outcome>()
  let next = 0
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < cases.length) {
        const c = cases[next++]!
        outcomes.set(c.id, await send(c))
      }
    }),
  )
  return outcomes
}

// ---------------------------------------------------------------------------
// Checks

function describeCase(c: Case): string {
  const text = c.bytes.toString('latin1')
  return `#${c.id} ${c.kind}: ${JSON.stringify(text.length > 300 ? `${text.slice(0, 300)}…(${text.length} bytes)` : text)}`
}

function checkOutcome(c: Case, o: Outcome): string | undefined {
  if (o.timedOut) return `hang (no answer in ${REQUEST_TIMEOUT_MS} ms)`
  if (o.status === undefined) return c.mayClose || c.halfClose ? undefined : 'connection closed without an answer'
  if (o.status < 100 || o.status > 599) return `unreadable answer ${JSON.stringify(o.head.slice(0, 80))}`
  if (o.status >= 500) return `server error ${o.status}: ${JSON.stringify(o.head.slice(0, 200))}`
  if (c.mustRefuse && o.status < 400) return `answered ${o.status} where the contract refuses`
  return undefined
}

function decodedSegments(path: string): string[] | undefined {
  try {
    return path.split('/').map((s) => decodeURIComponent(s))
  } catch {
    return undefined
  }
}

/** What reached the upstream: only forwardable requests, on their route's base path, cleaned (security model S39, S42). */
function checkForwarded(rec: RecordedRequest, byId: Map<string, Case>, outcomes: Map<string, Outcome>): string | undefined {
  const id = String(rec.headers['x-fuzz'] ?? '')
  const c = byId.get(id)
  const where = `${rec.method} ${rec.url} (x-fuzz ${id || 'missing'}, ${rec.bodyBytes} body bytes${c ? `, answered ${outcomes.get(c.id)?.status ?? 'nothing'}` : ''})`
  if (!c) return `${where}: forwarded a request that no case sent as a whole (smuggled or pipelined)`
  if (!c.forwardable) return `${where}: forwarded, but it should have been refused: ${describeCase(c)}`
  const path = rec.url.split('?')[0]!
  const q = c.bytes.indexOf(' ')
  const sentPath = c.bytes.toString('latin1', q + 1, c.bytes.indexOf(' ', q + 1)).split('?')[0]!
  const route = literalRoute(sentPath)
  if (!route) return `${where}: forwarded without naming a route`
  if (!(path === route.base || path.startsWith(`${route.base}/`))) return `${where}: not under ${route.base}`
  const segments = decodedSegments(path.slice(route.base.length))
  if (!segments) return `${where}: invalid percent-encoding forwarded`
  if (segments.some((s) => s === '.' || s === '..')) return `${where}: dot segment forwarded`
  if (/%2f|%5c/i.test(path)) return `${where}: encoded slash or backslash forwarded`
  if (rec.headers.cookie !== undefined) return `${where}: Cookie forwarded`
  const auth = rec.headers.authorization
  if (route.token === 'none' ? auth !== undefined : !/^(Bearer|DPoP) [^\s]+$/.test(String(auth)))
    return `${where}: Authorization is ${String(auth)}`
  if (JSON.stringify(rec.headers).includes('evil-browser-token')) return `${where}: a browser credential was forwarded`
  if (rec.headers['x-forwarded-host'] !== new URL(publicOrigin).host)
    return `${where}: X-Forwarded-Host ${String(rec.headers['x-forwarded-host'])}`
  if (rec.headers['x-forwarded-for'] === '6.6.6.6') return `${where}: the browser's X-Forwarded-For was passed through`
  for (const h of c.mustNotForward) if (rec.headers[h] !== undefined) return `${where}: ${h} was forwarded`
  // tokenward's own client sets Connection for its hop; the browser's list never travels on.
  if (!/^(keep-alive|close)?$/i.test(String(rec.headers.connection ?? '')))
    return `${where}: Connection ${String(rec.headers.connection)} forwarded`
  return undefined
}

function heapAfterGc(): number {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

describe(`HTTP fuzzing over raw sockets (issue 9; seed ${SEED})`, () => {
  it(
    'every malformed or hostile request gets a 4xx (or a clean close), never a 5xx, a hang or a forwarded refusal',
    { timeout: 60_000 },
    async () => {
      // Errors outside the structured log (the adapter's console.error) count as failures too.
      const consoleErrors = vi.spyOn(console, 'error')
      const failures: string[] = []
      const stats = new Map<string, number>()
      const byId = new Map<string, Case>()
      let forwarded = 0
      let sent = 0
      let heapBaseline = 0
      const started = performance.now()

      for (let batch = 0; batch < BATCHES; batch++) {
        const cases = Array.from({ length: PER_BATCH }, (_, i) => nextCase(`${batch}-${i}`))
        byId.clear()
        for (const c of cases) byId.set(c.id, c)
        const outcomes = await runAll(cases)
        sent += cases.length
        for (const c of cases) {
          const o = outcomes.get(c.id)!
          const key = `${c.kind} ${o.timedOut ? 'timeout' : (o.status ?? 'closed')}`
          stats.set(key, (stats.get(key) ?? 0) + 1)
          const problem = checkOutcome(c, o)
          if (problem) failures.push(`${problem}: ${describeCase(c)}`)
        }
        // Let answers already on their way upstream land before they are checked.
        await new Promise((r) => setTimeout(r, 100))
        for (const rec of world.upstream.requests.splice(0)) {
          forwarded++
          const problem = checkForwarded(rec, byId, outcomes)
          const c = byId.get(String(rec.headers['x-fuzz']))
          if (problem) failures.push(c && !problem.includes(describeCase(c)) ? `${problem}; sent ${describeCase(c)}` : problem)
        }
        for (const line of world.bff.logs.splice(0)) {
          const entry = JSON.parse(line) as { level?: number; msg?: string }
          if ((entry.level ?? 0) >= 50) failures.push(`error logged: ${line.slice(0, 300)}`)
        }
        // The first batch warms caches, pools and JIT: measure growth from after it.
        if (batch === 0) heapBaseline = heapAfterGc()
      }
      for (const call of consoleErrors.mock.calls) failures.push(`console.error: ${String(call[0]).slice(0, 200)}`)
      consoleErrors.mockRestore()
      const heapGrowth = heapAfterGc() - heapBaseline
      const seconds = (performance.now() - started) / 1000

      // eslint-disable-next-line no-console
      console.log(
        `fuzz seed ${SEED}: ${sent} requests in ${seconds.toFixed(1)} s, ${forwarded} forwarded, heap growth ${(heapGrowth / 1024 / 1024).toFixed(1)} MiB\n` +
          [...stats.entries()]
            .sort()
            .map(([k, n]) => `  ${k}: ${n}`)
            .join('\n'),
      )
      expect(failures.slice(0, 25), `seed ${SEED}, ${failures.length} failures (replay with FUZZ_SEED=${SEED})`).toEqual([])
      // The run must have exercised both sides, or it proves little.
      expect(forwarded).toBeGreaterThan(sent / 10)
      expect([...stats.keys()].some((k) => / 4\d\d$/.test(k))).toBe(true)
      expect(heapGrowth, `heap grew by ${heapGrowth} bytes (seed ${SEED})`).toBeLessThan(HEAP_BUDGET_BYTES)

      // Still alive and serving.
      const health = await send({
        id: 'health',
        kind: 'health',
        bytes: Buffer.from(`GET /healthz HTTP/1.1\r\nHost: ${hostHeader}\r\n\r\n`),
        halfClose: false,
        mayClose: false,
        forwardable: false,
        mustNotForward: [],
        mustRefuse: false,
      })
      expect(health.status).toBe(200)
    },
  )

  // Regression (was a bug): a request body sent chunked on GET, DELETE or OPTIONS is
  // written raw onto the upstream connection. outboundHeaders drops the
  // browser's Transfer-Encoding (hop-by-hop) and, with no Content-Length,
  // Node's client frames no body for these methods (useChunkedEncodingByDefault
  // is false for them): the upstream reads the GET as complete and then parses
  // the body as a second request, with any path, method and headers the client
  // chose, outside the route's base path and past every tokenward check
  // (security model S39, S42; docs/routes.md: nothing that escapes the prefix
  // is forwarded). Remove `.fails` once src/proxy/headers.ts frames the body.
  it('a chunked body on GET, DELETE or OPTIONS is never parsed by the upstream as a request of its own', async () => {
    world.upstream.requests.splice(0)
    const inner = `GET /internal/secret HTTP/1.1\r\nHost: upstream\r\nX-Forwarded-For: 6.6.6.6\r\nX-Fuzz: SMUGGLED-BODY\r\n\r\n`
    for (const method of ['GET', 'DELETE', 'OPTIONS']) {
      const bytes = Buffer.from(
        `${method} /pub/s HTTP/1.1\r\nHost: ${hostHeader}\r\nX-CSRF: 1\r\nX-Fuzz: carrier\r\nTransfer-Encoding: chunked\r\n\r\n${inner.length.toString(16)}\r\n${inner}\r\n0\r\n\r\n`,
        'latin1',
      )
      const o = await send({
        id: 'carrier',
        kind: 'smuggle',
        bytes,
        halfClose: false,
        mayClose: false,
        forwardable: true,
        mustNotForward: [],
        mustRefuse: false,
      })
      expect(o.status).toBeLessThan(500)
    }
    await new Promise((r) => setTimeout(r, 200))
    const escaped = world.upstream.requests
      .filter((r) => !r.url.startsWith('/public/'))
      .map((r) => `${r.method} ${r.url} x-forwarded-for=${String(r.headers['x-forwarded-for'])}`)
    world.upstream.requests.splice(0)
    expect(escaped).toEqual([])
  })

  // Regression (was a bug): outboundHeaders copies the browser's fields first and adds
  // tokenward's own (Authorization, X-Forwarded-For/Proto/Host, X-Request-Id,
  // DPoP) after them. Node keeps the first 1,000 header lines of a message
  // (parser maxHeaderPairs) and drops the rest silently, as do other servers
  // with a header-count limit: a request with ~1,000 fields of its own makes the
  // upstream lose exactly tokenward's fields, so it no longer sees the real
  // client address or the token (security model S42: X-Forwarded-* set by
  // tokenward). Remove `.fails` once tokenward's fields go first or the count
  // of forwarded fields is bounded (431).
  it("tokenward's own forwarding fields reach the upstream however many fields the browser sends", async () => {
    const missing: string[] = []
    // Around the upstream's limit: tokenward adds five or six fields of its own after the browser's.
    for (let n = 985; n <= 1_000; n++) {
      world.upstream.requests.splice(0)
      const many = Array.from({ length: n }, (_, i) => `X-Rep: ${i % 10}\r\n`).join('')
      const bytes = Buffer.from(`GET /pub/many HTTP/1.1\r\nHost: ${hostHeader}\r\nX-CSRF: 1\r\nX-Fuzz: many\r\n${many}\r\n`, 'latin1')
      const o = await send({
        id: 'many',
        kind: 'many',
        bytes,
        halfClose: false,
        mayClose: false,
        forwardable: true,
        mustNotForward: [],
        mustRefuse: false,
      })
      expect(o.status).toBeLessThan(500)
      await new Promise((r) => setTimeout(r, 20))
      // Refusing the request (431, or the upstream's 400) is as good as forwarding it whole.
      for (const r of world.upstream.requests.splice(0)) {
        for (const h of ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-request-id'])
          if (r.headers[h] === undefined) missing.push(`${n} fields: ${h}`)
      }
    }
    expect(missing).toEqual([])
  })

  // Regression (was a bug): a proxied HEAD request. Hono's app.fetch answers HEAD by
  // dispatching GET and wrapping the result in `new Response(null, result)`, so
  // the proxy's RESPONSE_ALREADY_SENT marker is lost: @hono/node-server writes
  // headers a second time after pipeResponse already did, logs
  // ERR_HTTP_HEADERS_SENT with a stack through console.error (outside the JSON
  // log) and destroys the connection, so keep-alive breaks on every HEAD.
  // Remove `.fails` once src/server.ts (or the proxy) keeps the marker for HEAD.
  it('a proxied HEAD is answered once, logs nothing unstructured and keeps the connection', async () => {
    const consoleErrors = vi.spyOn(console, 'error').mockImplementation(() => {})
    try {
      const statuses = await new Promise<number[]>((resolve) => {
        const socket = connect(port, '127.0.0.1')
        const seen: number[] = []
        socket.setTimeout(REQUEST_TIMEOUT_MS, () => socket.destroy())
        socket.on('data', (d: Buffer) => {
          // Neither answer has a body to split a status line across chunks.
          for (const m of d.toString('latin1').matchAll(/HTTP\/1\.1 (\d{3}) /g)) seen.push(Number(m[1]))
          if (seen.length === 1) socket.write(`GET /healthz HTTP/1.1\r\nHost: ${hostHeader}\r\n\r\n`)
          if (seen.length >= 2) socket.destroy()
        })
        socket.on('close', () => resolve(seen))
        socket.write(`HEAD /pub/head HTTP/1.1\r\nHost: ${hostHeader}\r\nX-CSRF: 1\r\n\r\n`)
      })
      await new Promise((r) => setTimeout(r, 100))
      expect(consoleErrors.mock.calls.map((c) => String(c[0]).slice(0, 120))).toEqual([])
      // The HEAD's answer, then /healthz on the same kept-alive connection.
      expect(statuses).toEqual([200, 200])
    } finally {
      consoleErrors.mockRestore()
    }
  })
})
