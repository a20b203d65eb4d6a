// A hostile OpenID Provider for integration tests: a real HTTP server on
// 127.0.0.1 that speaks just enough OpenID Connect for tokenward to log in and
// refresh, and that can be told to lie in every part of its answers
// (security model S4, S5, S9, S10, S12, S36; issue 9, "a hostile identity provider").
// The honest defaults are strict on purpose (client authentication, PKCE,
// single-use codes, rotated refresh tokens), so a test that mutates one thing
// knows that everything else was right.
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose'
import { CookieJar } from './login.js'

/**
 * The IdP's clock. Captured at import, so a test that moves `Date.now` to age
 * openid-client's JWKS cache moves only the relying party's clock, not the IdP's.
 */
const realNow: () => number = Date.now

export type Claims = JWTPayload & Record<string, unknown>
export type Json = Record<string, unknown>

/** An RS256 key pair the IdP can sign with, published in its JWKS or not. */
export interface SigningKey {
  readonly kid: string
  readonly privateKey: CryptoKey
  readonly publicJwk: JWK
}

/** How an ID token is signed. */
export type Signer =
  | { kind: 'key'; key: SigningKey }
  /** HMAC with a shared secret, e.g. the client secret (the classic alg confusion). */
  | { kind: 'hs256'; secret: string }
  /** An unsecured JWT: `alg: none` and an empty signature. */
  | { kind: 'none' }

/** Everything about one token-endpoint answer that a test may change. */
export interface TokenMutators {
  /** Rewrites the ID token's claims; return the claims to sign (drop a key to omit the claim). */
  claims?: (claims: Claims) => Claims
  /** Rewrites the JOSE header (alg, kid, typ, an embedded jwk...). */
  header?: (header: Json) => Json
  /** Who signs the ID token; the IdP's current published key by default. */
  signer?: Signer
  /** Leaves the ID token out of the response. */
  omitIdToken?: boolean
  /** Rewrites the token response JSON (after the ID token is in it). */
  body?: (body: Json) => Json
  /** The HTTP status; a non-200 answers `errorBody` (default `{"error":"server_error"}`). */
  status?: number
  /** Raw text to answer with a non-200 status instead of the JSON error (e.g. an HTML error page). */
  errorBody?: string
  /** Milliseconds before the status line is sent. */
  delayMs?: number
  /** Sends the headers and the start of a JSON body, then nothing more, ever. */
  neverEnd?: boolean
  /** Sends half the body, then resets the connection. */
  truncate?: boolean
  /**
   * Streams a body of about this many bytes: the real token response padded
   * with JSON whitespace (`json: true`, so a client that buffers it all
   * accepts it), or bytes that are not JSON at all.
   */
  huge?: { bytes: number; json: boolean }
}

/** One login's behaviour, bound to its authorization request (by `state`), so concurrent tests never see each other's lies. */
export interface Scenario {
  /** Rewrites the parameters of the redirect back to the client (code, state, iss). */
  authorize?: (params: URLSearchParams) => void
  /** The authorization-code grant's answer. */
  token?: TokenMutators
  /** Every refresh-token grant's answer for this login; may be changed after login through the Grant. */
  refresh?: TokenMutators
}

/** What the IdP knows about one login (an OAuth grant). */
export interface Grant {
  readonly id: string
  readonly sub: string
  readonly state: string
  readonly nonce: string | undefined
  readonly authTime: number
  /** Mutable: tests change `scenario.refresh` between refreshes. */
  scenario: Scenario
  /** The refresh token the IdP currently honours for this grant. */
  currentRefreshToken: string | undefined
  /** Every refresh token presented at the token endpoint, in order. */
  readonly refreshTokensPresented: string[]
  /** Set when a superseded refresh token was replayed (reuse detection, RFC 9700 §4.14.2). */
  revoked: boolean
}

