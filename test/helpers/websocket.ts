// A raw WebSocket opening handshake (RFC 6455 §4.1) as a browser sends it,
// for tests that look at tokenward's answer to the upgrade, not at the relay
// (test/integration/websocket.test.ts keeps its sockets open for that).
import { randomBytes } from 'node:crypto'
import { connect } from 'node:net'

/**
 * Sends the handshake for `path` to 127.0.0.1:`port` with `headers` (Host,
 * Origin, Cookie, ...) and resolves with the answer's head: its status line
 * and header fields, up to the blank line (or what arrived before the
 * connection closed). The connection is then dropped.
 */
export function handshakeHead(port: number, path: string, headers: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let buf = ''
    socket.on('error', reject)
    socket.on('data', (d: Buffer) => {
      buf += d.toString('latin1')
      const end = buf.indexOf('\r\n\r\n')
      if (end >= 0) {
        socket.destroy()
        resolve(buf.slice(0, end))
      }
    })
    socket.on('close', () => resolve(buf))
    const lines = [
      `GET ${path} HTTP/1.1`,
      'Upgrade: websocket',
      'Connection: Upgrade',
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
      'Sec-WebSocket-Version: 13',
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    ]
    socket.write(`${lines.join('\r\n')}\r\n\r\n`)
  })
}

/** The status code of a handshake's answer (0 when none came). */
export function handshakeStatus(head: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0)
}
