// Property tests for the outbound header rules of the proxy (security model
// S42, docs/endpoints.md, the proxy row). fast-check prints the seed and path of a failing
// run; replay it with FC_SEED=<seed> FC_PATH=<path> npx vitest run test/property.
import { once } from 'node:events'
import { createServer, IncomingMessage, type OutgoingHttpHeaders } from 'node:http'
import { connect, Socket, type AddressInfo } from 'node:net'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ForwardOptions } from '../../src/proxy/forward.js'
import { outboundHeaders } from '../../src/proxy/headers.js'
import { runs } from '../helpers/fast-check.js'

const replay = {
  ...(process.env.FC_SEED ? { seed: Number(process.env.FC_SEED) } : {}),
  ...(process.env.FC_PATH ? { path: process.env.FC_PATH } : {}),
}

/** RFC 9110 §7.6.1 hop-by-hop fields, plus the proxy credentials of §11.7 and HTTP/2's upgrade settings. */
const HOP_BY_HOP = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'proxy-authorization',
  'proxy-authenticate',
  'http2-settings',
]
/** Fields tokenward itself sets for the next hop: naming them in the browser's Connection does not remove tokenward's own. */
const OWN = new Set(['host', 'authorization', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-request-id', 'dpop'])

const NAMES = [
  'Cookie',
  'cookie',
  'COOKIE',
  'Authorization',
  'authorization',
  'AUTHORIZATION',
  'Connection',
  'connection',
  'Keep-Alive',
  'TE',
  'Trailer',
  'Transfer-Encoding',
  'Upgrade',
  'Proxy-Authorization',
  'Proxy-Connection',
  'Proxy-Authenticate',
  'HTTP2-Settings',
  'Host',
  'Forwarded',
  'X-Forwarded-For',
  'X-Forwarded-Host',
  'X-Forwarded-Proto',
  'X-Forwarded-Port',
  'X-Real-IP',
  'X-Request-Id',
  'X-CSRF',
  'Content-Length',
  'Content-Type',
  'Accept',
  'Accept-Language',
  'X-Custom',
  'X-Secret',
  'x-secret',
  'X-Api-Key',
  'traceparent',
  'Proxy-Foo',
  'Proxy',
  'constructor',
  'Constructor',
  '__proto__',
  'toString',
  'hasOwnProperty',
  'length',
  'DPoP',
  'X-HTTP-Method-Override',
  'x-http-method',
  'X-Method-Override',
  'X-Original-URL',
  'x-rewrite-url',
  'X-HTTP-METHOD',
]

/** Method and URL overrides (issue 13 item 4): honoured by some frameworks, they would bypass the route's `methods` and prefix. */
const OVERRIDES = ['x-http-method-override', 'x-http-method', 'x-method-override', 'x-original-url', 'x-rewrite-url']

const tokenName = fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,16}$/)
const headerName = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...NAMES) }, { weight: 1, arbitrary: tokenName })

/** Connection values: the usual ones, and lists naming any field, in any case, with stray commas and spaces. */
const connectionValue = fc.oneof(
  fc.constantFrom('close', 'keep-alive', 'Keep-Alive', 'Upgrade', 'upgrade, keep-alive'),
  fc.array(fc.tuple(headerName, fc.constantFrom(',', ', ', ' ,', ',,', ' , '), fc.boolean()), { minLength: 1, maxLength: 5 }).map((items) =>
    items
      .map(([n, sep, upper]) => `${upper ? n.toUpperCase() : n.toLowerCase()}${sep}`)
      .join('')
      .replace(/[ ,]+$/, ''),
  ),
)

const VALUE_UNITS = ['a', 'Z', '0', ' ', ',', ';', '=', '"', 'Bearer ', 'browser-token', 'close', 'x-secret', 'cookie', '\t', 'é', 'ÿ']
const plainValue = fc.string({ unit: fc.constantFrom(...VALUE_UNITS), maxLength: 16 }).map((v) => v.trim())

const rawHeaders = fc
  .array(
    fc.oneof(
      { weight: 5, arbitrary: fc.tuple(headerName, plainValue) },
      { weight: 1, arbitrary: fc.tuple(fc.constantFrom('Connection', 'connection', 'CONNECTION'), connectionValue) },
    ),
    { maxLength: 14 },
  )
  .map((pairs) => pairs.flat())

interface Extra {
  authorization: string | undefined
  forwardedFor: string | undefined
  hasBody: boolean
  trace: boolean
  dpop: boolean
}

const optionsExtra: fc.Arbitrary<Extra> = fc.record({
  authorization: fc.option(fc.constantFrom('Bearer tokenward-own', 'DPoP tokenward-own'), { nil: undefined }),
  forwardedFor: fc.option(fc.constantFrom('203.0.113.7', '::1'), { nil: undefined }),
  hasBody: fc.boolean(),
  trace: fc.boolean(),
  dpop: fc.boolean(),
})

