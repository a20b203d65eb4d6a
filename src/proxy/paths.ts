import type { RouteConfig } from '../config.js'

export type RouteMatch =
  | {
      kind: 'route'
      route: RouteConfig
      /** Path and query to request from the route's upstream origin. */
      path: string
      /** The full upstream URL (built on first use: most requests only need `path`). */
      readonly target: URL
    }
  | { kind: 'refused'; reason: string }
  | { kind: 'none' }

function routeMatch(route: RouteConfig, path: string, target?: URL): RouteMatch {
  let url = target
  return {
    kind: 'route',
    route,
    path,
    get target() {
      return (url ??= new URL(`${route.upstream.origin}${path}`))
    },
  }
}

/**
 * Paths made only of these characters (no `%`, `.`, `;`, `:`, `\\`, `@`) and
 * without empty segments decode and normalise to themselves and cannot hold a
 * dot segment, an encoded separator or a scheme-like first segment: every check
 * below passes and the URL parser would leave them as they are. Most API paths
 * are like this; they skip the decoding work.
 */
const PLAIN_PATH = /^[A-Za-z0-9\-_~!$&'()*+,=/]*$/
/** A query the URL parser leaves as it is (no space, `"`, `#`, `'`, `<`, `>`, control or non-ASCII characters). */
const PLAIN_QUERY = /^(?:\?[\x21\x24-\x26\x28-\x3b\x3d\x3f-\x7e]+)?$/

/**
 * One decoded path segment in the form route matching compares, which is what
 * common upstream servers may make of it before they route: NFKC (servers that
 * normalise Unicode read `ａｄｍｉｎ` as `admin`), without `;` path parameters
 * (Tomcat, Jetty and Spring drop them: `admin;x=1` is `admin`, RFC 3986 §3.3
 * leaves their meaning to the server), and letters case-folded (IIS, ASP.NET and
 * case-insensitive routers elsewhere). Upper- then lower-casing folds as Java's
 * equalsIgnoreCase compares: `ı` (dotless i) and `İ` match `i` there too.
 */
export function normaliseSegment(decoded: string): string {
  const nfkc = decoded.normalize('NFKC')
  const semi = nfkc.indexOf(';')
  return (semi < 0 ? nfkc : nfkc.slice(0, semi))
    .replace(/\u0130/g, 'i')
    .toUpperCase()
    .toLowerCase()
}

/** Whether normalised `path` lies under one of `prefixes` (normalised too), on whole segments. */
function underAny(prefixes: readonly string[], path: string): boolean {
  return prefixes.some((p) => path.startsWith(p) && (path.length === p.length || path.charCodeAt(p.length) === 0x2f))
}

/**
 * `rest` (after the prefix; checked by checkRest) normalised segment by segment;
 * `;`-only segments leave an empty one, which servers that merge slashes drop.
 */
function normaliseRest(rest: string): string {
  if (rest === '') return ''
  return `/${rest
    .slice(1)
    .split('/')
    .map((seg) => normaliseSegment(decodeURIComponent(seg)))
    .join('/')}`.replace(/\/{2,}/g, '/')
}

/** The route whose prefix matches whole path segments of `path`, most specific first. */
export function findRoute(routes: readonly RouteConfig[], path: string): RouteConfig | undefined {
  return routes.find((r) => path === r.prefix || path.startsWith(`${r.prefix}/`))
}

const ANOTHER_ROUTE: RouteMatch = Object.freeze({ kind: 'refused', reason: 'path falls under another route once normalised' })

/**
 * Maps a raw request target (`/api/orders/7?x=1`, exactly as received, not decoded)
 * to its upstream URL, or refuses it. Nothing that escapes the prefix after
 * decoding is forwarded: dot segments (also `%2e`), encoded `/` or `\`, empty
 * segments (`//host`), control characters, or a first segment that reads as a
 * scheme or authority (`http:`, `@host`). BBA §6.1.3.6; security model S39.
 * Nor is a path whose normalised form (normaliseSegment) falls under another,
 * more specific route than the one it matches as sent.
 */
export function mapRequest(routes: readonly RouteConfig[], rawTarget: string, options: { plainFastPath?: boolean } = {}): RouteMatch {
  if (!rawTarget.startsWith('/')) return { kind: 'refused', reason: 'request target is not a path' }
  const q = rawTarget.indexOf('?')
  const rawPath = q < 0 ? rawTarget : rawTarget.slice(0, q)
  const query = q < 0 ? '' : rawTarget.slice(q)
  if (query.includes('#')) return { kind: 'refused', reason: 'fragment in request target' }

  const route = findRoute(routes, rawPath)
  if (!route) {
    // Not a route as sent; if it becomes one once normalised (`/x/../api`,
    // `/%61pi`), it is an evasion attempt rather than an unknown path.
    const normalised = normalise(rawPath)
    return normalised !== undefined && findRoute(routes, normalised)
      ? { kind: 'refused', reason: 'path reaches a route only after normalisation' }
      : { kind: 'none' }
  }

  const rest = rawPath.slice(route.prefix.length)
  const base = route.upstream
  const basePath = base.pathname.endsWith('/') ? base.pathname.slice(0, -1) : base.pathname
  // `plainFastPath: false` exists for the tests that hold both paths to the same answers.
  if (options.plainFastPath !== false && PLAIN_PATH.test(rest) && !rest.includes('//') && PLAIN_QUERY.test(query)) {
    // A plain path is ASCII without `%` or `;`: normalised, it is only lower-cased.
    if (route.nestedPrefixes.length > 0 && underAny(route.nestedPrefixes, `${route.matchPrefix}${rest.toLowerCase()}`)) return ANOTHER_ROUTE
    return routeMatch(route, `${`${basePath}${rest}` || '/'}${query}`)
  }
  const problem = checkRest(rest)
  if (problem) return { kind: 'refused', reason: problem }
  // `/api/%61dmin`, `/api/admin;x/users` and `/api/ADMIN` match `/api` as sent
  // but `/api/admin` at an upstream that decodes, drops `;` parameters or
  // ignores case: forwarding them would skip the more specific route's policy
  // (its methods, token mode, audience). Its normalised form can only fall
  // under this route or one nested under it.
  if (route.nestedPrefixes.length > 0 && underAny(route.nestedPrefixes, `${route.matchPrefix}${normaliseRest(rest)}`)) return ANOTHER_ROUTE

  // String concatenation onto the configured origin: the host can never change.
  const target = new URL(base.origin)
  target.pathname = `${basePath}${rest}` || '/'
  target.search = query
  if (target.origin !== base.origin) return { kind: 'refused', reason: 'target left the upstream origin' }
  return routeMatch(route, `${target.pathname}${target.search}`, target)
}

function checkRest(rest: string): string | undefined {
  if (rest === '') return undefined
  // rest starts with '/', by construction of the segment-wise match.
  const segments = rest.slice(1).split('/')
  for (let i = 0; i < segments.length; i++) {
    const raw = segments[i]!
    if (raw === '' && i < segments.length - 1) return 'empty path segment'
    let seg: string
    try {
      seg = decodeURIComponent(raw)
    } catch {
      return 'invalid percent-encoding'
    }
    // Also `..;x` (Java servers drop `;` path parameters) and full-width dots
    // (servers that apply NFKC): what some upstream will treat as a dot segment.
    const nfkc = seg.normalize('NFKC')
    const plain = nfkc.split(';')[0]
    if (seg === '.' || seg === '..' || plain === '.' || plain === '..') return 'dot segment'
    // NFKC also turns full-width `／` and `＼` into separators: a server that
    // applies it would see more segments (and maybe `..` among them) than were checked.
    if (/[/\\]/.test(nfkc)) return 'encoded slash or backslash'
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f]/.test(seg)) return 'control character'
    if (i === 0 && (seg.startsWith('@') || /^[a-z][a-z0-9+.-]*:/i.test(seg))) return 'segment looks like a scheme or authority'
  }
  return undefined
}

function normalise(rawPath: string): string | undefined {
  try {
    // WHATWG URL resolves `.`/`..` and their `%2e` spellings; then decode the rest.
    return decodeURIComponent(new URL(rawPath.replace(/[\\/]+/g, '/'), 'http://x').pathname).replace(/\/{2,}/g, '/')
  } catch {
    return undefined
  }
}
