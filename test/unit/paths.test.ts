import { describe, expect, it } from 'vitest'
import { loadConfig, type RouteConfig } from '../../src/config.js'
import { findRoute, mapRequest, normaliseSegment, type RouteMatch } from '../../src/proxy/paths.js'
import { configProblems, testEnv } from '../helpers/env.js'

function routesOf(routes: unknown[], overrides: Record<string, string> = {}): readonly RouteConfig[] {
  return loadConfig(testEnv({ BFF_ROUTES: JSON.stringify(routes), ...overrides })).routes
}

const api = routesOf([{ prefix: '/api', upstream: 'http://api.internal/v1', token: 'user' }])
const nested = routesOf([
  { prefix: '/api', upstream: 'http://api.internal/v1', token: 'user' },
  { prefix: '/api/admin', upstream: 'http://admin.internal/root', token: 'user' },
])

function target(m: RouteMatch): string {
  if (m.kind !== 'route') throw new Error(`expected a route, got ${JSON.stringify(m)}`)
  return m.target.href
}

describe('findRoute', () => {
  it('matches the prefix on whole path segments', () => {
    expect(findRoute(api, '/api')?.prefix).toBe('/api')
    expect(findRoute(api, '/api/x')?.prefix).toBe('/api')
    expect(findRoute(api, '/api/x/y')?.prefix).toBe('/api')
    expect(findRoute(api, '/apix')).toBeUndefined()
    expect(findRoute(api, '/apix/y')).toBeUndefined()
    expect(findRoute(api, '/ap')).toBeUndefined()
    expect(findRoute(api, '/')).toBeUndefined()
    expect(findRoute(api, '/API/x')).toBeUndefined()
  })

  it('picks the longest matching prefix, whatever the configured order', () => {
    const reversed = routesOf([
      { prefix: '/api/admin', upstream: 'http://admin.internal/root', token: 'user' },
      { prefix: '/api', upstream: 'http://api.internal/v1', token: 'user' },
    ])
    for (const routes of [nested, reversed]) {
      expect(findRoute(routes, '/api/admin')?.prefix).toBe('/api/admin')
      expect(findRoute(routes, '/api/admin/users')?.prefix).toBe('/api/admin')
      expect(findRoute(routes, '/api/adminx')?.prefix).toBe('/api')
      expect(findRoute(routes, '/api/x')?.prefix).toBe('/api')
    }
  })
})

