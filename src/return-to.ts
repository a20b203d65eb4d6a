/**
 * Restricts a post-login destination to a same-origin relative path; anything else
 * becomes `/` (the base path's `/` for a frontend at a path base) (RFC 9700 §4.11.1, security model S7). Browsers treat `\` like
 * `/` and drop tabs and newlines inside URLs, so `/\evil.com` or `/\t/evil.com`
 * would become protocol-relative `//evil.com`: any such character is refused.
 */
export function safeReturnTo(value: string | undefined | null, origin: string, base = ''): string {
  const result = sameOriginPath(value, origin)
  // A frontend at a path base sends its users back under the base only: the
  // rest of the origin is another frontend's (security model S92).
  if (result === undefined || !underBase(result, base)) return `${base}/`
  return result
}

/** Whether a path (with query and fragment) is the base or under it, on a segment boundary. */
export function underBase(path: string, base: string): boolean {
  if (base === '') return true
  const rest = path.slice(base.length)
  return path.startsWith(base) && (rest === '' || rest.startsWith('/') || rest.startsWith('?') || rest.startsWith('#'))
}

function sameOriginPath(value: string | undefined | null, origin: string): string | undefined {
  if (!value || value.length > 2048) return undefined
  if (!value.startsWith('/') || value.startsWith('//')) return undefined
  // eslint-disable-next-line no-control-regex -- control characters are what is refused here
  if (/[\u0000-\u001f\u007f\\]/.test(value)) return undefined
  let decoded: string
  try {
    decoded = decodeURIComponent(value)
  } catch {
    return undefined
  }
  // Encoded slashes or backslashes at the start (`/%2f%2fevil.com`) become
  // protocol-relative after one more decode by a careless hop; refuse them too.
  // eslint-disable-next-line no-control-regex -- a control character after the first slash is what is refused here
  if (decoded.startsWith('//') || /^\/[\\\u0000-\u001f]/.test(decoded)) return undefined
  let url: URL
  try {
    url = new URL(value, origin)
  } catch {
    return undefined
  }
  if (url.origin !== origin) return undefined
  const result = `${url.pathname}${url.search}${url.hash}`
  // Dot-segment removal can itself produce `//evil.com` from `/.//evil.com`, or
  // `/%2f%2fevil.com` from `/a/../%2f%2fevil.com`: check what is actually
  // returned, raw and decoded once more, not only what came in.
  let decodedResult: string
  try {
    decodedResult = decodeURIComponent(url.pathname)
  } catch {
    return undefined
  }
  // eslint-disable-next-line no-control-regex -- a control character after the first slash is what is refused here
  if (result.startsWith('//') || decodedResult.startsWith('//') || /^\/[\\\u0000-\u001f]/.test(decodedResult)) return undefined
  if (new URL(result, origin).origin !== origin) return undefined
  return result
}
