import type { TestBff } from './bff.js'
import type { CookieJar } from './login.js'

export interface SseEvent {
  event: string
  data: string
  at: number
}

/** Opens /auth/events like EventSource would, collecting events as they arrive. */
export async function openEvents(bff: TestBff, jar: CookieJar, headers: Record<string, string> = {}) {
  const controller = new AbortController()
  const res = await fetch(`${bff.url}/auth/events`, {
    headers: { cookie: jar.header(bff.url), accept: 'text/event-stream', ...headers },
    signal: controller.signal,
  })
  const events: SseEvent[] = []
  let closed = false
  const reading = (async () => {
    if (!res.ok || !res.body) return
    let buf = ''
    try {
      for await (const chunk of res.body) {
        buf += Buffer.from(chunk as Uint8Array).toString()
        let i
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i)
          buf = buf.slice(i + 2)
          const event = /^event: (.*)$/m.exec(block)?.[1]
          const data = /^data: (.*)$/m.exec(block)?.[1] ?? ''
          if (event) events.push({ event, data, at: Date.now() })
        }
      }
    } catch {
      // aborted
    }
    closed = true
  })()
  const waitFor = async (name: string, timeoutMs: number): Promise<SseEvent> => {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const e = events.find((x) => x.event === name)
      if (e) return e
      if (Date.now() > deadline) throw new Error(`no ${name} event within ${timeoutMs} ms; got ${JSON.stringify(events)}`)
      await new Promise((r) => setTimeout(r, 20))
    }
  }
  return { res, events, waitFor, isClosed: () => closed, close: () => controller.abort(), done: reading }
}