describe('mapRequest', () => {
  it('appends the rest of the path and the query to the upstream path (CONTRACT routes)', () => {
    expect(target(mapRequest(api, '/api/orders/7?x=1'))).toBe('http://api.internal/v1/orders/7?x=1')
    expect(target(mapRequest(api, '/api'))).toBe('http://api.internal/v1')
    expect(target(mapRequest(api, '/api?x=1&y=2'))).toBe('http://api.internal/v1?x=1&y=2')
    expect(target(mapRequest(api, '/api/'))).toBe('http://api.internal/v1/')
    expect(target(mapRequest(api, '/api/a/b/c'))).toBe('http://api.internal/v1/a/b/c')
  })

  it('works for the https upstream of the contract example', () => {
    const routes = routesOf([{ prefix: '/api', upstream: 'https://api.internal/v1', token: 'user' }], {
      BFF_ALLOW_HTTP: 'false',
      BFF_ISSUER: 'https://idp.example.com',
    })
    expect(target(mapRequest(routes, '/api/orders/7?x=1'))).toBe('https://api.internal/v1/orders/7?x=1')
  })

  it('handles an upstream with a trailing slash or no path, and keeps the upstream port', () => {
    const slash = routesOf([{ prefix: '/api', upstream: 'http://api.internal/v1/', token: 'user' }])
    expect(target(mapRequest(slash, '/api/orders'))).toBe('http://api.internal/v1/orders')
    const bare = routesOf([{ prefix: '/api', upstream: 'http://api.internal:8080', token: 'user' }])
    expect(target(mapRequest(bare, '/api/orders?x=1'))).toBe('http://api.internal:8080/orders?x=1')
    expect(target(mapRequest(bare, '/api'))).toBe('http://api.internal:8080/')
  })

  it('keeps percent-encoded characters that are not separators as sent', () => {
    expect(target(mapRequest(api, '/api/a%20b'))).toBe('http://api.internal/v1/a%20b')
    expect(target(mapRequest(api, '/api/x/@y'))).toBe('http://api.internal/v1/x/@y')
  })

  it('matches whole segments: /apix is not /api', () => {
    expect(mapRequest(api, '/apix')).toEqual({ kind: 'none' })
    expect(mapRequest(api, '/apix/y')).toEqual({ kind: 'none' })
  })

  it('sends a request to the route with the longest prefix', () => {
    expect(target(mapRequest(nested, '/api/admin/users?x=1'))).toBe('http://admin.internal/root/users?x=1')
    expect(target(mapRequest(nested, '/api/admin'))).toBe('http://admin.internal/root')
    expect(target(mapRequest(nested, '/api/adminx'))).toBe('http://api.internal/v1/adminx')
    expect(target(mapRequest(nested, '/api/orders'))).toBe('http://api.internal/v1/orders')
  })

  // security model S39 and docs/routes.md: a path that escapes the prefix
  // after decoding is refused and never forwarded.
  const escapes = [
    '/api/..%2f..%2fadmin',
    '/api/%2e%2e/',
    '/api/%2e%2e',
    '/api/../admin',
    '/api/..',
    '/api/%2E%2e/x',
    '/api/.%2e/x',
    '/api/x/%2e%2e/%2e%2e/admin',
    '/api/./x',
    '/api/%2e/x',
    '/api//evil.com',
    '/api/x//y',
    '/api/@evil.com',
    '/api/%40evil.com',
    '/api/http://evil.com',
    '/api/http:%2f%2fevil.com',
    '/api/HTTPS:evil.com',
    '/api/%2fevil',
    '/api/%2Fevil',
    '/api/a%5cb',
    '/api/a%5Cb',
    '/api/a\\b',
    '/api/\\evil.com',
    '/api/%00',
    '/api/a%0d%0aHost:%20evil.com',
    '/api/%zz',
    '/api/%',
    '/api/x?y=1#frag',
  ]

  it.each(escapes)('security model S39: %j is refused', (raw) => {
    for (const routes of [api, nested]) {
      const m = mapRequest(routes, raw)
      expect(m.kind).toBe('refused')
      if (m.kind === 'refused') expect(m.reason).toMatch(/\S/)
    }
  })

  it.each(['/x/../api/y', '/%61pi/y', '/%61%70%69', '/api%2fadmin/x', '/x/%2e%2e/api/y', '/./api/y'])(
    'security model S39: %j reaches a route only after normalisation and is refused',
    (raw) => {
      expect(mapRequest(api, raw).kind).toBe('refused')
    },
  )

  it.each(['/unknown/path', '/', '/apix', '/x/../y', '/%zz'])('%j matches no route: none (404)', (raw) => {
    expect(mapRequest(api, raw)).toEqual({ kind: 'none' })
  })

  it('refuses a request target that is not a path', () => {
    for (const raw of ['http://evil.com/api/x', 'api/x', '*', '']) {
      expect(mapRequest(api, raw).kind).toBe('refused')
    }
  })

  it('security model S39: over many generated paths, a route target never leaves the upstream', () => {
    const pieces = [
      '..',
      '%2e%2e',
      '%2E%2e',
      '.%2e',
      '%2f',
      '%2F',
      '@x',
      'a',
      '',
      '%5c',
      '.',
      '%2e',
      'b%2Fc',
      'http:',
      '\\',
      '%00',
      '%zz',
      '%252e%252e',
    ]
    const configs = [
      { routes: api, upstream: new URL('http://api.internal/v1') },
      { routes: nested, upstream: new URL('http://api.internal/v1') },
    ]
    let routed = 0
    let refused = 0
    for (const { routes, upstream } of configs) {
      for (const a of pieces) {
        for (const b of pieces) {
          for (const c of pieces) {
            for (const query of ['', '?q=1']) {
              const raw = `/api/${a}/${b}/${c}${query}`
              const m = mapRequest(routes, raw)
              expect(m.kind, raw).not.toBe('none')
              if (m.kind === 'refused') {
                refused++
                continue
              }
              if (m.kind !== 'route') continue
              routed++
              const base = m.route.upstream
              expect(m.target.origin, raw).toBe(base.origin)
              const basePath = base.pathname.replace(/\/$/, '')
              expect(m.target.pathname === basePath || m.target.pathname.startsWith(`${basePath}/`), `${raw} -> ${m.target.href}`).toBe(
                true,
              )
              if (m.route.prefix === '/api') {
                expect(m.target.origin, raw).toBe(upstream.origin)
                expect(m.target.pathname.startsWith(upstream.pathname), raw).toBe(true)
              }
              const remainder = m.target.pathname.slice(basePath.length).split('/')
              for (const seg of remainder) {
                const decoded = decodeURIComponent(seg)
                expect(decoded, `${raw} -> ${m.target.href}`).not.toBe('..')
                expect(decoded, `${raw} -> ${m.target.href}`).not.toBe('.')
                expect(decoded.includes('/') || decoded.includes('\\'), `${raw} -> ${m.target.href}`).toBe(false)
              }
              expect(m.target.search, raw).toBe(query)
            }
          }
        }
      }
    }
    // The generator must exercise both outcomes, or the check above proves nothing.
    expect(routed).toBeGreaterThan(0)
    expect(refused).toBeGreaterThan(0)
  })
})

