import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.js'
import { exchangeKey } from '../../src/tokens/exchange.js'
import { audienceKey } from '../../src/tokens/refresh.js'
import { configProblems, testEnv } from '../helpers/env.js'

// Issue 8: per-route `tokenExchange` (RFC 8693), validated at startup like
// every other route field, each problem naming the route and the field.

const UPSTREAM = 'http://127.0.0.1:5000/v1'

const problems = (routes: unknown[]): string[] => configProblems(testEnv({ BFF_ROUTES: JSON.stringify(routes) }))

function route(extra: Record<string, unknown>): Record<string, unknown> {
  return { prefix: '/b', upstream: UPSTREAM, token: 'user', ...extra }
}

describe('issue 8: BFF_ROUTES tokenExchange (RFC 8693 §2.1)', () => {
  it('accepts audience, resource and scopes, and keeps them on the route', () => {
    const c = loadConfig(
      testEnv({
        BFF_ROUTES: JSON.stringify([
          route({ tokenExchange: { audience: 'https://api-b', resource: 'https://api-b/', scopes: ['b.write', 'b.read'] } }),
          { prefix: '/c', upstream: UPSTREAM, token: 'optional', tokenExchange: { audience: 'api-c' } },
          { prefix: '/d', upstream: UPSTREAM, token: 'user', tokenExchange: { resource: 'urn:example:api-d' } },
          { prefix: '/api', upstream: UPSTREAM, token: 'user' },
        ]),
      }),
    )
    const byPrefix = (p: string) => c.routes.find((r) => r.prefix === p)!
    expect(byPrefix('/b').tokenExchange).toEqual({ audience: 'https://api-b', resource: 'https://api-b/', scopes: ['b.write', 'b.read'] })
    expect(byPrefix('/c').tokenExchange).toEqual({ audience: 'api-c', resource: undefined, scopes: undefined })
    expect(byPrefix('/d').tokenExchange).toEqual({ audience: undefined, resource: 'urn:example:api-d', scopes: undefined })
    expect(byPrefix('/api').tokenExchange).toBeUndefined()
    expect(Object.isFrozen(byPrefix('/b').tokenExchange)).toBe(true)
  })

  it('needs an audience or a resource (RFC 8693 §2.1 names the target with them)', () => {
    expect(problems([route({ tokenExchange: {} })])).toEqual([
      'BFF_ROUTES[0].tokenExchange needs an audience or a resource (RFC 8693 §2.1), or both',
    ])
    expect(problems([route({ tokenExchange: { scopes: ['b.read'] } })])).toEqual([
      'BFF_ROUTES[0].tokenExchange needs an audience or a resource (RFC 8693 §2.1), or both',
    ])
  })

  it('is only for routes that carry the user’s token: not on client or none routes', () => {
    const p = problems([
      route({ prefix: '/c', token: 'client', tokenExchange: { audience: 'api-c' } }),
      route({ prefix: '/n', token: 'none', tokenExchange: { audience: 'api-n' } }),
    ])
    expect(p).toEqual([
      'BFF_ROUTES[0].tokenExchange needs token "user" or "optional" (it exchanges the user\'s access token), not "client"',
      'BFF_ROUTES[1].tokenExchange needs token "user" or "optional" (it exchanges the user\'s access token), not "none"',
    ])
  })

  it('is mutually exclusive with the route’s own resource and scopes (RFC 8707 refresh-audience tokens)', () => {
    const p = problems([
      route({ prefix: '/r', resource: 'https://api-b', tokenExchange: { audience: 'api-b' } }),
      route({ prefix: '/s', scopes: ['b.read'], tokenExchange: { audience: 'api-b' } }),
    ])
    expect(p).toEqual([
      "BFF_ROUTES[0].tokenExchange cannot be combined with the route's own resource or scopes: give them inside tokenExchange",
      "BFF_ROUTES[1].tokenExchange cannot be combined with the route's own resource or scopes: give them inside tokenExchange",
    ])
  })

  it('reports malformed fields by their full path, all at once', () => {
    const p = problems([
      route({ tokenExchange: { audience: '', resource: 'https://api-b/#frag', scopes: ['b.read', 'two words'] } }),
      route({ prefix: '/x', tokenExchange: { audience: 'api b', resource: 'not a uri' } }),
      route({ prefix: '/y', tokenExchange: { audience: 'api-y', scopes: [] } }),
      route({ prefix: '/z', tokenExchange: { audience: 'api-z', scope: 'typo' } }),
      route({ prefix: '/w', tokenExchange: 'https://api-w' }),
    ])
    expect(p).toEqual(
      expect.arrayContaining([
        'BFF_ROUTES[0].tokenExchange.audience must not be empty',
        'BFF_ROUTES[0].tokenExchange.resource must be an absolute URI without whitespace or fragment (RFC 8707 §2)',
        'BFF_ROUTES[0].tokenExchange.scopes[1] must be scope tokens (RFC 6749 §3.3): no spaces, quotes or backslashes',
        'BFF_ROUTES[1].tokenExchange.audience must be one name without whitespace or control characters',
        'BFF_ROUTES[1].tokenExchange.resource must be an absolute URI without whitespace or fragment (RFC 8707 §2)',
        'BFF_ROUTES[2].tokenExchange.scopes must list at least one scope (or be left out)',
      ]),
    )
    // Unknown keys (a typo such as `scope`) and a wrong type name the field too.
    expect(p.some((m) => m.startsWith('BFF_ROUTES[3].tokenExchange ') && m.includes('scope'))).toBe(true)
    expect(p.some((m) => m.startsWith('BFF_ROUTES[4].tokenExchange '))).toBe(true)
    expect(p).toHaveLength(8)
  })

  it('caches under a key that can never be a refresh-audience key, stable across scope order', () => {
    const a = exchangeKey({ audience: 'https://api-b', resource: undefined, scopes: ['b.write', 'b.read'] })
    expect(a).toBe(exchangeKey({ audience: 'https://api-b', resource: undefined, scopes: ['b.read', 'b.write'] }))
    expect(a.startsWith('x:')).toBe(true)
    expect(a).not.toContain(' ')
    // Refresh-audience keys are '' or contain a space; the same target given as audience or resource differs.
    expect(audienceKey({ resource: 'https://api-b', scopes: ['b.read'] })).toContain(' ')
    expect(exchangeKey({ audience: 'https://api-b', resource: undefined, scopes: undefined })).not.toBe(
      exchangeKey({ audience: undefined, resource: 'https://api-b', scopes: undefined }),
    )
  })
})
