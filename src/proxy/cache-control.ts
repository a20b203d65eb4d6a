/**
 * A response to a request the session authenticated is one user's answer, and
 * the browser sent a cookie, not Authorization: a shared cache in front of
 * tokenward does not know that (RFC 9111 §3.5 covers Authorization only) and
 * would store it and serve it to other users. Such a response's Cache-Control
 * is made one that forbids shared caches to store it:
 *
 * - none from the upstream: `no-store` (RFC 9111 §5.2.2.5);
 * - otherwise `public` (§5.2.2.9) and `s-maxage` (§5.2.2.10), which let a shared
 *   cache store it, are dropped, and `private` (§5.2.2.7) is added unless
 *   `private` or `no-store` is there already. `private` with field names only
 *   keeps those fields out of shared caches, so that form is dropped as well.
 *
 * The browser's own (private) cache keeps what the upstream allows it.
 */
export function privateCacheControl(upstream: string | string[] | undefined): string {
  const value = Array.isArray(upstream) ? upstream.join(', ') : upstream
  if (value === undefined || value.trim() === '') return 'no-store'
  // The usual answers (`no-store`, `private, max-age=60`, `no-cache, private`) need no rewriting.
  if (!value.includes('"') && !SHAREABLE.test(value) && CLOSED.test(value)) return value
  const kept: string[] = []
  let closed = false
  for (const directive of directives(value)) {
    if (directive === undefined) return 'no-store'
    const eq = directive.indexOf('=')
    const name = (eq < 0 ? directive : directive.slice(0, eq)).trim().toLowerCase()
    if (name === 'public' || name === 's-maxage' || (name === 'private' && eq >= 0)) continue
    if (name === 'no-store' || name === 'private') closed = true
    kept.push(directive)
  }
  if (!closed) kept.push('private')
  return kept.join(', ')
}

/** Anything that may let a shared cache store the response (directive names are case-insensitive, RFC 9111 §5.2). */
const SHAREABLE = /public|s-maxage|private\s*=/i
/** A bare `private` or `no-store` directive. */
const CLOSED = /(?:^|,)\s*(?:private|no-store)\s*(?:,|$)/i

/**
 * The directives of a Cache-Control value, trimmed, split on commas outside
 * quoted strings (RFC 9110 §5.6.1, §5.6.4); a last element undefined when a
 * quoted string is left open (the value is malformed and trusted for nothing).
 */
function directives(value: string): Array<string | undefined> {
  const out: Array<string | undefined> = []
  let start = 0
  let quoted = false
  const push = (end: number) => {
    const d = value.slice(start, end).trim()
    if (d !== '') out.push(d)
  }
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (quoted && c === 0x5c)
      i++ // quoted-pair
    else if (c === 0x22) quoted = !quoted
    else if (c === 0x2c && !quoted) {
      push(i)
      start = i + 1
    }
  }
  push(value.length)
  if (quoted) out.push(undefined)
  return out
}