describe('normalisation evasions with backslashes', () => {
  it('a leading backslash that normalises onto a route is refused, not unknown (security model S39)', () => {
    expect(mapRequest(api, '/\\api/y').kind).toBe('refused')
    expect(mapRequest(api, '/\\\\api/y').kind).toBe('refused')
  })
})

// Issue 13, item 3: routes `/api` (all methods) and `/api/admin` (GET only).
// Upstreams that drop `;` parameters (Tomcat, Jetty, Spring), ignore case
// (IIS, ASP.NET) or apply NFKC route these to the admin handler: sent through
// `/api` they would skip `/api/admin`'s methods list.
describe('a path that normalises onto a more specific route', () => {
  const policy = routesOf([
    { prefix: '/api', upstream: 'http://api.internal/', token: 'user' },
    { prefix: '/api/admin', upstream: 'http://api.internal/admin', token: 'user', methods: ['GET'] },
  ])
  const bypasses = [
    '/api/admin;/users',
    '/api/admin;x=1/users/7',
    '/api/ADMIN/users',
    '/api/Admin',
    '/api/ADMIN/',
    '/api/ADMIN?x=1',
    '/api/admin;',
    '/api/admin%3B/users',
    '/api/%41DMIN/users',
    '/api/ａｄｍｉｎ/users',
    '/api/adm%C4%B1n/users',
    '/api/ADM%C4%B0N/users',
    '/api/;x/admin/users',
    '/api/;/ADMIN',
  ]

  it.each(bypasses)('%j is refused, by the fast path and the careful one alike', (raw) => {
    for (const plainFastPath of [true, false]) {
      const m = mapRequest(policy, raw, { plainFastPath })
      expect(m).toEqual({ kind: 'refused', reason: 'path falls under another route once normalised' })
    }
  })

  it('still routes the paths each route names as sent', () => {
    expect(target(mapRequest(policy, '/api/admin/users'))).toBe('http://api.internal/admin/users')
    expect(target(mapRequest(policy, '/api/other'))).toBe('http://api.internal/other')
    expect(target(mapRequest(policy, '/api/adminx/ADMIN'))).toBe('http://api.internal/adminx/ADMIN')
    expect(target(mapRequest(policy, '/api/x/admin;y'))).toBe('http://api.internal/x/admin;y')
    expect(target(mapRequest(policy, '/api/Orders'))).toBe('http://api.internal/Orders')
  })

  it('leaves a route without nested routes alone: case and `;` parameters are passed as sent', () => {
    expect(target(mapRequest(api, '/api/ADMIN;x=1/Users'))).toBe('http://api.internal/v1/ADMIN;x=1/Users')
    expect(target(mapRequest(api, '/api/ADMIN/Users'))).toBe('http://api.internal/v1/ADMIN/Users')
    expect(api[0]!.nestedPrefixes).toEqual([])
  })

  it('compares configured prefixes in the same form: a prefix in capitals or with `;` parameters', () => {
    const routes = routesOf([
      { prefix: '/API', upstream: 'http://api.internal/', token: 'user' },
      { prefix: '/API/Admin;v=2', upstream: 'http://api.internal/admin', token: 'user', methods: ['GET'] },
    ])
    expect(routes.map((r) => [r.prefix, r.matchPrefix, r.nestedPrefixes])).toEqual([
      ['/API/Admin;v=2', '/api/admin', []],
      ['/API', '/api', ['/api/admin']],
    ])
    expect(target(mapRequest(routes, '/API/Admin;v=2/users'))).toBe('http://api.internal/admin/users')
    expect(target(mapRequest(routes, '/API/other'))).toBe('http://api.internal/other')
    for (const raw of ['/API/admin/users', '/API/Admin/users', '/API/ADMIN;v=3']) expect(mapRequest(routes, raw).kind, raw).toBe('refused')
  })

  it('refuses a segment that NFKC turns into separators (full-width `／`, `＼`)', () => {
    for (const raw of ['/api/x／..／admin', '/api/x%EF%BC%8F..%EF%BC%8Fadmin', '/api/a＼b']) {
      expect(mapRequest(api, raw)).toEqual({ kind: 'refused', reason: 'encoded slash or backslash' })
    }
  })

  it('normaliseSegment: NFKC, `;` parameters dropped, case folded as Java compares (ı and İ are i)', () => {
    expect(normaliseSegment('Admin;v=1')).toBe('admin')
    expect(normaliseSegment('ａｄｍｉｎ')).toBe('admin')
    expect(normaliseSegment('admın')).toBe('admin')
    expect(normaliseSegment('ADMİN')).toBe('admin')
    expect(normaliseSegment('ſtore')).toBe('store')
    expect(normaliseSegment('a；b')).toBe('a')
    expect(normaliseSegment(';x')).toBe('')
  })
})

