import { unwatchFile, watchFile } from 'node:fs'
import { loadFrontends } from '../config-file.js'
import { ConfigError } from '../errors.js'
import type { Logger } from '../log.js'
import type { RunningServer } from '../server.js'

/**
 * Reads BFF_CONFIG_FILE again and serves what it declares (SIGHUP,
 * BFF_CONFIG_WATCH). A file with problems is refused, every reason logged, and
 * the running frontends are kept as they are (security model S91). True when
 * the new file is served.
 */
export async function reloadFrontends(
  server: Pick<RunningServer, 'reload'>,
  env: Record<string, string | undefined>,
  logger: Logger,
  reason: string,
): Promise<boolean> {
  let set
  try {
    set = loadFrontends(env)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    // The problems name settings and ${ENV} references, never their values.
    logger.error({ reason, problems: err.problems }, 'configuration reload refused; the running configuration is kept')
    return false
  }
  await server.reload(set)
  return true
}

/**
 * Calls `onChange` when the file changes. Polls its metadata (fs.watchFile)
 * rather than inotify: a Kubernetes ConfigMap volume replaces the file by
 * swapping a symlink, which inotify on the file itself does not see.
 */
export function watchConfigFile(file: string, onChange: () => void, intervalMs = 2000): () => void {
  const listener = (cur: { mtimeMs: number; ino: number; size: number }, prev: { mtimeMs: number; ino: number; size: number }) => {
    if (cur.mtimeMs !== prev.mtimeMs || cur.ino !== prev.ino || cur.size !== prev.size) onChange()
  }
  watchFile(file, { interval: intervalMs, persistent: false }, listener)
  return () => unwatchFile(file, listener)
}