/** An IncomingMessage with Node's own header folding (duplicates joined, cookies with `; `). */
const idleSocket = new Socket()

function incomingWith(raw: string[]): IncomingMessage {
  const msg = new IncomingMessage(idleSocket)
  // Node's parser hands header lines over through this (undocumented) method; the
  // `headers` getter then folds them exactly as for a real request.
  ;(msg as unknown as { _addHeaderLines(h: string[], n: number): void })._addHeaderLines(raw, raw.length)
  return msg
}

function optionsFor(incoming: IncomingMessage, extra: Extra): ForwardOptions {
  return {
    upstream: new URL('http://api.internal:8080/v1'),
    path: '/v1/orders?x=1',
    method: 'GET',
    incoming,
    authorization: extra.authorization,
    client: extra.forwardedFor,
    forwarded: { for: extra.forwardedFor, proto: 'https', host: 'app.example.com' },
    traceHeaders: extra.trace ? { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' } : undefined,
    dpopProof: extra.dpop ? 'tokenward.dpop.proof' : undefined,
    requestId: 'req-1',
    timeoutMs: 1000,
    maxBodyBytes: 1000,
    hasBody: extra.hasBody,
  }
}

/** Every field named by the request's Connection headers, lower-cased. */
function listedIn(raw: readonly string[]): Set<string> {
  const listed = new Set<string>()
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() !== 'connection') continue
    for (const n of raw[i + 1]!.split(',')) if (n.trim()) listed.add(n.trim().toLowerCase())
  }
  return listed
}

/**
 * The brief's rules for what tokenward sends upstream, whatever came in. Collected
 * as a list and asserted once: thirty `expect` calls per run made 20,000 runs slow.
 */
function violations(out: OutgoingHttpHeaders, o: ForwardOptions, raw: readonly string[]): string[] {
  const found: string[] = []
  const keys = Object.keys(out)
  const own = (name: string) => (Object.hasOwn(out, name) ? out[name] : undefined)
  for (const k of keys) if (k !== k.toLowerCase()) found.push(`${k} is not lower-cased, so it could slip past a check`)
  if (own('cookie') !== undefined) found.push('cookie is forwarded')
  if (own('authorization') !== o.authorization) found.push(`authorization is ${String(own('authorization'))}, not tokenward's`)
  for (const h of HOP_BY_HOP) {
    // tokenward's own framing of a body that came without a length (no request smuggling).
    if (h === 'transfer-encoding' && o.hasBody && own('content-length') === undefined && own(h) === 'chunked') continue
    if (own(h) !== undefined) found.push(`hop-by-hop ${h} is forwarded`)
  }
  // A body is always framed: a length or chunked, never raw bytes after the headers.
  if (o.hasBody && own('content-length') === undefined && own('transfer-encoding') !== 'chunked')
    found.push('a body is sent without framing')
  for (const h of listedIn(raw)) {
    if (OWN.has(h) || (o.traceHeaders && h in o.traceHeaders)) continue
    if (h === 'transfer-encoding' && o.hasBody && own(h) === 'chunked' && own('content-length') === undefined) continue // tokenward's own framing
    if (keys.includes(h)) found.push(`${h} is named in Connection but forwarded`)
  }
  for (const h of ['forwarded', 'x-forwarded-port', 'x-real-ip', 'x-csrf', ...OVERRIDES])
    if (own(h) !== undefined) found.push(`${h} is passed through`)
  // A browser's DPoP proof is never passed on; tokenward's own replaces it when the token is bound.
  if (own('dpop') !== o.dpopProof) found.push(`dpop is ${JSON.stringify(own('dpop'))}`)
  const expected: Record<string, unknown> = {
    'x-forwarded-for': o.forwarded.for,
    'x-forwarded-proto': o.forwarded.proto,
    'x-forwarded-host': o.forwarded.host,
    'x-request-id': o.requestId,
    host: o.upstream.host,
  }
  if (o.traceHeaders) expected.traceparent = o.traceHeaders.traceparent
  if (!o.hasBody) expected['content-length'] = undefined
  for (const [h, v] of Object.entries(expected))
    if (own(h) !== v) found.push(`${h} is ${JSON.stringify(own(h))}, expected ${JSON.stringify(v)}`)
  return found
}

