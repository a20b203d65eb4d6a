// Browserless login for integration tests: walks tokenward's login redirect,
// the dev IdP's login form (demo/idp.ts) and the callback with plain fetch,
// keeping cookies the way a browser would (closely enough for these flows).

export interface StoredCookie {
  name: string
  value: string
  path: string
  /** Epoch milliseconds; undefined for a session cookie. */
  expiresAt?: number
  /** The raw attributes as sent (HttpOnly, SameSite, Secure...), keys lower-cased. */
  attributes: Record<string, string | true>
}

/**
 * Cookies per host name. Ports are ignored, as browsers do (RFC 6265 §8.5):
 * http://localhost:3000 and http://localhost:4000 share cookies. Domain and
 * Secure are ignored (every cookie is host-only and sent over http too);
 * Path, Max-Age and Expires are honoured.
 */
export class CookieJar {
  readonly #hosts = new Map<string, StoredCookie[]>()

  /** Stores the `Set-Cookie` headers of a response received from `url`. */
  store(url: string | URL, headers: Headers): void {
    const target = new URL(url)
    for (const line of headers.getSetCookie()) this.#apply(target, line)
  }

  /** The `Cookie` header value a browser would send to `url` ('' when none). */
  header(url: string | URL): string {
    const target = new URL(url)
    return (
      this.#live(target.hostname)
        .filter((cookie) => pathMatches(target.pathname, cookie.path))
        // RFC 6265 §5.4: longer paths first.
        .sort((a, b) => b.path.length - a.path.length)
        .map((cookie) => `${cookie.name}=${cookie.value}`)
        .join('; ')
    )
  }

  /** The value of the first live cookie called `name`, on `host` or any host. */
  get(name: string, host?: string): string | undefined {
    const hosts = host ? [hostName(host)] : [...this.#hosts.keys()]
    for (const h of hosts) {
      const found = this.#live(h).find((cookie) => cookie.name === name)
      if (found) return found.value
    }
    return undefined
  }

  /** Sets (or with value undefined, removes) a cookie, e.g. to tamper with it. */
  set(name: string, value: string | undefined, host: string, path = '/'): void {
    const h = hostName(host)
    const rest = (this.#hosts.get(h) ?? []).filter((c) => !(c.name === name && c.path === path))
    if (value !== undefined) rest.push({ name, value, path, attributes: {} })
    this.#hosts.set(h, rest)
  }

  /** Every live cookie stored for `host`, with its attributes. */
  list(host: string): StoredCookie[] {
    return this.#live(hostName(host)).map((cookie) => ({ ...cookie, attributes: { ...cookie.attributes } }))
  }

  clear(): void {
    this.#hosts.clear()
  }

  #live(host: string): StoredCookie[] {
    const now = Date.now()
    const cookies = (this.#hosts.get(host) ?? []).filter((c) => c.expiresAt === undefined || c.expiresAt > now)
    this.#hosts.set(host, cookies)
    return cookies
  }

  #apply(target: URL, line: string): void {
    const [pair = '', ...parts] = line.split(';')
    const eq = pair.indexOf('=')
    if (eq <= 0) return
    const name = pair.slice(0, eq).trim()
    const value = pair.slice(eq + 1).trim()
    const attributes: Record<string, string | true> = {}
    for (const part of parts) {
      const i = part.indexOf('=')
      const key = (i < 0 ? part : part.slice(0, i)).trim().toLowerCase()
      if (key) attributes[key] = i < 0 ? true : part.slice(i + 1).trim()
    }
    const path = typeof attributes.path === 'string' && attributes.path.startsWith('/') ? attributes.path : defaultPath(target.pathname)
    let expiresAt: number | undefined
    // RFC 6265 §5.3: Max-Age wins over Expires.
    if (typeof attributes['max-age'] === 'string') {
      expiresAt = Date.now() + Number(attributes['max-age']) * 1000
    } else if (typeof attributes.expires === 'string') {
      expiresAt = Date.parse(attributes.expires)
    }
    const host = target.hostname
    const rest = (this.#hosts.get(host) ?? []).filter((c) => !(c.name === name && c.path === path))
    const expired = expiresAt !== undefined && (Number.isNaN(expiresAt) || expiresAt <= Date.now())
    if (!expired) rest.push(expiresAt === undefined ? { name, value, path, attributes } : { name, value, path, expiresAt, attributes })
    this.#hosts.set(host, rest)
  }
}

/** One request/response of a login walk; `body` is already read. */
export interface Exchange {
  method: string
  url: string
  status: number
  headers: Headers
  body: string
  /** The original response, body unread (the helper read a clone). */
  response: Response
}

export interface LoginOptions {
  username?: string
  password?: string
  returnTo?: string
  jar?: CookieJar
}

export interface LoginResult {
  jar: CookieJar
  /** `Location` of tokenward's callback response. */
  location: string
  /** The callback URL the IdP redirected to (already used). */
  callbackUrl: string
  /** Every response from tokenward's origin, bodies unread. */
  responses: Response[]
  /** Every request of the walk, tokenward's and the IdP's, bodies read. */
  exchanges: Exchange[]
}

const MAX_HOPS = 20

/** Logs in through tokenward and the dev IdP; throws when any step fails. */
export async function login(bffUrl: string, options: LoginOptions = {}): Promise<LoginResult> {
  const jar = options.jar ?? new CookieJar()
  const exchanges: Exchange[] = []
  const authorizationUrl = await startLogin(bffUrl, jar, options.returnTo ?? '/', exchanges)
  const callbackUrl = await completeAtIdp(authorizationUrl, jar, options.username ?? 'alice', options.password ?? 'demo', exchanges)
  const callback = await send(jar, 'GET', callbackUrl, undefined, exchanges)
  const location = callback.headers.get('location')
  if (!isRedirect(callback.status) || location === null) {
    throw new Error(`callback answered ${callback.status} instead of a redirect: ${snippet(callback.body)}`)
  }
  const origin = new URL(bffUrl).origin
  const responses = exchanges.filter((e) => new URL(e.url).origin === origin).map((e) => e.response)
  return { jar, location, callbackUrl, responses, exchanges }
}

/** GET /auth/login on tokenward; returns the IdP authorization URL it redirects to. */
export async function startLogin(bffUrl: string, jar: CookieJar, returnTo = '/', exchanges?: Exchange[]): Promise<string> {
  const url = `${bffUrl.replace(/\/$/, '')}/auth/login?returnTo=${encodeURIComponent(returnTo)}`
  const res = await send(jar, 'GET', url, undefined, exchanges)
  const location = res.headers.get('location')
  if (!isRedirect(res.status) || location === null) {
    throw new Error(`/auth/login answered ${res.status} instead of a redirect: ${snippet(res.body)}`)
  }
  return new URL(location, url).href
}

/**
 * Walks the IdP from the authorization URL, logging in on the dev IdP's form
 * when it shows one (an existing IdP session skips it), and returns the URL
 * the IdP redirects back to, without requesting it, so a test may replay or
 * tamper with it. An error redirect (`?error=`) is returned the same way.
 */
export async function completeAtIdp(
  authorizationUrl: string,
  jar: CookieJar,
  username = 'alice',
  password = 'demo',
  exchanges?: Exchange[],
): Promise<string> {
  const idpOrigin = new URL(authorizationUrl).origin
  let url = authorizationUrl
  let submitted = false
  for (let hop = 0; hop < MAX_HOPS; hop++) {
    let res = await send(jar, 'GET', url, undefined, exchanges)
    if (res.status === 200) {
      const action = /<form[^>]*\baction="([^"]+\/login)"/.exec(res.body)?.[1]
      if (!action) throw new Error(`unexpected page at ${url}: ${snippet(res.body)}`)
      if (submitted) throw new Error('the IdP asked for a login twice')
      submitted = true
      const form = new URLSearchParams({ username, password })
      res = await send(jar, 'POST', new URL(unescapeHtml(action), url).href, form, exchanges)
      if (res.status === 200) {
        const error = /role="alert">([^<]*)</.exec(res.body)?.[1] ?? snippet(res.body)
        throw new Error(`the IdP refused the login: ${unescapeHtml(error)}`)
      }
    }
    const location = res.headers.get('location')
    if (!isRedirect(res.status) || location === null) {
      throw new Error(`IdP answered ${res.status} at ${url}: ${snippet(res.body)}`)
    }
    const next = new URL(location, url)
    if (next.origin !== idpOrigin) return next.href
    url = next.href
  }
  throw new Error(`more than ${MAX_HOPS} redirects at the IdP`)
}

