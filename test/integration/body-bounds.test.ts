// Every endpoint that may receive a request body, attacked with a 256 MiB body
// against the production build in its own process, whose resident memory is
// read from /proc while the body streams: reading must stop at each endpoint's
// bound (413 or a closed connection), never buffer the body whole.
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { request } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildCli, waitHealthy } from '../helpers/cli-build.js'
import { freePort } from '../helpers/ports.js'
import { startWorld, type World } from '../helpers/world.js'

const MiB = 1024 * 1024
const TOTAL = 256 * MiB
/** What tokenward may grow by while a 256 MiB body arrives: its own bounds are 16 KiB to 10 MiB. */
const ALLOWED_GROWTH = 64 * MiB

let world: World
let build: ReturnType<typeof buildCli>
let child: ChildProcess
let url: string

beforeAll(async () => {
  build = buildCli('body-bounds')
  world = await startWorld()
  const port = await freePort()
  url = `http://127.0.0.1:${port}`
  const routes = [
    { prefix: '/api', upstream: world.upstream.url, token: 'none' },
    { prefix: '/small', upstream: world.upstream.url, token: 'none', maxBodyBytes: 1024 },
  ]
  child = spawn(process.execPath, [build.cli, 'serve'], {
    env: { PATH: process.env.PATH, ...world.bff.env, BFF_PUBLIC_URL: url, BFF_PORT: String(port), BFF_ROUTES: JSON.stringify(routes), BFF_LOG_LEVEL: 'warn' },
    stdio: 'ignore',
  })
  await waitHealthy(url)
}, 120_000)

afterAll(async () => {
  child?.kill('SIGKILL')
  await world?.close()
  build?.cleanup()
})

/** Resident memory of the tokenward process, in bytes. */
function rss(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))
  return Number(m![1]) * 1024
}

/**
 * Sends up to `total` bytes as fast as the server takes them, chunked or with
 * a declared length, and stops at the server's answer or when it closes the
 * connection. Returns the status, or 'closed'.
 */
function upload(method: string, path: string, framing: 'chunked' | 'declared', headers: Record<string, string> = {}): Promise<number | 'closed'> {
  const chunk = Buffer.alloc(MiB, 0x61)
  return new Promise((resolve) => {
    let done = false
    const finish = (r: number | 'closed') => {
      if (done) return
      done = true
      req.destroy()
      resolve(r)
    }
    const req = request(`${url}${path}`, {
      method,
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers, ...(framing === 'declared' ? { 'content-length': String(TOTAL) } : {}) },
    })
    req.on('response', (res) => {
      res.resume()
      finish(res.statusCode ?? 0)
    })
    req.on('error', () => finish('closed'))
    req.on('close', () => finish('closed'))
    void (async () => {
      for (let sent = 0; sent < TOTAL && !done; sent += MiB) {
        if (!req.write(chunk)) await new Promise<void>((r) => {
          req.once('drain', r)
          req.once('close', r)
        })
      }
      if (!done) req.end()
    })()
  })
}

async function peakGrowthDuring(send: () => Promise<number | 'closed'>): Promise<{ result: number | 'closed'; growth: number }> {
  const before = rss()
  let peak = before
  const timer = setInterval(() => (peak = Math.max(peak, rss())), 10)
  const result = await send()
  await new Promise((r) => setTimeout(r, 100))
  clearInterval(timer)
  peak = Math.max(peak, rss())
  return { result, growth: peak - before }
}

describe('request bodies are bounded while they stream (256 MiB to every endpoint that reads one)', () => {
  const csrf = { 'x-csrf': '1' }
  const cases: Array<[string, string, string, 'chunked' | 'declared', Record<string, string>, Array<number | 'closed'>]> = [
    ['back-channel logout, chunked', 'POST', '/auth/backchannel-logout', 'chunked', {}, [413, 'closed']],
    ['back-channel logout, declared', 'POST', '/auth/backchannel-logout', 'declared', {}, [413, 'closed']],
    ['logout, chunked', 'POST', '/auth/logout', 'chunked', csrf, [200, 'closed']],
    ['session, chunked (a GET with a body is refused as malformed)', 'GET', '/auth/session', 'chunked', csrf, [400, 401, 'closed']],
    ['an unknown path, chunked', 'POST', '/nothing-here', 'chunked', {}, [404, 'closed']],
    ['a route with the default 10 MiB bound, chunked', 'POST', '/api/upload', 'chunked', csrf, [413, 'closed']],
    ['a route with the default 10 MiB bound, declared', 'POST', '/api/upload', 'declared', csrf, [413, 'closed']],
    ['a route with a 1 KiB bound, chunked', 'POST', '/small/upload', 'chunked', csrf, [413, 'closed']],
  ]
  it.each(cases)('%s: memory stays flat', async (_name, method, path, framing, headers, expected) => {
    const { result, growth } = await peakGrowthDuring(() => upload(method, path, framing, headers))
    expect(expected).toContain(result)
    expect(growth, `RSS grew by ${(growth / MiB).toFixed(1)} MiB`).toBeLessThan(ALLOWED_GROWTH)
    // The process is still there and answering.
    expect((await fetch(`${url}/healthz`)).status).toBe(200)
  })
})