describe('route prefixes that an upstream cannot tell apart (configuration errors)', () => {
  const problems = (routes: unknown[]): string[] => configProblems(testEnv({ BFF_ROUTES: JSON.stringify(routes) }))
  const r = (prefix: string) => ({ prefix, upstream: 'http://api.internal', token: 'user' })

  it('refuses two prefixes that differ only in letter case or `;` parameters', () => {
    expect(problems([r('/api'), r('/API')])).toEqual([
      'BFF_ROUTES[1].prefix /API is the same path as /api once letters are case-folded and ";" parameters removed',
    ])
    expect(problems([r('/api/admin'), r('/api/Admin;v=2')])).toEqual([
      'BFF_ROUTES[1].prefix /api/Admin;v=2 is the same path as /api/admin once letters are case-folded and ";" parameters removed',
    ])
    expect(problems([r('/api'), r('/api/')])).toEqual(['BFF_ROUTES[1].prefix /api is listed twice'])
  })

  it('refuses a prefix segment made only of `;` parameters', () => {
    expect(problems([r('/api/;v=1')])).toEqual(['BFF_ROUTES[0].prefix /api/;v=1 has a segment made only of ";" parameters'])
  })

  it('accepts nested prefixes and records them on the broader route only', () => {
    const routes = routesOf([r('/api'), r('/api/admin'), r('/api/admin/deep'), r('/other')])
    expect(Object.fromEntries(routes.map((x) => [x.prefix, x.nestedPrefixes]))).toEqual({
      '/api': ['/api/admin', '/api/admin/deep'],
      '/api/admin': ['/api/admin/deep'],
      '/api/admin/deep': [],
      '/other': [],
    })
  })
})
