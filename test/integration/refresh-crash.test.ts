import { spawn } from 'node:child_process'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { auditEvents } from '../helpers/bff.js'
import { buildCli, waitHealthy } from '../helpers/cli-build.js'
import { login } from '../helpers/login.js'
import { freePort } from '../helpers/ports.js'
import { expireAccessToken, sessionOf, spaFetch } from '../helpers/session.js'
import { startWorld, type World } from '../helpers/world.js'

// A real tokenward process (the production build) is killed with SIGKILL while
// it holds the refresh lease and its refresh request is at the IdP.
let build: ReturnType<typeof buildCli>
let world: World

beforeAll(async () => {
  build = buildCli('crash')
  world = await startWorld()
}, 120_000)
afterAll(async () => {
  await world?.close()
  build?.cleanup()
})

async function until(check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time')
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe('the refresh lease holder killed mid-refresh (security model S33, S35)', () => {
  it('another instance takes over after the lease and ends the session cleanly: never a second redemption', async () => {
    const port = await freePort()
    const child = spawn(process.execPath, [build.cli, 'serve'], {
      env: { PATH: process.env.PATH, ...world.bff.env, BFF_PORT: String(port), BFF_LOG_LEVEL: 'warn' },
      stdio: 'ignore',
    })
    const exited = new Promise((resolve) => child.once('exit', resolve))
    try {
      const url = `http://127.0.0.1:${port}`
      await waitHealthy(url)

      const { jar } = await login(world.bff.url)
      await expireAccessToken(world.bff, jar)
      const before = { ...world.idp.counts }
      world.idp.setTokenEndpointDelay(2000)
      const doomed = spaFetch({ ...world.bff, url }, jar, '/api/echo').catch((err: Error) => err)
      // The doomed instance has taken the lease, journaled and sent the refresh.
      await until(() => world.idp.counts.tokenRequests > before.tokenRequests, 5000)
      child.kill('SIGKILL')
      await exited
      expect(await doomed).toBeInstanceOf(Error)
      world.idp.setTokenEndpointDelay(0)

      const started = Date.now()
      const res = await spaFetch(world.bff, jar, '/api/echo')
      // It waited for the dead holder's lease to lapse (5 s), saw the journal, and
      // failed closed instead of presenting a refresh token that may be spent.
      expect(res.status).toBe(401)
      expect(await res.json()).toMatchObject({ error: 'login_required' })
      expect(Date.now() - started).toBeGreaterThan(1000)
      expect(world.idp.counts.tokenRequests).toBe(before.tokenRequests + 1)
      expect(world.idp.counts.invalidGrants).toBe(before.invalidGrants)
      expect(await sessionOf(world.bff, jar)).toBeNull()
      expect(
        auditEvents(world.bff.logs).some((e) => e.event === 'refresh_failed' && e.reason === 'a previous refresh was interrupted'),
      ).toBe(true)
    } finally {
      world.idp.setTokenEndpointDelay(0)
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    }
  }, 30_000)
})
