/**
 * Restricts a post-login destination to a same-origin relative path; anything else
 * becomes `/` (RFC 9700 §4.11.1, security model S7). Browsers treat `\` like
 * `/` and drop tabs and newlines inside URLs, so `/\evil.com` or `/\t/evil.com`
 * would become protocol-relative `//evil.com`: any such character is refused.
 */
export function safeReturnTo(value: string | undefined | null, origin: string): string {
  if (!value || value.length > 2048) return '/'
  if (!value.startsWith('/') || value.startsWith('//')) return '/'
  // eslint-disable-next-line no-control-regex -- control characters are what is refused here
  if (/[\u0000-\u001f\u007f\\]/.test(value)) return '/'
  let decoded: string
  try {
    decoded = decodeURIComponent(value)
  } catch {
    return '/'
  }
  // Encoded slashes or backslashes at the start (`/%2f%2fevil.com`) become
  // protocol-relative after one more decode by a careless hop; refuse them too.
  // eslint-disable-next-line no-control-regex -- a control character after the first slash is what is refused here
  if (decoded.startsWith('//') || /^\/[\\\u0000-\u001f]/.test(decoded)) return '/'
  let url: URL
  try {
    url = new URL(value, origin)
  } catch {
    return '/'
  }
  if (url.origin !== origin) return '/'
  const result = `${url.pathname}${url.search}${url.hash}`
  // Dot-segment removal can itself produce `//evil.com` from `/.//evil.com`, or
  // `/%2f%2fevil.com` from `/a/../%2f%2fevil.com`: check what is actually
  // returned, raw and decoded once more, not only what came in.
  let decodedResult: string
  try {
    decodedResult = decodeURIComponent(url.pathname)
  } catch {
    return '/'
  }
  // eslint-disable-next-line no-control-regex -- a control character after the first slash is what is refused here
  if (result.startsWith('//') || decodedResult.startsWith('//') || /^\/[\\\u0000-\u001f]/.test(decodedResult)) return '/'
  if (new URL(result, origin).origin !== origin) return '/'
  return result
}
