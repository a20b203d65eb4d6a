import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.js'
import { buildCli, waitHealthy } from '../helpers/cli-build.js'
import { login } from '../helpers/login.js'
import { testEnv } from '../helpers/env.js'
import { freePort } from '../helpers/ports.js'
import { expireAccessToken, spaFetch } from '../helpers/session.js'
import { startWorld, type World } from '../helpers/world.js'

// The production bundle, built the way `npm run build` builds it.
let build: ReturnType<typeof buildCli>
let cli: string

beforeAll(() => {
  build = buildCli('cli')
  cli = build.cli
}, 120_000)
afterAll(() => build?.cleanup())

function runAsync(
  args: string[],
  env: Record<string, string | undefined>,
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], { env: { PATH: process.env.PATH, ...env } as NodeJS.ProcessEnv })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.on('close', (status) => resolve({ status, stdout, stderr }))
  })
}

interface DoctorReport {
  ok: boolean
  checks: Array<{ name: string; status: 'pass' | 'warn' | 'fail'; basis: 'proven' | 'advertised'; detail: string }>
}

function check(report: DoctorReport, name: string): DoctorReport['checks'][number] | undefined {
  return report.checks.find((c) => c.name === name)
}

function run(args: string[], env: Record<string, string | undefined>) {
  return spawnSync(process.execPath, [cli, ...args], { env: { PATH: process.env.PATH, ...env } as NodeJS.ProcessEnv, encoding: 'utf8' })
}

describe('tokenward CLI', () => {
  it('check-config lists every problem at once and exits 1', () => {
    const r = run(['check-config'], { BFF_PUBLIC_URL: 'nope', BFF_COOKIE_SECRET: 'short' })
    expect(r.status).toBe(1)
    for (const name of ['BFF_PUBLIC_URL', 'BFF_ISSUER', 'BFF_CLIENT_ID', 'BFF_ROUTES', 'BFF_COOKIE_SECRET', 'BFF_ENCRYPTION_KEYS']) {
      expect(r.stderr).toContain(name)
    }
  })

  it('check-config and serve refuse an unknown BFF_* variable, naming it with a suggestion', () => {
    for (const command of ['check-config', 'serve']) {
      const r = run([command], testEnv({ BFF_REDIS_URI: 'redis://redis.internal:6379' }))
      expect(r.status, command).toBe(1)
      expect(r.stderr).toContain('BFF_REDIS_URI is not a tokenward variable (did you mean BFF_REDIS_URL?)')
    }
  })

  it('check-config accepts a valid environment', () => {
    const r = run(['check-config'], testEnv())
    expect(r.stderr).not.toContain('invalid configuration')
    expect(r.status).toBe(0)
    expect(r.stdout).toContain('configuration is valid')
  })

  it('keys generate prints a usable keyring entry and cookie secret', () => {
    const r = run(['keys', 'generate'], {})
    expect(r.status).toBe(0)
    const keys = /BFF_ENCRYPTION_KEYS=(\S+)/.exec(r.stdout)![1]!
    const secret = /BFF_COOKIE_SECRET=(\S+)/.exec(r.stdout)![1]!
    const c = loadConfig(testEnv({ BFF_ENCRYPTION_KEYS: keys, BFF_COOKIE_SECRET: secret }))
    expect(c.encryptionKeys[0]!.key).toHaveLength(32)
  })

  it('an unknown command prints the usage and exits 2', () => {
    const r = run(['frobnicate'], {})
    expect(r.status).toBe(2)
    expect(r.stderr).toContain('Usage: tokenward')
  })

  it('--help and --version exit 0 with useful text, without any configuration', () => {
    const help = run(['--help'], {})
    expect(help.status).toBe(0)
    expect(help.stdout).toContain('Usage: tokenward')
    const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }
    const v = run(['--version'], {})
    expect(v.status).toBe(0)
    expect(v.stdout.trim()).toBe(`tokenward ${pkg.version}`)
  })

  it('<command> --help exits 0 with that command help for every command, and never validates the environment', () => {
    for (const command of ['serve', 'check-config', 'doctor', 'keys', 'sessions']) {
      const r = run([command, '--help'], { BFF_PUBLIC_URL: 'nope' })
      expect(r.status, command).toBe(0)
      expect(r.stdout).toContain(`Usage: tokenward ${command}`)
      expect(r.stderr).toBe('')
    }
  })

  it('an unknown option prints the usage on stderr and exits 2', () => {
    for (const argv of [
      ['check-config', '--frob'],
      ['doctor', '--jsn'],
      ['keys', 'make'],
    ]) {
      const r = run(argv, testEnv())
      expect(r.status, argv.join(' ')).toBe(2)
      expect(r.stderr).toContain('Usage: tokenward')
      expect(r.stdout).toBe('')
    }
  })
})