/** One answer the IdP streamed or held open, for assertions about how the client read it. */
export interface StreamRecord {
  readonly kind: 'huge' | 'never-end' | 'delay' | 'truncate'
  /** Bytes handed to the socket before it closed or the body ended. */
  bytesWritten: number
  /** True when the whole body was written. */
  finished: boolean
  /** True when the client closed the connection before the body ended. */
  clientClosed: boolean
  /** realNow() when the connection closed, if it did. */
  closedAt: number | undefined
}

export interface HostileIdpCounts {
  discovery: number
  jwks: number
  authorize: number
  /** authorization_code grants that reached the token endpoint. */
  token: number
  /** refresh_token grants that reached the token endpoint. */
  refresh: number
  /** Requests refused for bad client authentication, PKCE or code. */
  tokenRefused: number
  userinfo: number
  revocation: number
}

export interface HostileIdpOptions {
  clientId?: string
  clientSecret?: string
  /** The `sub` of the user every login authenticates. */
  sub?: string
  /** Seconds; `expires_in` of access tokens. */
  accessTokenTtl?: number
}

export interface HostileIdp {
  readonly issuer: string
  readonly clientId: string
  readonly clientSecret: string
  readonly counts: HostileIdpCounts
  /** The key that signs by default; its public half is in the JWKS. */
  readonly signingKey: SigningKey
  /** Rewrites the discovery document (tokenward caches discovery: set it before tokenward starts). */
  discovery: ((doc: Json) => Json) | undefined
  /** Milliseconds before discovery answers; `Infinity` never answers. */
  discoveryDelayMs: number
  /** Milliseconds before the JWKS answers (a slow key endpoint widens every race around a refetch). */
  jwksDelayMs: number
  /** Applied to every login that brings no scenario of its own. */
  defaults: Scenario
  /** Binds a scenario to the authorization request carrying this `state`. */
  expect(state: string, scenario: Scenario): void
  /** The grant created by the login with this `state`, once its code was issued. */
  grantFor(state: string): Grant | undefined
  /** A fresh RS256 key with this kid (not published). */
  newKey(kid?: string): Promise<SigningKey>
  /** Publishes a key in the JWKS; with `sign`, it becomes the default signer. */
  publish(key: SigningKey, options?: { sign?: boolean }): void
  /** Removes a key from the JWKS. */
  unpublish(kid: string): void
  /** Streams and held-open answers, newest last. */
  readonly streams: StreamRecord[]
  close(): Promise<void>
}

interface AuthCode {
  grant: Grant
  clientId: string
  redirectUri: string
  codeChallenge: string
  used: boolean
}

