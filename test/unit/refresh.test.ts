import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import * as oidc from 'openid-client'
import { afterEach, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.js'
import { Keyring } from '../../src/crypto/keyring.js'
import { createLogger } from '../../src/log.js'
import type { OidcClient, TokenResult } from '../../src/oidc/client.js'
import { SessionTerminator } from '../../src/lifecycle/terminate.js'
import { SessionManager, type SessionData } from '../../src/session/sessions.js'
import { MemoryStore } from '../../src/store/memory/store.js'
import { RefreshLease } from '../../src/tokens/lease.js'
import { TokenService, type TokenServiceOptions } from '../../src/tokens/refresh.js'
import { testEnv } from '../helpers/env.js'

/** A stand-in for the IdP's token endpoint: these tests are about tokenward's logic, the integration tests use a real IdP. */
class FakeIdp {
  grants = 0
  params: Array<Record<string, string> | undefined> = []
  /** The refresh tokens presented, in order. */
  presented: string[] = []
  revocations = 0
  async revokeRefreshToken(): Promise<boolean> {
    this.revocations++
    return true
  }
  delayMs = 0
  next: (refreshToken: string) => TokenResult | Error = (rt) => token({ refreshToken: `${rt}+` })
  async refreshTokenGrant(refreshToken: string, params?: Record<string, string>): Promise<TokenResult> {
    this.grants++
    this.params.push(params)
    this.presented.push(refreshToken)
    if (this.delayMs) await sleep(this.delayMs)
    const r = this.next(refreshToken)
    if (r instanceof Error) throw r
    return r
  }
}

function token(over: Partial<TokenResult> = {}): TokenResult {
  return {
    accessToken: `at-${randomBytes(4).toString('hex')}`,
    tokenType: 'Bearer',
    expiresIn: 300,
    refreshToken: undefined,
    refreshTokenLifetime: undefined,
    scope: 'openid',
    idToken: undefined,
    idClaims: undefined,
    ...over,
  }
}

const stores: MemoryStore[] = []
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()))
})

function setup() {
  const config = loadConfig(testEnv())
  const store = new MemoryStore()
  stores.push(store)
  const logs: string[] = []
  const logger = createLogger('info', { write: (l: string) => void logs.push(l) })
  const sessions = new SessionManager({ store, keyring: new Keyring(config.encryptionKeys), idleTimeoutMs: 60_000, maxAgeMs: 3_600_000 })
  const idp = new FakeIdp()
  const terminator = new SessionTerminator({ sessions, events: store.events, oidc: idp as unknown as OidcClient, logger })
  const lease = new RefreshLease({ leases: store.leases, leaseMs: 300, logger })
  const tokens = new TokenService({
    config,
    sessions,
    oidc: idp as unknown as OidcClient,
    logger,
    terminator,
    lease,
    now: Date.now,
    lockWaitMs: 2000,
  })
  const data = (over: Partial<SessionData> = {}): SessionData => ({
    sub: 'alice',
    iss: 'https://idp.example',
    aud: ['tokenward'],
    claims: { sub: 'alice' },
    createdAt: Date.now(),
    accessToken: 'at-old',
    tokenType: 'Bearer',
    accessTokenExpiresAt: Date.now() - 1000,
    refreshToken: 'rt-1',
    ...over,
  })
  const events = () => logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.audit)
  return { config, store, sessions, idp, tokens, terminator, data, events }
}