describe('the production server (npm start: node dist/cli.js serve)', () => {
  let world: World
  beforeAll(async () => {
    world = await startWorld()
  })
  afterAll(() => world?.close())

  it('serves login and the API from BFF_* variables alone, and stops on SIGTERM', async () => {
    // Same env as the in-process instance, on another port; the IdP redirects to
    // the first instance's public URL, which shares Redis and secrets.
    const port = await freePort()
    const child = spawn(process.execPath, [cli, 'serve'], {
      env: { PATH: process.env.PATH, ...world.bff.env, BFF_PORT: String(port), BFF_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (out += d.toString()))
    try {
      const url = `http://127.0.0.1:${port}`
      await waitHealthy(url)
      expect((await fetch(`${url}/readyz`)).status).toBe(200)
      const { jar } = await login(world.bff.url)
      const prod = { ...world.bff, url }
      expect((await spaFetch(prod, jar, '/auth/session')).status).toBe(200)
      expect((await spaFetch(prod, jar, '/api/echo')).status).toBe(200)
      const lines = out
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>)
      expect(lines.some((l) => l.msg === 'tokenward listening')).toBe(true)
    } finally {
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
      child.kill('SIGTERM')
      expect(await exited).toBe(0)
    }
  })

  it('sessions list and revoke work against the running instances, and the revoke is audited', async () => {
    const { jar } = await login(world.bff.url, { username: 'kim' })
    const listed = await runAsync(['sessions', 'list', '--sub', 'kim', '--json'], world.bff.env)
    expect(listed.status).toBe(0)
    const sid = (JSON.parse(listed.stdout.trim()) as { sid: string }).sid
    const revocations = world.idp.counts.revocations
    // Not spawnSync: the IdP runs in this process and must answer the CLI.
    const revoked = await runAsync(['sessions', 'revoke', '--sid', sid], world.bff.env)
    expect(revoked.status).toBe(0)
    expect(revoked.stdout).toContain(`revoked ${sid} (sub kim); refresh token at the IdP: revoked`)
    expect(world.idp.counts.revocations).toBe(revocations + 1)
    const audit = revoked.stderr
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(audit.some((l) => l.audit === true && l.event === 'session_revoked' && l.sid === sid)).toBe(true)
    expect((await spaFetch(world.bff, jar, '/auth/session')).status).toBe(401)
    expect(run(['sessions', 'revoke'], world.bff.env).status).toBe(2)
    expect(run(['sessions', 'revoke', '--sid', 'a', '--sub', 'b'], world.bff.env).status).toBe(2)
  })

  it('doctor --json prints one JSON object and exits 0; with a wrong client secret it exits 1 naming client authentication', async () => {
    const good = await runAsync(['doctor', '--json'], world.bff.env)
    expect(good.status).toBe(0)
    const report = JSON.parse(good.stdout) as DoctorReport
    expect(report.ok).toBe(true)
    expect(check(report, 'client authentication')).toMatchObject({ status: 'pass', basis: 'proven' })
    expect(check(report, 'upstream /api')).toMatchObject({ status: 'pass', basis: 'proven' })
    expect(check(report, 'metrics exposure')?.status).toBe('warn')
    expect(check(report, 'refresh_token grant')).toMatchObject({ status: 'pass', basis: 'advertised' })
    expect(check(report, 'back-channel logout')).toMatchObject({ status: 'pass', basis: 'advertised' })
    for (const c of report.checks) expect(['pass', 'warn', 'fail']).toContain(c.status)

    const bad = await runAsync(['doctor'], { ...world.bff.env, BFF_CLIENT_SECRET: `${world.clientSecret}x` })
    expect(bad.status).toBe(1)
    expect(bad.stdout).toMatch(/^FAIL +client authentication: .*refused.*invalid_client/m)
    // The revocation endpoint refuses the same wrong credentials: logout could not revoke.
    expect(bad.stdout).toMatch(/^FAIL +revocation \(RFC 7009\): .*refused the client.*logout cannot revoke/m)
  })

  it('doctor proves the revocation endpoint with a made-up token (RFC 7009 §2.2: 200) under the client’s authentication', async () => {
    const before = world.idp.counts.revocationRequests
    const r = await runAsync(['doctor', '--json'], world.bff.env)
    expect(r.status).toBe(0)
    expect(check(JSON.parse(r.stdout) as DoctorReport, 'revocation (RFC 7009)')).toMatchObject({ status: 'pass', basis: 'proven' })
    expect(world.idp.counts.revocationRequests).toBe(before + 1)
  })

  it('refuses to start with a bad environment, naming the problem', () => {
    const r = run(['serve'], { ...world.bff.env, BFF_ENCRYPTION_KEYS: 'bad' })
    expect(r.status).toBe(1)
    expect(r.stderr).toContain('BFF_ENCRYPTION_KEYS')
  })
})

describe('tokenward doctor separates what it proved from what the IdP advertises', () => {
  let worlds: World[] = []
  afterAll(async () => {
    await Promise.allSettled(worlds.map((w) => w.close()))
    worlds = []
  })

  it('an IdP whose discovery leaves refresh_token out of grant_types_supported: a warning naming the consequence, exit 0', async () => {
    const world = await startWorld({
      idp: {
        discovery: (doc) => {
          doc.grant_types_supported = (doc.grant_types_supported as string[]).filter((g) => g !== 'refresh_token')
        },
      },
    })
    worlds.push(world)
    const discovery = (await (await fetch(`${world.idp.issuer}/.well-known/openid-configuration`)).json()) as {
      grant_types_supported: string[]
    }
    expect(discovery.grant_types_supported).toContain('authorization_code')
    expect(discovery.grant_types_supported).not.toContain('refresh_token')

    const text = await runAsync(['doctor'], world.bff.env)
    expect(text.stdout).not.toMatch(/^FAIL/m)
    expect(text.status).toBe(0)
    expect(text.stdout).toMatch(
      /^WARN +refresh_token grant \[advertised\]: refresh_token not in grant_types_supported .*refresh is proven only once a refresh token is issued.*sessions end when the first access token expires/m,
    )
    const json = await runAsync(['doctor', '--json'], world.bff.env)
    expect(json.status).toBe(0)
    const report = JSON.parse(json.stdout) as DoctorReport
    expect(report.ok).toBe(true)
    expect(check(report, 'refresh_token grant')).toMatchObject({ status: 'warn', basis: 'advertised' })
    // The IdP still refreshes: tokenward's session survives an expired access token.
    const { jar } = await login(world.bff.url)
    await expireAccessToken(world.bff, jar)
    expect((await spaFetch(world.bff, jar, '/api/echo')).status).toBe(200)
  })

  it('an IdP without a revocation endpoint: a warning that refresh tokens outlive logout, exit 0', async () => {
    const world = await startWorld({
      idp: {
        configure: (c) => {
          c.features = { ...c.features, revocation: { enabled: false } }
        },
      },
    })
    worlds.push(world)
    const text = await runAsync(['doctor'], world.bff.env)
    expect(text.stdout).not.toMatch(/^FAIL/m)
    expect(text.status).toBe(0)
    expect(text.stdout).toMatch(
      /^WARN +revocation \(RFC 7009\) \[advertised\]: no revocation_endpoint: refresh tokens outlive logout.*drop offline_access/m,
    )
    const report = JSON.parse((await runAsync(['doctor', '--json'], world.bff.env)).stdout) as DoctorReport
    expect(report.ok).toBe(true)
    expect(check(report, 'revocation (RFC 7009)')).toMatchObject({ status: 'warn', basis: 'advertised' })
  })
})

describe('OpenTelemetry tracing (OTEL_EXPORTER_OTLP_ENDPOINT)', () => {
  let world: World
  let collector: Server
  const spans: Array<{ name: string; traceId: string; spanId: string; parentSpanId?: string }> = []
  beforeAll(async () => {
    world = await startWorld()
    // A stand-in OTLP/HTTP collector: records the JSON export requests.
    collector = createServer((req, res) => {
      let body = ''
      req.on('data', (d: Buffer) => (body += d.toString()))
      req.on('end', () => {
        const doc = JSON.parse(body) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: typeof spans }> }> }
        for (const rs of doc.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans)
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
      })
    })
    collector.listen(0, '127.0.0.1')
    await once(collector, 'listening')
  })
  afterAll(async () => {
    collector?.close()
    await world?.close()
  })

  it('exports spans for requests, upstream calls and refreshes, and propagates traceparent upstream', async () => {
    const port = await freePort()
    const { port: collectorPort } = collector.address() as AddressInfo
    const child = spawn(process.execPath, [cli, 'serve'], {
      env: {
        PATH: process.env.PATH,
        ...world.bff.env,
        BFF_PORT: String(port),
        BFF_LOG_LEVEL: 'warn',
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${collectorPort}`,
        OTEL_BSP_SCHEDULE_DELAY: '100',
      },
      stdio: 'ignore',
    })
    try {
      const url = `http://127.0.0.1:${port}`
      await waitHealthy(url)
      const { jar } = await login(world.bff.url)
      const s = await expireAccessToken(world.bff, jar)
      const browserTrace = '0af7651916cd43dd8448eb211c80319c'
      const res = await spaFetch({ ...world.bff, url }, jar, '/api/echo', {
        headers: { traceparent: `00-${browserTrace}-b7ad6b7169203331-01` },
      })
      expect(res.status).toBe(200)
      const upstreamTraceparent = String(world.upstream.requests.at(-1)!.headers.traceparent)
      expect(upstreamTraceparent).toMatch(new RegExp(`^00-${browserTrace}-[0-9a-f]{16}-01$`))
      expect(upstreamTraceparent).not.toContain('b7ad6b7169203331')
      for (let i = 0; i < 50 && !spans.some((x) => x.name.startsWith('upstream GET')); i++) await new Promise((r) => setTimeout(r, 100))
      const names = spans.map((x) => x.name)
      expect(names).toContain('GET /api')
      expect(names).toContain('upstream GET /api')
      expect(names).toContain('tokenward.refresh')
      expect(names).toContain('oidc refresh_token grant')
      const server = spans.find((x) => x.name === 'GET /api')!
      const upstream = spans.find((x) => x.name === 'upstream GET /api')!
      expect(server.traceId).toBe(browserTrace)
      expect(upstream.traceId).toBe(browserTrace)
      expect(upstream.parentSpanId).toBe(server.spanId)
      expect(upstreamTraceparent).toContain(upstream.spanId)
      expect(JSON.stringify(spans)).not.toContain(s.data.refreshToken!)
    } finally {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGTERM')
      await exited
    }
  })
})
