// `npm run demo -- --two` (demo/run.ts): two frontends on one tokenward
// listener, each with its own dev IdP and API, told apart by Host. Run as the
// README says, in a process of its own, on free ports.
import { spawn, type ChildProcess } from 'node:child_process'
import { request } from 'node:http'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, expect, inject, it } from 'vitest'
import { freePort } from '../helpers/ports.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
let demo: ChildProcess | undefined
let port = 0
let idpPort = 0
let idp2Port = 0
let output = ''

/** A GET to the one listener with the Host the browser would send. */
function get(host: string, path: string): Promise<{ status: number; location: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { host } }, (res) => {
      let body = ''
      res.on('data', (c: Buffer) => (body += c.toString()))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, location: res.headers.location, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

beforeAll(async () => {
  port = await freePort()
  idpPort = await freePort()
  idp2Port = await freePort()
  demo = spawn(process.execPath, ['--import', 'tsx', 'demo/run.ts', '--two'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      BFF_PORT: String(port),
      DEMO_IDP_PORT: String(idpPort),
      DEMO_IDP2_PORT: String(idp2Port),
      DEMO_API_PORT: String(await freePort()),
      DEMO_API2_PORT: String(await freePort()),
      BFF_REDIS_URL: inject('redisUrl'),
      BFF_REDIS_PREFIX: `demo-two-${port}:`,
      BFF_LOG_LEVEL: 'warn',
    },
  })
  demo.stdout!.on('data', (d: Buffer) => (output += d.toString()))
  demo.stderr!.on('data', (d: Buffer) => (output += d.toString()))
  const started = Date.now()
  while (!output.includes('two frontends on one listener')) {
    if (demo.exitCode !== null || Date.now() - started > 30_000) throw new Error(`the demo did not start:\n${output}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}, 40_000)

afterAll(async () => {
  if (demo && demo.exitCode === null) {
    const exited = new Promise((r) => demo!.once('exit', r))
    demo.kill('SIGTERM')
    await exited
  }
})

it('serves shop at localhost and admin at 127.0.0.1, each signing in at its own IdP, and 421 for any other host', async () => {
  const shop = await get(`localhost:${port}`, '/auth/login')
  expect(shop.status).toBe(302)
  expect(new URL(shop.location!).origin).toBe(`http://localhost:${idpPort}`)
  expect(new URL(shop.location!).searchParams.get('client_id')).toBe('tokenward-shop')

  const admin = await get(`127.0.0.1:${port}`, '/auth/login')
  expect(admin.status).toBe(302)
  expect(new URL(admin.location!).origin).toBe(`http://127.0.0.1:${idp2Port}`)
  expect(new URL(admin.location!).searchParams.get('client_id')).toBe('tokenward-admin')

  const other = await get('elsewhere.example', '/auth/login')
  expect(other.status).toBe(421)
  expect(JSON.parse(other.body)).toMatchObject({ error: 'misdirected_request' })
  // The secrets were handed over as ${...} references, never printed.
  expect(output).not.toMatch(/DEMO_(SHOP|ADMIN)_CLIENT_SECRET=/)
})
