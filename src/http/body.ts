import type { IncomingMessage } from 'node:http'
import { BffError } from '../errors.js'

function tooLarge(max: number): BffError {
  return new BffError('payload_too_large', 'The request body is too large.', { logDetail: `body over ${max} bytes` })
}

/** A body the client stopped sending before its end: never taken for a whole one. */
export const cutShort = (): BffError =>
  new BffError('invalid_request', 'The request body was cut short.', { logDetail: 'client aborted the body' })

/**
 * Reads a request body of at most `max` bytes. A declared Content-Length over
 * the bound is refused before a byte is read; a chunked body is counted while
 * it streams and reading stops at the bound, so no client can make tokenward
 * hold more than `max` bytes (RFC 9110 §15.5.14: 413, and the server may close
 * the connection). The caller answers with `Connection: close` on a refusal:
 * the rest of the body is then never read.
 */
export function readBoundedBody(incoming: IncomingMessage, max: number, timeoutMs = 10_000): Promise<Buffer> {
  const declared = incoming.headers['content-length']
  if (declared !== undefined && Number(declared) > max) return Promise.reject(tooLarge(max))
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let bytes = 0
    const finish = (err: BffError | undefined) => {
      clearTimeout(timer)
      incoming.off('data', onData)
      incoming.off('end', onEnd)
      incoming.off('error', onError)
      incoming.off('close', onClose)
      if (err) {
        // Stop pulling bytes off the socket: nothing more of this body is read.
        incoming.pause()
        reject(err)
      } else resolve(Buffer.concat(chunks, bytes))
    }
    const onData = (chunk: Buffer) => {
      bytes += chunk.length
      if (bytes > max) finish(tooLarge(max))
      else chunks.push(chunk)
    }
    const onEnd = () => finish(incoming.complete ? undefined : cutShort())
    const onError = () => finish(cutShort())
    const onClose = () => finish(incoming.complete ? undefined : cutShort())
    // A body that trickles in is as costly as a large one: bounded in time too.
    const timer = setTimeout(
      () =>
        finish(
          new BffError('invalid_request', 'The request body took too long to arrive.', {
            logDetail: `body not complete after ${timeoutMs} ms`,
          }),
        ),
      timeoutMs,
    )
    incoming.on('data', onData)
    incoming.on('end', onEnd)
    incoming.on('error', onError)
    incoming.on('close', onClose)
  })
}

/**
 * A body as text, from Node's request when the app runs under
 * @hono/node-server, else (app.request() in tests) from the Fetch request,
 * bounded the same way.
 */
export async function readBoundedText(incoming: IncomingMessage | undefined, request: Request, max: number): Promise<string> {
  if (incoming) return (await readBoundedBody(incoming, max)).toString('utf8')
  if (Number(request.headers.get('content-length') ?? 0) > max) throw tooLarge(max)
  // A Fetch request body streams bytes (Uint8Array chunks); the types leave them untyped.
  const reader = (request.body as ReadableStream<Uint8Array> | null)?.getReader()
  if (!reader) return ''
  const chunks: Uint8Array[] = []
  let bytes = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    bytes += value.byteLength
    if (bytes > max) {
      await reader.cancel()
      throw tooLarge(max)
    }
    chunks.push(value)
  }
  return Buffer.concat(chunks, bytes).toString('utf8')
}
