// Two frontends of one tokenward process side by side in one Chromium
// (docs/configuration.md "Several frontends"; security model S88-S90):
// `shop` at http://localhost:<port> and `admin` at http://127.0.0.1:<port>,
// one listener told apart by Host, each with its own dev IdP and demo API,
// both serving the demo SPA. Both share one cookie secret and keyring.

import { mkdtempSync, writeFileSync } from 'node:fs'
import { randomBytes, randomUUID } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Browser, Page } from 'playwright-core'
import { signInAtDemoSpa } from '../helpers/demo-spa.js'
import { launchChromium, requireChromium } from '../helpers/chromium.js'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { startDemoApi, type DemoApi } from '../../demo/api.js'
import { startDevIdp, type DevIdp } from '../../demo/idp.js'
import { loadFrontends } from '../../src/config-file.js'
import { createLogger } from '../../src/log.js'
import { startServer, type RunningServer } from '../../src/server.js'
import { freePort } from '../helpers/ports.js'

const PASSWORD = 'demo'
const SPA_DIR = fileURLToPath(new URL('../../demo/spa', import.meta.url))

interface Side {
  name: string
  url: string
  idp: DevIdp
  api: DemoApi
}

let browser: Browser | undefined
let server: RunningServer | undefined
const sides: Side[] = []

async function side(name: string, url: string): Promise<Side> {
  const apiPort = await freePort()
  const audience = `http://127.0.0.1:${apiPort}/${name}`
  const idp = await startDevIdp({
    resource: audience,
    password: PASSWORD,
    clients: [
      {
        client_id: `${name}-bff`,
        client_secret: `${name}-secret-${'x'.repeat(24)}`,
        redirect_uris: [`${url}/auth/callback`],
        post_logout_redirect_uris: [`${url}/`],
      },
    ],
  })
  const api = await startDemoApi({ port: apiPort, issuer: idp.issuer, audience })
  return { name, url, idp, api }
}

function yaml(s: Side): string {
  return `
  - name: ${s.name}
    publicUrl: ${s.url}
    issuer: ${s.idp.issuer}
    clientId: ${s.name}-bff
    clientSecret: ${s.name}-secret-${'x'.repeat(24)}
    cookieSecret: \${COOKIE_SECRET}
    encryptionKeys: \${ENCRYPTION_KEYS}
    scopes: openid profile email offline_access api
    staticDir: ${SPA_DIR}
    routes:
      - { prefix: /api, upstream: "${s.api.url}", token: user }
`
}

beforeAll(async () => {
  requireChromium('the browser end-to-end tests')
  const port = await freePort()
  sides.push(await side('shop', `http://localhost:${port}`), await side('admin', `http://127.0.0.1:${port}`))
  const file = join(mkdtempSync(join(tmpdir(), 'tw-e2e-frontends-')), 'frontends.yaml')
  writeFileSync(file, `frontends:${sides.map(yaml).join('')}`)
  const env = {
    BFF_CONFIG_FILE: file,
    BFF_REDIS_URL: inject('redisUrl'),
    BFF_REDIS_PREFIX: `tokenward-test:${randomUUID()}:`,
    BFF_ALLOW_HTTP: 'true',
    BFF_HOST: '127.0.0.1',
    BFF_PORT: String(port),
    COOKIE_SECRET: randomBytes(32).toString('base64url'),
    ENCRYPTION_KEYS: `k1:${randomBytes(32).toString('base64')}`,
  }
  server = await startServer(loadFrontends(env), { logger: createLogger('silent'), store: 'redis', port })
  browser = await launchChromium()
})

afterAll(async () => {
  await browser?.close()
  await server?.close()
  for (const s of sides) {
    await s.api.close()
    await s.idp.close()
  }
})

function signIn(p: Page, s: Side, username: string): Promise<void> {
  return signInAtDemoSpa(p, s.url, s.idp.issuer, username, PASSWORD)
}

async function callApi(p: Page): Promise<{ status: number; sub?: string }> {
  const done = p.waitForResponse((r) => new URL(r.url()).pathname === '/api/hello')
  await p.locator('#call-api').click()
  const response = await done
  return { status: response.status(), ...((await response.json()) as { sub?: string }) }
}

describe('two frontends in one browser', () => {
  it('sign in at two IdPs side by side; each SPA calls its own API as its own user; a sign-out at one leaves the other', async () => {
    const [shop, admin] = sides as [Side, Side]
    const context = await browser!.newContext()
    context.setDefaultTimeout(8_000)
    const a = await context.newPage()
    const b = await context.newPage()
    await signIn(a, shop, 'alice')
    await signIn(b, admin, 'bob')
    expect(await a.locator('dd[data-field="sub"]').textContent()).toBe('alice')
    expect(await b.locator('dd[data-field="sub"]').textContent()).toBe('bob')
    // Each demo API verifies its own IdP's token for its own audience.
    expect(await callApi(a)).toMatchObject({ status: 200, sub: 'alice' })
    expect(await callApi(b)).toMatchObject({ status: 200, sub: 'bob' })
    // Each origin holds its own session cookie, and both stay signed in after a reload.
    const names = async (url: string) => (await context.cookies(url)).map((c) => c.name)
    expect(await names(shop.url)).toContain('__Host-tokenward')
    expect(await names(admin.url)).toContain('__Host-tokenward')
    await a.reload()
    await a.locator('#signed-in').waitFor()
    expect(await a.locator('dd[data-field="sub"]').textContent()).toBe('alice')

    // Sign-out goes to shop's IdP (its end-session page asks first), then back
    // to shop signed out. Waiting for the IdP's page first: the tab is still on
    // shop's origin when the click returns.
    await a.locator('#sign-out').click()
    await a.waitForURL((url) => url.origin === new URL(shop.idp.issuer).origin)
    const confirm = a.getByRole('button', { name: 'Yes, sign me out' })
    if (await confirm.isVisible()) await confirm.click()
    await a.waitForURL(`${shop.url}/`)
    await a.locator('#signed-out').waitFor()
    await b.reload()
    await b.locator('#signed-in').waitFor()
    expect(await callApi(b)).toMatchObject({ status: 200, sub: 'bob' })
    await context.close()
  })
})