/** Starts a hostile (by default honest) OpenID Provider on a free port of 127.0.0.1. */
export async function startHostileIdp(options: HostileIdpOptions = {}): Promise<HostileIdp> {
  const clientId = options.clientId ?? 'tokenward-hostile-test'
  const clientSecret = options.clientSecret ?? randomBytes(24).toString('base64url')
  const sub = options.sub ?? 'alice'
  const accessTokenTtl = options.accessTokenTtl ?? 300
  const counts: HostileIdpCounts = {
    discovery: 0,
    jwks: 0,
    authorize: 0,
    token: 0,
    refresh: 0,
    tokenRefused: 0,
    userinfo: 0,
    revocation: 0,
  }
  const scenarios = new Map<string, Scenario>()
  const grantsByState = new Map<string, Grant>()
  const codes = new Map<string, AuthCode>()
  const refreshTokens = new Map<string, Grant>()
  const streams: StreamRecord[] = []
  const timers = new Set<NodeJS.Timeout>()
  const sockets = new Set<Socket>()

  const first = await makeKey(`k-${randomUUID().slice(0, 8)}`)
  const published = new Map<string, SigningKey>([[first.kid, first]])
  let signingKey = first

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) json(res, 500, { error: 'server_error', error_description: String(err) })
      else res.destroy()
    })
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`

  const idp: HostileIdp = {
    issuer,
    clientId,
    clientSecret,
    counts,
    get signingKey() {
      return signingKey
    },
    discovery: undefined,
    discoveryDelayMs: 0,
    jwksDelayMs: 0,
    defaults: {},
    expect(state, scenario) {
      scenarios.set(state, scenario)
    },
    grantFor: (state) => grantsByState.get(state),
    newKey: (kid) => makeKey(kid ?? `k-${randomUUID().slice(0, 8)}`),
    publish(key, o = {}) {
      published.set(key.kid, key)
      if (o.sign) signingKey = key
    },
    unpublish(kid) {
      published.delete(kid)
    },
    streams,
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t)
        server.close(() => resolve())
        // Held-open answers would keep close() waiting forever.
        for (const s of sockets) s.destroy()
      }),
  }

  function later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      timers.delete(t)
      fn()
    }, ms)
    timers.add(t)
  }

  function discoveryDocument(): Json {
    return {
      issuer,
      authorization_endpoint: `${issuer}/authorize`,
      token_endpoint: `${issuer}/token`,
      jwks_uri: `${issuer}/jwks`,
      userinfo_endpoint: `${issuer}/userinfo`,
      end_session_endpoint: `${issuer}/session/end`,
      revocation_endpoint: `${issuer}/revoke`,
      response_types_supported: ['code'],
      grant_types_supported: ['authorization_code', 'refresh_token'],
      subject_types_supported: ['public'],
      scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
      token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
      id_token_signing_alg_values_supported: ['RS256'],
      code_challenge_methods_supported: ['S256'],
      authorization_response_iss_parameter_supported: true,
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', issuer)
    switch (`${req.method} ${url.pathname}`) {
      case 'GET /.well-known/openid-configuration': {
        counts.discovery++
        const doc = idp.discovery ? idp.discovery(discoveryDocument()) : discoveryDocument()
        if (idp.discoveryDelayMs === Infinity) return // never answers; close() destroys the socket
        later(idp.discoveryDelayMs, () => json(res, 200, doc))
        return
      }
      case 'GET /jwks': {
        counts.jwks++
        const jwks = { keys: [...published.values()].map((k) => k.publicJwk) }
        later(idp.jwksDelayMs, () => json(res, 200, jwks))
        return
      }
      case 'GET /authorize':
        counts.authorize++
        return authorize(url, res)
      case 'POST /token':
        return token(req, res)
      case 'GET /userinfo':
        counts.userinfo++
        return json(res, 401, { error: 'invalid_token' })
      case 'POST /revoke':
        counts.revocation++
        await readForm(req)
        res.writeHead(200).end()
        return
      default:
        return json(res, 404, { error: 'not_found' })
    }
  }

  /** Authenticates nobody and asks nothing: a code for `sub`, straight back to the client (no consent, no login page). */
  function authorize(url: URL, res: ServerResponse): void {
    const q = url.searchParams
    const redirectUri = q.get('redirect_uri')
    const state = q.get('state') ?? ''
    // An honest IdP refuses a request it cannot trust (RFC 6749 §4.1.2.1); these
    // answers are not redirects, so a test that gets one knows tokenward asked wrongly.
    if (q.get('client_id') !== clientId || !redirectUri || !URL.canParse(redirectUri)) {
      return json(res, 400, { error: 'invalid_request', error_description: 'client_id or redirect_uri' })
    }
    if (q.get('response_type') !== 'code' || q.get('code_challenge_method') !== 'S256' || !q.get('code_challenge')) {
      return json(res, 400, { error: 'invalid_request', error_description: 'code flow with PKCE S256 required' })
    }
    const scenario = scenarios.get(state) ?? idp.defaults
    const grant: Grant = {
      id: randomUUID(),
      sub,
      state,
      nonce: q.get('nonce') ?? undefined,
      authTime: Math.floor(realNow() / 1000),
      scenario,
      currentRefreshToken: undefined,
      refreshTokensPresented: [],
      revoked: false,
    }
    grantsByState.set(state, grant)
    const code = randomBytes(24).toString('base64url')
    codes.set(code, { grant, clientId, redirectUri, codeChallenge: q.get('code_challenge')!, used: false })
    const back = new URL(redirectUri)
    const params = new URLSearchParams({ code, state, iss: issuer })
    scenario.authorize?.(params)
    for (const [k, v] of params) back.searchParams.append(k, v)
    res.writeHead(302, { location: back.href, 'cache-control': 'no-store' }).end()
  }

  async function token(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const form = await readForm(req)
    if (!clientAuthenticated(req, form)) {
      counts.tokenRefused++
      return json(res, 401, { error: 'invalid_client' }, { 'www-authenticate': 'Basic realm="token"' })
    }
    const grantType = form.get('grant_type')
    if (grantType === 'authorization_code') {
      counts.token++
      const entry = codes.get(form.get('code') ?? '')
      const verifier = form.get('code_verifier') ?? ''
      const challenge = createHash('sha256').update(verifier).digest('base64url')
      if (!entry || entry.used || entry.redirectUri !== form.get('redirect_uri') || challenge !== entry.codeChallenge) {
        counts.tokenRefused++
        return json(res, 400, { error: 'invalid_grant', error_description: 'code, redirect_uri or code_verifier' })
      }
      entry.used = true
      return answer(res, entry.grant, entry.grant.scenario.token ?? {}, true)
    }
    if (grantType === 'refresh_token') {
      counts.refresh++
      const presented = form.get('refresh_token') ?? ''
      const grant = refreshTokens.get(presented)
      if (!grant) return json(res, 400, { error: 'invalid_grant' })
      grant.refreshTokensPresented.push(presented)
      if (grant.revoked || presented !== grant.currentRefreshToken) {
        // A superseded refresh token: reuse detection revokes the whole grant.
        grant.revoked = true
        return json(res, 400, { error: 'invalid_grant', error_description: 'refresh token reused' })
      }
      return answer(res, grant, grant.scenario.refresh ?? {}, false)
    }
    return json(res, 400, { error: 'unsupported_grant_type' })
  }

  /** RFC 6749 §2.3.1: client_secret_basic (form-encoded id and secret) or client_secret_post. */
  function clientAuthenticated(req: IncomingMessage, form: URLSearchParams): boolean {
    const header = req.headers.authorization
    if (header?.startsWith('Basic ')) {
      const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8')
      const i = decoded.indexOf(':')
      if (i < 0) return false
      const unform = (s: string) => decodeURIComponent(s.replace(/\+/g, ' '))
      return unform(decoded.slice(0, i)) === clientId && unform(decoded.slice(i + 1)) === clientSecret
    }
    return form.get('client_id') === clientId && form.get('client_secret') === clientSecret
  }

  async function answer(res: ServerResponse, grant: Grant, m: TokenMutators, initial: boolean): Promise<void> {
    const now = Math.floor(realNow() / 1000)
    const newRefreshToken = `rt-${randomBytes(24).toString('base64url')}`
    let body: Json = {
      access_token: `at-${randomBytes(24).toString('base64url')}`,
      token_type: 'Bearer',
      expires_in: accessTokenTtl,
      refresh_token: newRefreshToken,
      scope: 'openid profile email offline_access',
    }
    if (!m.omitIdToken) {
      let claims: Claims = {
        iss: issuer,
        sub: grant.sub,
        aud: clientId,
        iat: now,
        exp: now + 300,
        auth_time: grant.authTime,
        sid: grant.id,
        name: 'Alice Hostile',
      }
      // Core §12.2: a refreshed ID token carries no nonce of its own.
      if (initial && grant.nonce !== undefined) claims.nonce = grant.nonce
      if (m.claims) claims = m.claims({ ...claims })
      body.id_token = await signIdToken(claims, m.signer ?? { kind: 'key', key: signingKey }, m.header)
    }
    if (m.body) body = m.body({ ...body })
    // The refresh token the client got is the one the IdP honours from now on;
    // when the (mutated) answer carries none, the old one stays valid (RFC 6749 §6).
    if ((m.status ?? 200) === 200 && typeof body.refresh_token === 'string') {
      grant.currentRefreshToken = body.refresh_token
      refreshTokens.set(body.refresh_token, grant)
    }
    const send = () => {
      if (res.destroyed) return
      if ((m.status ?? 200) !== 200) {
        if (m.errorBody !== undefined) {
          res.writeHead(m.status!, { 'content-type': 'text/html', 'cache-control': 'no-store' }).end(m.errorBody)
        } else {
          json(res, m.status!, { error: m.status! >= 500 ? 'server_error' : 'invalid_request' })
        }
        return
      }
      const text = JSON.stringify(body)
      if (m.neverEnd) return holdOpen(res, text)
      if (m.truncate) return truncate(res, text)
      if (m.huge) return stream(res, text, m.huge)
      json(res, 200, body)
    }
    if (m.delayMs && m.delayMs > 0) {
      const rec = record('delay', res)
      later(m.delayMs, () => {
        rec.finished = !res.destroyed
        send()
      })
    } else {
      send()
    }
  }

  function record(kind: StreamRecord['kind'], res: ServerResponse): StreamRecord {
    const rec: StreamRecord = { kind, bytesWritten: 0, finished: false, clientClosed: false, closedAt: undefined }
    streams.push(rec)
    res.on('close', () => {
      rec.closedAt = realNow()
      if (!rec.finished) rec.clientClosed = true
    })
    return rec
  }

  function holdOpen(res: ServerResponse, text: string): void {
    const rec = record('never-end', res)
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
    const start = text.slice(0, Math.floor(text.length / 2))
    res.write(start)
    rec.bytesWritten = Buffer.byteLength(start)
    // Nothing more, ever: only the client (or close()) ends this connection.
  }

  function truncate(res: ServerResponse, text: string): void {
    const rec = record('truncate', res)
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(text)),
      'cache-control': 'no-store',
    })
    const start = text.slice(0, Math.floor(text.length / 2))
    res.write(start, () => {
      rec.bytesWritten = Buffer.byteLength(start)
      res.destroy()
    })
  }

  /** Streams `bytes` bytes with backpressure, so `bytesWritten` shows how much the client actually took. */
  function stream(res: ServerResponse, text: string, huge: { bytes: number; json: boolean }): void {
    const rec = record('huge', res)
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
    // Valid JSON: the real object with its closing brace held back, whitespace, then the brace.
    const head = huge.json ? text.slice(0, -1) : ''
    const tail = huge.json ? '}' : ''
    const chunk = Buffer.alloc(64 * 1024, huge.json ? 0x20 : 0x41)
    let left = Math.max(0, huge.bytes - head.length - tail.length)
    const write = (b: Buffer | string, cb?: () => void): boolean => {
      rec.bytesWritten += Buffer.byteLength(b)
      return res.write(b, cb)
    }
    write(head)
    const pump = (): void => {
      while (left > 0) {
        if (res.destroyed) return
        const n = Math.min(left, chunk.length)
        left -= n
        if (!write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
          res.once('drain', pump)
          return
        }
      }
      if (res.destroyed) return
      res.end(tail, () => {
        rec.finished = true
      })
      rec.bytesWritten += tail.length
    }
    pump()
  }

  async function signIdToken(claims: Claims, signer: Signer, header?: (h: Json) => Json): Promise<string> {
    if (signer.kind === 'none') {
      const h = header ? header({ alg: 'none', typ: 'JWT' }) : { alg: 'none', typ: 'JWT' }
      return `${b64(h)}.${b64(claims)}.`
    }
    if (signer.kind === 'hs256') {
      const h = header ? header({ alg: 'HS256', typ: 'JWT' }) : { alg: 'HS256', typ: 'JWT' }
      return new SignJWT(claims).setProtectedHeader(h as { alg: string }).sign(new TextEncoder().encode(signer.secret))
    }
    const base: Json = { alg: 'RS256', typ: 'JWT', kid: signer.key.kid }
    const h = header ? header(base) : base
    return new SignJWT(claims).setProtectedHeader(h as { alg: string }).sign(signer.key.privateKey)
  }

  return idp
}

async function makeKey(kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { modulusLength: 2048 })
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' }
  return { kid, privateKey, publicJwk }
}

function b64(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url')
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.destroyed) return
  const text = JSON.stringify(body)
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(text)),
    'cache-control': 'no-store',
    ...headers,
  })
  res.end(text)
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length
    if (size > 64 * 1024) throw new Error('request body too large')
    chunks.push(c)
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'))
}

/** What a browser saw of a login walked through tokenward and the hostile IdP. */
export interface HostileLogin {
  readonly jar: CookieJar
  /** tokenward's answer to GET /auth/login. */
  readonly login: { status: number; location: string | null; body: string; setCookies: string[] }
  /** The `state` of the authorization request (undefined when /auth/login did not redirect to the IdP). */
  readonly state: string | undefined
  /** The URL the IdP redirected back to (undefined when the walk stopped earlier). */
  readonly callbackUrl: string | undefined
  /** tokenward's answer to the callback (undefined when the walk stopped earlier). */
  readonly callback: { status: number; location: string | null; body: string; setCookies: string[]; headers: Headers } | undefined
  /** Milliseconds tokenward took to answer the callback. */
  readonly callbackMs: number
  /** The IdP's record of this login. */
  readonly grant: Grant | undefined
}

/**
 * GET tokenward's /auth/login, follow it to the hostile IdP's authorization
 * endpoint (binding `scenario` to this login's state first), follow the IdP's
 * redirect back to tokenward's callback and record what tokenward answers.
 * Never throws on a refusal: the refusal is what the tests look at.
 */
export async function loginThrough(
  idp: HostileIdp,
  bffUrl: string,
  options: {
    scenario?: Scenario
    jar?: CookieJar
    callbackTimeoutMs?: number
    /** More /auth/login query parameters (prompt, acr_values...). */ query?: string
  } = {},
): Promise<HostileLogin> {
  const jar = options.jar ?? new CookieJar()
  const loginUrl = `${bffUrl}/auth/login?returnTo=%2Fhome${options.query ? `&${options.query}` : ''}`
  const l = await get(jar, loginUrl)
  const login = { status: l.status, location: l.headers.get('location'), body: l.body, setCookies: l.headers.getSetCookie() }
  const empty = { jar, login, state: undefined, callbackUrl: undefined, callback: undefined, callbackMs: 0, grant: undefined }
  if (login.location === null) return empty
  const authorizeUrl = new URL(login.location, loginUrl)
  if (authorizeUrl.origin !== new URL(idp.issuer).origin) return empty
  const state = authorizeUrl.searchParams.get('state') ?? ''
  if (options.scenario) idp.expect(state, options.scenario)
  const a = await get(jar, authorizeUrl.href)
  const back = a.headers.get('location')
  if (a.status !== 302 || back === null) return { ...empty, state }
  const callbackUrl = new URL(back, authorizeUrl).href
  const started = performance.now()
  const c = await get(jar, callbackUrl, options.callbackTimeoutMs ?? 30_000)
  const callbackMs = performance.now() - started
  return {
    jar,
    login,
    state,
    callbackUrl,
    callback: {
      status: c.status,
      location: c.headers.get('location'),
      body: c.body,
      setCookies: c.headers.getSetCookie(),
      headers: c.headers,
    },
    callbackMs,
    grant: idp.grantFor(state),
  }
}

async function get(jar: CookieJar, url: string, timeoutMs = 30_000): Promise<{ status: number; headers: Headers; body: string }> {
  const headers: Record<string, string> = { accept: 'application/json' }
  const cookie = jar.header(url)
  if (cookie) headers.cookie = cookie
  const res = await fetch(url, { headers, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) })
  jar.store(url, res.headers)
  return { status: res.status, headers: res.headers, body: await res.text() }
}