describe('TokenService', () => {
  it('does not refresh a token that is not about to expire', async () => {
    const { sessions, tokens, idp, data } = setup()
    const { session } = await sessions.create(data({ accessTokenExpiresAt: Date.now() + 600_000 }))
    expect((await tokens.accessToken(session)).token).toBe('at-old')
    expect(idp.grants).toBe(0)
  })

  it('refreshes within the skew (BFF_REFRESH_SKEW, security model S31)', async () => {
    const { sessions, tokens, idp, data } = setup()
    const { session } = await sessions.create(data({ accessTokenExpiresAt: Date.now() + 10_000 }))
    expect((await tokens.accessToken(session)).token).not.toBe('at-old')
    expect(idp.grants).toBe(1)
  })

  it('50 concurrent callers in one process share one grant (security model S32)', async () => {
    const { sessions, tokens, idp, data } = setup()
    idp.delayMs = 50
    const { session } = await sessions.create(data())
    const got = await Promise.all(Array.from({ length: 50 }, () => tokens.accessToken(session)))
    expect(idp.grants).toBe(1)
    expect(new Set(got.map((g) => g.token)).size).toBe(1)
  })

  it('two TokenServices (two instances) on one store still make one grant, and the waiter reads the winner', async () => {
    const a = setup()
    const b = new TokenService({
      config: a.config,
      sessions: a.sessions,
      oidc: a.idp as unknown as OidcClient,
      logger: createLogger('silent'),
      terminator: a.terminator,
      lease: new RefreshLease({ leases: a.store.leases, leaseMs: 300, logger: createLogger('silent') }),
      now: Date.now,
      lockWaitMs: 2000,
    })
    a.idp.delayMs = 600 // longer than the lease: renewal must keep it
    const { session } = await a.sessions.create(a.data())
    const [x, y] = await Promise.all([a.tokens.accessToken(session), b.accessToken(session)])
    expect(a.idp.grants).toBe(1)
    expect(x.token).toBe(y.token)
  })

  it('keeps the refresh token when the IdP sends none, replaces it when the IdP rotates (RFC 6749 §6, security model S34)', async () => {
    const { sessions, tokens, idp, data } = setup()
    const { session } = await sessions.create(data())
    idp.next = () => token({ refreshToken: undefined })
    const r1 = await tokens.accessToken(session)
    expect(r1.session.data.refreshToken).toBe('rt-1')
    const expired = await sessions.replace(r1.session, { ...r1.session.data, accessTokenExpiresAt: 0 })
    idp.next = () => token({ refreshToken: 'rt-2', refreshTokenLifetime: { source: 'refresh_token_expires_in', seconds: 60 } })
    const r2 = await tokens.accessToken(expired.session)
    expect(r2.session.data.refreshToken).toBe('rt-2')
    expect((await sessions.loadBySid(session.sid, { slide: false }))!.data.refreshToken).toBe('rt-2')
    // A session never outlives its refresh token (security model S20).
    expect(r2.session.absExp).toBeLessThanOrEqual(Date.now() + 60_000)
  })

  it('a rotated refresh token moves the end to its own expiry, later too, never past the max age; without one the known expiry stays (security model S77)', async () => {
    const { sessions, tokens, idp, data } = setup()
    const created = Date.now()
    const { session } = await sessions.create(data({ createdAt: created, refreshTokenExpiresAt: created + 60_000 }))
    expect(session.absExp).toBe(created + 60_000)
    const expire = async (s: typeof session) => (await sessions.replace(s, { ...s.data, accessTokenExpiresAt: 0 })).session
    const lifetime = (seconds: number) => ({ source: 'refresh_expires_in' as const, seconds })

    // Later than the last one: the end moves later, and the Redis entry's TTL follows it.
    idp.next = () => token({ refreshToken: 'rt-2', refreshTokenLifetime: lifetime(600) })
    const r1 = await tokens.accessToken(session)
    expect(r1.session.absExp).toBeGreaterThanOrEqual(created + 590_000)
    expect(r1.session.absExp).toBeLessThanOrEqual(Date.now() + 600_000)
    expect((await sessions.loadBySid(session.sid, { slide: false }))!.absExp).toBe(r1.session.absExp)

    // A new refresh token without a stated lifetime, or none at all: the known expiry stays.
    idp.next = () => token({ refreshToken: 'rt-3' })
    const r2 = await tokens.accessToken(await expire(r1.session))
    expect(r2.session.data.refreshToken).toBe('rt-3')
    expect(r2.session.absExp).toBe(r1.session.absExp)
    idp.next = () => token({ refreshToken: undefined, refreshTokenLifetime: lifetime(5) })
    const r3 = await tokens.accessToken(await expire(r2.session))
    expect(r3.session.absExp).toBe(r1.session.absExp)

    // Far beyond BFF_SESSION_MAX_AGE (an hour here): capped at login + max age.
    idp.next = () =>
      token({ refreshToken: 'rt-4', refreshTokenLifetime: { source: 'jwt_exp', exp: Math.floor(created / 1000) + 10 * 86_400 } })
    const r4 = await tokens.accessToken(await expire(r3.session))
    expect(r4.session.absExp).toBe(created + 3_600_000)
    expect(r4.session.data.refreshTokenExpiresAt).toBe(created + 3_600_000)

    // Earlier again: the end comes earlier.
    idp.next = () => token({ refreshToken: 'rt-5', refreshTokenLifetime: lifetime(30) })
    const r5 = await tokens.accessToken(await expire(r4.session))
    expect(r5.session.absExp).toBeLessThanOrEqual(Date.now() + 30_000)
  })

  it('a holder whose lease expired before it wrote the journal does not present the refresh token (security model S78)', async () => {
    const a = setup()
    const { session } = await a.sessions.create(a.data())
    // Instance A pauses (a long GC, a blocked event loop) right after its
    // re-read under the lease, past the 300 ms lease: instance B takes over.
    let loads = 0
    const pausing = {
      loadBySid: async (sid: string, options: { slide: boolean }) => {
        const s = await a.sessions.loadBySid(sid, options)
        if (++loads === 2) await sleep(700)
        return s
      },
      replace: a.sessions.replace.bind(a.sessions),
      latestEnd: a.sessions.latestEnd.bind(a.sessions),
    }
    const service = (sessions: TokenServiceOptions['sessions']) =>
      new TokenService({
        config: a.config,
        sessions,
        oidc: a.idp as unknown as OidcClient,
        logger: createLogger('silent'),
        terminator: a.terminator,
        lease: new RefreshLease({ leases: a.store.leases, leaseMs: 300, logger: createLogger('silent') }),
        now: Date.now,
        lockWaitMs: 2000,
      })
    const first = service(pausing).accessToken(session)
    await sleep(50)
    const second = await service(a.sessions).accessToken(session)
    expect(second.session.data.refreshToken).toBe('rt-1+')
    await expect(first).rejects.toMatchObject({ code: 'idp_unavailable', status: 503 })
    // rt-1 went to the IdP once; the retry uses B's tokens.
    expect(a.idp.grants).toBe(1)
    expect((await service(a.sessions).accessToken(session)).token).toBe(second.token)
    expect(a.idp.grants).toBe(1)
  })

  it('the worst case: an IdP that answers 5xx is taken to have issued nothing, so the same refresh token goes again later (security model S78)', async () => {
    const { sessions, tokens, idp, data } = setup()
    const { session } = await sessions.create(data())
    idp.next = () =>
      new oidc.ResponseBodyError('server_error', { cause: { error: 'server_error' }, response: new Response(null, { status: 500 }) })
    await expect(tokens.accessToken(session)).rejects.toMatchObject({ code: 'idp_unavailable', status: 503 })
    idp.next = (rt) => token({ refreshToken: `${rt}+` })
    expect((await tokens.accessToken(session)).session.data.refreshToken).toBe('rt-1+')
    // Twice for rt-1: had the IdP spent it before failing, the second would get
    // invalid_grant and end the session (S36); every other path presents it once.
    expect(idp.presented).toEqual(['rt-1', 'rt-1'])
  })

  it('invalid_grant ends the session with refresh_token_rejected (security model S35, S36)', async () => {
    const { sessions, tokens, idp, data, events } = setup()
    const { session } = await sessions.create(data())
    idp.next = () =>
      new oidc.ResponseBodyError('invalid_grant', { cause: { error: 'invalid_grant' }, response: new Response(null, { status: 400 }) })
    await expect(tokens.accessToken(session)).rejects.toMatchObject({ code: 'login_required', status: 401 })
    expect(await sessions.loadBySid(session.sid, { slide: false })).toBeNull()
    expect(events().some((e) => e.event === 'refresh_token_rejected')).toBe(true)
  })

  it('an unreachable IdP keeps the session and answers idp_unavailable (security model S36)', async () => {
    const { sessions, tokens, idp, data, events } = setup()
    const { session } = await sessions.create(data())
    idp.next = () => new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) })
    await expect(tokens.accessToken(session)).rejects.toMatchObject({ code: 'idp_unavailable', status: 503 })
    expect(await sessions.loadBySid(session.sid, { slide: false })).not.toBeNull()
    expect(events().some((e) => e.event === 'refresh_failed')).toBe(true)
    // The journal was cleared, so the next attempt may redeem the token.
    idp.next = () => token()
    expect((await tokens.accessToken(session)).token).not.toBe('at-old')
  })

  it('a refresh whose answer was lost after sending keeps the session for now, then fails closed: never a second redemption', async () => {
    const { sessions, tokens, idp, data, events } = setup()
    const { session } = await sessions.create(data())
    idp.next = () => new TypeError('terminated', { cause: Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }) })
    await expect(tokens.accessToken(session)).rejects.toMatchObject({ code: 'idp_unavailable', status: 503 })
    expect(await sessions.loadBySid(session.sid, { slide: false })).not.toBeNull()
    idp.next = () => token()
    await expect(tokens.accessToken(session)).rejects.toMatchObject({ code: 'login_required' })
    expect(idp.grants).toBe(1)
    expect(await sessions.loadBySid(session.sid, { slide: false })).toBeNull()
    expect(events().some((e) => e.event === 'refresh_failed' && e.reason === 'a previous refresh was interrupted')).toBe(true)
  })

  it.each([
    ['sub', { sub: 'mallory' }],
    ['iss', { iss: 'https://evil.example' }],
    ['aud', { aud: ['someone-else'] }],
    // Core §3.1.3.7 step 5 (issue 13 item 8): the session had no azp, so "azp unchanged" did not apply.
    ['azp to another client', { azp: 'another-client' }],
  ])('a refreshed ID token that changes %s ends the session (OIDC Core §12.2, security model S12)', async (_name, change) => {
    const { sessions, tokens, idp, data } = setup()
    const { session } = await sessions.create(data())
    const claims = { iss: 'https://idp.example', sub: 'alice', aud: ['tokenward'], iat: 1, exp: 2, ...change } as oidc.IDToken
    idp.next = () => token({ idClaims: claims })
    await expect(tokens.accessToken(session)).rejects.toMatchObject({ code: 'login_required' })
    expect(await sessions.loadBySid(session.sid, { slide: false })).toBeNull()
  })

  it('a refreshed ID token whose azp is our client id is accepted', async () => {
    const { config, sessions, tokens, idp, data } = setup()
    const { session } = await sessions.create(data())
    idp.next = () =>
      token({
        idClaims: { iss: 'https://idp.example', sub: 'alice', aud: ['tokenward'], azp: config.clientId, iat: 1, exp: 2 } as oidc.IDToken,
      })
    expect((await tokens.accessToken(session)).token).not.toBe('at-old')
  })

  // Issue 13 item 9: a TypeError that is no network failure (here openid-client's
  // own for a bad argument) is a bug: 500, logged as an error, never 503.
  it('a bug during the refresh is a 500 server_error, logged at error level; the session is kept', async () => {
    const { sessions, tokens, idp, data } = setup()
    const { session } = await sessions.create(data())
    const bad = await oidc
      .refreshTokenGrant(
        new oidc.Configuration({ issuer: 'https://idp.example', token_endpoint: 'https://idp.example/token' }, 'c', 's'),
        '',
      )
      .then(
        () => undefined,
        (err: unknown) => err,
      )
    expect(bad).toBeInstanceOf(TypeError)
    idp.next = () => bad as Error
    await expect(tokens.accessToken(session)).rejects.toMatchObject({ code: 'server_error', status: 500 })
    expect(await sessions.loadBySid(session.sid, { slide: false })).not.toBeNull()
  })

  it('an expired access token without a refresh token ends the session with session_expired', async () => {
    const { sessions, tokens, idp, data, events } = setup()
    const { session } = await sessions.create(data({ refreshToken: undefined }))
    await expect(tokens.accessToken(session)).rejects.toMatchObject({ code: 'login_required' })
    expect(idp.grants).toBe(0)
    expect(events().some((e) => e.event === 'session_expired')).toBe(true)
  })

  it('a session ended while the refresh ran is not resurrected by the new tokens', async () => {
    const { sessions, tokens, idp, data } = setup()
    idp.delayMs = 100
    const { session } = await sessions.create(data())
    const pending = tokens.accessToken(session)
    await sleep(20)
    await sessions.destroy(session.sid)
    await expect(pending).rejects.toMatchObject({ code: 'login_required' })
    expect(await sessions.loadBySid(session.sid, { slide: false })).toBeNull()
  })

  it('a waiter gives up with 503 when another holder keeps the lock too long (security model S33)', async () => {
    const { sessions, tokens, store, data } = setup()
    const { session } = await sessions.create(data())
    await store.leases.acquire(session.sid, 'someone-else', 10_000)
    const started = Date.now()
    await expect(tokens.accessToken(session)).rejects.toMatchObject({ code: 'idp_unavailable', status: 503 })
    expect(Date.now() - started).toBeGreaterThanOrEqual(1900)
    expect(Date.now() - started).toBeLessThan(4000)
  })

  it('leaves no entry behind in the single-flight map', async () => {
    const { sessions, tokens, data } = setup()
    for (let i = 0; i < 20; i++) {
      const { session } = await sessions.create(data())
      await tokens.accessToken(session)
    }
    expect(tokens.inflight).toBe(0)
  })

  describe('audience tokens for routes with resource/scopes (RFC 8707, RFC 6749 §6)', () => {
    const audience = { resource: 'https://orders.example', scopes: ['orders:read'] }

    it('gets a token for the audience with the refresh token, keeps it per audience, and leaves the session token alone', async () => {
      const { sessions, tokens, idp, data } = setup()
      const { session } = await sessions.create(data({ accessTokenExpiresAt: Date.now() + 600_000 }))
      idp.next = (rt) => token({ accessToken: 'at-orders', refreshToken: `${rt}+`, expiresIn: 300 })
      const a = await tokens.accessToken(session, { audience })
      expect(a.token).toBe('at-orders')
      expect(idp.params.at(-1)).toEqual({ resource: 'https://orders.example', scope: 'orders:read' })
      expect(a.session.data.accessToken).toBe('at-old') // the session's own token is untouched
      expect(a.session.data.refreshToken).toBe('rt-1+') // rotation still persisted
      // Cached: no second grant while it is fresh; the plain token needs none either.
      const again = await tokens.accessToken(a.session, { audience })
      expect(again.token).toBe('at-orders')
      expect((await tokens.accessToken(a.session)).token).toBe('at-old')
      expect(idp.grants).toBe(1)
    })

    it('50 concurrent callers for one audience share one grant', async () => {
      const { sessions, tokens, idp, data } = setup()
      idp.delayMs = 50
      const { session } = await sessions.create(data({ accessTokenExpiresAt: Date.now() + 600_000 }))
      const got = await Promise.all(Array.from({ length: 50 }, () => tokens.accessToken(session, { audience })))
      expect(idp.grants).toBe(1)
      expect(new Set(got.map((g) => g.token)).size).toBe(1)
    })

    it('a forced refresh after the upstream rejected the audience token fetches a new one', async () => {
      const { sessions, tokens, idp, data } = setup()
      const { session } = await sessions.create(data({ accessTokenExpiresAt: Date.now() + 600_000 }))
      let n = 0
      idp.next = (rt) => token({ accessToken: `at-orders-${++n}`, refreshToken: `${rt}+` })
      const first = await tokens.accessToken(session, { audience })
      const second = await tokens.accessToken(first.session, { audience, force: true })
      expect(first.token).toBe('at-orders-1')
      expect(second.token).toBe('at-orders-2')
    })
  })
})
