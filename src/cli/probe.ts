import { connect } from 'node:net'

/** A short, secret-free description of a failed connection or request: the system error code and message. */
export function networkCause(err: unknown): string {
  const e = err instanceof Error && err.cause instanceof Error ? err.cause : err
  if (!(e instanceof Error)) return String(e)
  const code = (e as { code?: unknown }).code
  return `${typeof code === 'string' && !e.message.includes(code) ? `${code} ` : ''}${e.message}`.slice(0, 200)
}

/** Opens a TCP connection and closes it: undefined when it connected, else why not. */
export function probeTcp(host: string, port: number, timeoutMs = 2000): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ host, port })
    const done = (cause: string | undefined) => {
      socket.destroy()
      resolve(cause)
    }
    socket.setTimeout(timeoutMs, () => done(`no answer within ${timeoutMs} ms`))
    socket.once('connect', () => done(undefined))
    socket.once('error', (err) => done(networkCause(err)))
  })
}

/**
 * Whether an upstream answers HTTP at all: any status counts (a 404 or 401 at
 * the upstream's root is still a reachable upstream); a refused connection, a
 * TLS failure or no answer within the timeout does not.
 */
export async function probeHttp(
  url: URL,
  timeoutMs = 3000,
  /** With tokenward's client certificate or CA bundle (RFC 8705 `mtls` routes); the global fetch otherwise. */
  transport: (url: string, init: RequestInit) => Promise<Response> = (u, i) => fetch(u, i),
): Promise<{ status: number; ms: number } | { error: string }> {
  const started = Date.now()
  try {
    const res = await transport(url.href, { method: 'HEAD', redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) })
    await res.body?.cancel()
    return { status: res.status, ms: Date.now() - started }
  } catch (err) {
    const timedOut = err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')
    return { error: timedOut ? `no answer within ${timeoutMs} ms` : networkCause(err) }
  }
}
