// Debian's Chromium (/usr/bin/chromium) driven by playwright-core: no browser
// download. One place for its path, the flags that work on these machines and
// the check that it is there: the browser suites fail, rather than skip, when
// it is missing (CI installs it; a skip would hide that a suite never ran).
import { existsSync } from 'node:fs'
import { chromium, type Browser, type BrowserContext, type LaunchOptions } from 'playwright-core'

export const CHROMIUM = '/usr/bin/chromium'

/**
 * The flags known to work on these machines: the network is closed, so no
 * background networking, component updates or sync (each would be refused,
 * many times a run). Playwright adds --headless itself.
 */
export const CHROMIUM_ARGS: readonly string[] = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
]

/** Throws, naming the package, when Chromium is not installed. */
export function requireChromium(suite: string): void {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium is missing at ${CHROMIUM}: ${suite} need it (apt-get install -y chromium)`)
}

/** A headless Chromium with the flags above plus `args`. */
export function launchChromium(
  args: readonly string[] = [],
  options: Omit<LaunchOptions, 'executablePath' | 'args'> = {},
): Promise<Browser> {
  return chromium.launch({ ...options, executablePath: CHROMIUM, headless: true, args: [...CHROMIUM_ARGS, ...args] })
}

/** A headless Chromium with a profile of its own (`userDataDir`), for what lives in the profile. */
export function launchPersistentChromium(userDataDir: string, args: readonly string[] = []): Promise<BrowserContext> {
  return chromium.launchPersistentContext(userDataDir, { executablePath: CHROMIUM, headless: true, args: [...CHROMIUM_ARGS, ...args] })
}