describe('outboundHeaders over arbitrary request headers (security model S42)', () => {
  it('never sends Cookie, the browser Authorization, hop-by-hop fields or fields named in Connection', () => {
    fc.assert(
      fc.property(rawHeaders, optionsExtra, (raw, extra) => {
        const o = optionsFor(incomingWith(raw), extra)
        expect(violations(outboundHeaders(o), o, raw)).toEqual([])
      }),
      { numRuns: runs(20_000), ...replay },
    )
  })

  // security model S42 lists `Proxy-*` among the fields to drop, and httpoxy's
  // `Proxy` field too (a regression test: only three were dropped before).
  it('never sends a Proxy-* field', () => {
    fc.assert(
      fc.property(rawHeaders, optionsExtra, (raw, extra) => {
        const out = outboundHeaders(optionsFor(incomingWith(raw), extra))
        for (const k of Object.keys(out)) expect(k.startsWith('proxy'), k).toBe(false)
      }),
      {
        numRuns: runs(20_000),
        ...replay,
        examples: [[['Proxy-Foo', 'x'], { authorization: undefined, forwardedFor: undefined, hasBody: false, trace: false, dpop: false }]],
      },
    )
  })

  // Regression: outboundHeaders collected fields in a plain object literal,
  // so `out[name]` for a field called `constructor` starts from
  // Object.prototype.constructor: the upstream receives two `constructor`
  // fields, one of them `function Object() { [native code] }`; one called
  // `__proto__` is silently dropped (and replaces the object's prototype).
  // docs/routes.md: other request headers are forwarded as sent.
  it('forwards every other field exactly as sent, in order', () => {
    fc.assert(
      fc.property(rawHeaders, optionsExtra, (raw, extra) => {
        const o = optionsFor(incomingWith(raw), extra)
        const out = outboundHeaders(o)
        const listed = listedIn(raw)
        const sent = new Map<string, string[]>()
        for (let i = 0; i < raw.length; i += 2) {
          const name = raw[i]!.toLowerCase()
          if (OWN.has(name) || HOP_BY_HOP.includes(name) || listed.has(name)) continue
          if (
            ['cookie', 'forwarded', 'x-forwarded-port', 'x-real-ip', 'x-csrf', 'traceparent', 'tracestate', 'dpop', ...OVERRIDES].includes(
              name,
            )
          )
            continue
          if (name.startsWith('proxy')) continue // Proxy-* and httpoxy's Proxy (security model S42)
          if (name === 'content-length' && !o.hasBody) continue
          sent.set(name, [...(sent.get(name) ?? []), raw[i + 1]!])
        }
        for (const [name, values] of sent)
          expect(Object.hasOwn(out, name) ? out[name] : undefined, name).toEqual(values.length === 1 ? values[0] : values)
      }),
      {
        numRuns: runs(20_000),
        ...replay,
        examples: [
          [['constructor', 'x'], { authorization: undefined, forwardedFor: undefined, hasBody: false, trace: false, dpop: false }],
        ],
      },
    )
  })
})

describe('outboundHeaders on requests parsed by a real Node server', () => {
  // The same rules over headers as Node's HTTP parser really delivers them
  // (folding, case, what it refuses), not only as the test assembles them.
  let server: ReturnType<typeof createServer>
  let port = 0
  let onRequest: ((req: IncomingMessage) => void) | undefined

  beforeAll(async () => {
    server = createServer((req, res) => {
      onRequest?.(req)
      res.writeHead(204, { connection: 'close' })
      res.end()
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    port = (server.address() as AddressInfo).port
  })
  afterAll(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  )

  /** Sends one request line and header block; resolves with what the server's parser made of it, or undefined if it refused. */
  function parsed(raw: string[]): Promise<IncomingMessage | undefined> {
    return new Promise((resolve, reject) => {
      let got: IncomingMessage | undefined
      onRequest = (req) => (got = req)
      const socket = connect(port, '127.0.0.1')
      const lines = ['GET /x HTTP/1.1', 'Host: a']
      for (let i = 0; i < raw.length; i += 2) lines.push(`${raw[i]}: ${raw[i + 1]}`)
      socket.setTimeout(5_000, () => socket.destroy(new Error('no answer')))
      socket.on('data', () => socket.destroy())
      socket.on('close', () => resolve(got))
      socket.on('error', (err) =>
        ['ECONNRESET', 'EPIPE'].includes((err as NodeJS.ErrnoException).code ?? '') ? resolve(got) : reject(err),
      )
      socket.write(Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'))
    })
  }

  it('never sends Cookie, the browser Authorization, hop-by-hop fields or fields named in Connection', async () => {
    const RUNS = runs(1_000)
    let accepted = 0
    await fc.assert(
      fc.asyncProperty(rawHeaders, optionsExtra, async (raw, extra) => {
        const req = await parsed(raw)
        if (!req) return
        accepted++
        const o = optionsFor(req, extra)
        expect(violations(outboundHeaders(o), o, req.rawHeaders)).toEqual([])
      }),
      { numRuns: RUNS, ...replay },
    )
    expect(accepted).toBeGreaterThan(RUNS / 2)
  })
})
