// Signing in the way a user does in the browser suites: the demo SPA's
// "Sign in" button (demo/spa), the dev IdP's login form (demo/idp), and back
// to the SPA signed in.
import type { Page } from 'playwright-core'

/** Fills and submits the dev IdP's login form; waits until `publicUrl`'s SPA shows the user signed in. */
export async function submitDevIdpLogin(p: Page, publicUrl: string, username: string, password: string): Promise<void> {
  await p.locator('#username').fill(username)
  await p.locator('#password').fill(password)
  await p.getByRole('button', { name: 'Sign in', exact: true }).click()
  await p.waitForURL(`${publicUrl}/`)
  await p.locator('#signed-in').waitFor()
}

/** From the SPA at `publicUrl`: "Sign in", the IdP at `issuer` (an origin), then submitDevIdpLogin. */
export async function signInAtDemoSpa(p: Page, publicUrl: string, issuer: string, username: string, password: string): Promise<void> {
  await p.goto(`${publicUrl}/`)
  await p.locator('#sign-in').click()
  await p.waitForURL((url) => url.origin === issuer)
  await submitDevIdpLogin(p, publicUrl, username, password)
}
