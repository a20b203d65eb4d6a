import { STATUS_CODES, type ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Context } from 'hono'
import { BffError, type BffErrorCode } from '../errors.js'
import type { Logger } from '../log.js'
import type { AppEnv } from '../types.js'

/**
 * Errors turned into HTTP, in one place: the mapping (toErrorResponse) and its
 * three writers, for a Hono handler, for Node's response (the proxy entry), and
 * for a bare socket Node's HTTP server no longer answers for (a request its
 * parser refused, a WebSocket handshake).
 */

export interface ErrorBody {
  error: BffErrorCode
  message: string
}

/** The JSON body and headers for an error; unexpected errors become a bare 500. `Cache-Control: no-store` always. */
export function toErrorResponse(err: unknown): { status: number; body: ErrorBody; headers: Record<string, string> } {
  const e = err instanceof BffError ? err : new BffError('server_error', 'An unexpected error occurred.')
  const headers: Record<string, string> = { 'cache-control': 'no-store' }
  if (e.retryAfter !== undefined) headers['retry-after'] = String(e.retryAfter)
  return { status: e.status, body: { error: e.code, message: e.message }, headers }
}

/** Logs a refused or failed request: refusals at info, failures at warn, anything unexpected at error. */
export function logRequestError(log: Logger, err: unknown, path: string): void {
  if (err instanceof BffError && err.status < 500) {
    log.info({ code: err.code, detail: err.logDetail, path }, 'request refused')
  } else if (err instanceof BffError) {
    log.warn({ code: err.code, detail: err.logDetail, path }, 'request failed')
  } else {
    // Only the name and message: a stack or cause could carry a token.
    log.error({ err: { name: (err as Error).name, message: (err as Error).message } }, 'unexpected error')
  }
}

/** A JSON error in the contract's shape, from a Hono handler. */
export function errorResponse(c: Context<AppEnv>, err: unknown): Response {
  const { status, body, headers } = toErrorResponse(err)
  return c.json(body, status as 400, headers)
}

/** A JSON answer written to Node's response. */
export function sendJson(outgoing: ServerResponse, status: number, body: unknown, headers: Record<string, string>): void {
  const text = JSON.stringify(body)
  outgoing.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers })
  outgoing.end(text)
}

/** A JSON error in the contract's shape, written to Node's response. */
export function writeError(outgoing: ServerResponse, err: unknown, extraHeaders: Record<string, string>): void {
  const { status, body, headers } = toErrorResponse(err)
  sendJson(outgoing, status, body, { ...headers, ...extraHeaders })
}

/**
 * A whole HTTP/1.1 answer written to a socket, which is then closed and
 * destroyed once written: a client that never closes its side must not keep
 * the socket (and a graceful shutdown) waiting.
 */
export function endSocket(socket: Duplex, status: number, headers: Record<string, string>, body = ''): void {
  const lines = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}`]
  for (const [name, value] of Object.entries({ ...headers, 'content-length': String(Buffer.byteLength(body)), connection: 'close' }))
    lines.push(`${name}: ${value}`)
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`, () => socket.destroy())
}

/** A JSON error in the contract's shape, written to a bare socket (see endSocket); returns its status. */
export function socketError(socket: Duplex, err: unknown, extraHeaders: Record<string, string> = {}): number {
  const { status, body, headers } = toErrorResponse(err)
  endSocket(socket, status, { 'content-type': 'application/json', ...headers, ...extraHeaders }, JSON.stringify(body))
  return status
}