/** One request as a browser would send it (cookies from and into `jar`), redirects not followed. */
export async function send(
  jar: CookieJar,
  method: 'GET' | 'POST',
  url: string,
  form: URLSearchParams | undefined,
  exchanges: Exchange[] | undefined,
): Promise<Exchange> {
  const headers: Record<string, string> = { accept: 'text/html,application/json;q=0.9,*/*;q=0.8' }
  const cookie = jar.header(url)
  if (cookie) headers.cookie = cookie
  if (form) headers['content-type'] = 'application/x-www-form-urlencoded'
  const response = await fetch(url, { method, headers, body: form?.toString(), redirect: 'manual' })
  jar.store(url, response.headers)
  // Read a clone so the caller can still read the original.
  const body = await response.clone().text()
  const exchange: Exchange = { method, url, status: response.status, headers: response.headers, body, response }
  exchanges?.push(exchange)
  return exchange
}

function isRedirect(status: number): boolean {
  return status >= 300 && status < 400
}

function snippet(body: string): string {
  const text = body
    .replace(/<style[\s\S]*?<\/style>/g, '')
    .replace(/<[^>]+>/g, ' ')
    .replace(/\s+/g, ' ')
    .trim()
  return text.length > 300 ? `${text.slice(0, 300)}…` : text
}

function unescapeHtml(value: string): string {
  return value
    .replace(/&#(\d+);/g, (_m, code: string) => String.fromCharCode(Number(code)))
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&')
}

function pathMatches(requestPath: string, cookiePath: string): boolean {
  // RFC 6265 §5.1.4
  if (requestPath === cookiePath) return true
  if (!requestPath.startsWith(cookiePath)) return false
  return cookiePath.endsWith('/') || requestPath.charAt(cookiePath.length) === '/'
}

function defaultPath(requestPath: string): string {
  // RFC 6265 §5.1.4: the directory of the request path.
  if (!requestPath.startsWith('/')) return '/'
  const last = requestPath.lastIndexOf('/')
  return last <= 0 ? '/' : requestPath.slice(0, last)
}

function hostName(host: string): string {
  if (host.includes('://')) return new URL(host).hostname
  // 'localhost:3000' → 'localhost'; IPv6 in brackets, like URL.hostname.
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(host)
  if (bracketed) return `[${bracketed[1]}]`
  if (/^[^:]+:\d+$/.test(host)) return host.slice(0, host.lastIndexOf(':'))
  return host.includes(':') ? `[${host}]` : host
}
