import { spawnSync } from 'node:child_process'
import { rmSync } from 'node:fs'
import { join } from 'node:path'

const root = join(import.meta.dirname, '..', '..')

/**
 * Builds the production bundle the way `npm run build` does (the server part),
 * into a directory of the caller's own under .test-dist, so test files never
 * race each other or a developer's dist/. Returns the CLI's path and a cleanup.
 */
export function buildCli(name: string): { cli: string; dir: string; cleanup(): void } {
  const dir = join(root, '.test-dist', `${name}-${process.pid}`)
  const r = spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json', '--outDir', dir], { cwd: root, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`build failed: ${r.stdout}${r.stderr}`)
  return { cli: join(dir, 'cli.js'), dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

/** Waits until `${url}/healthz` answers 200 (a started `tokenward serve`), at most about 10 s. */
export async function waitHealthy(url: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (
      await fetch(`${url}/healthz`).then(
        (r) => r.ok,
        () => false,
      )
    )
      return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`${url} did not become healthy`)
}
