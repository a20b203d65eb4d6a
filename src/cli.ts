#!/usr/bin/env node
import { loadFrontends, type FrontendSet } from './config-file.js'
import { doctorFrontends, listSessions, revokeSessions } from './commands.js'
import { generateKeyringEntry } from './crypto/keyring.js'
import { ConfigError } from './errors.js'
import { createLogger } from './log.js'
import { reloadFrontends, watchConfigFile } from './lifecycle/reload.js'
import { startServer } from './server.js'
import { initTracing } from './tracing.js'
import { parseArgs, USAGE, version } from './cli/usage.js'

const print = (line: string) => process.stdout.write(`${line}\n`)

/** A command line tokenward does not understand: the reason and the usage on stderr, exit 2. */
function usageError(message: string): never {
  process.stderr.write(`tokenward: ${message}\n\n${USAGE}`)
  process.exit(2)
}

function frontendsOrExit(): FrontendSet {
  try {
    return loadFrontends(process.env)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tokenward: ${err.message}\n`)
      process.exit(1)
    }
    throw err
  }
}

/**
 * The one frontend a sessions command acts on: `--frontend` names it, required
 * when BFF_CONFIG_FILE declares more than one (security model S88).
 */
function frontendConfig(set: FrontendSet, name: string | undefined) {
  if (name === undefined) {
    if (set.frontends.length === 1) return set.frontends[0]!.config
    return usageError(`--frontend is required: BFF_CONFIG_FILE declares ${set.frontends.map((f) => f.name).join(', ')}`)
  }
  const found = set.frontends.find((f) => f.name === name)
  if (!found) return usageError(`no frontend named ${name} (known: ${set.frontends.map((f) => f.name).join(', ')})`)
  return found.config
}

/** Set once `serve` runs: every other command exits as soon as it is done. */
let serving = false

async function serve(): Promise<void> {
  serving = true
  const set = frontendsOrExit()
  const config = set.frontends[0]!.config
  const logger = createLogger(config.logLevel)
  const stopTracing = await initTracing(process.env, logger)
  // Production never uses the in-memory store (docs/deployment.md).
  const server = await startServer(set, { store: 'redis', logger })
  // One reload at a time: a second signal while reading waits for the first.
  let reloading: Promise<unknown> = Promise.resolve()
  const reload = (reason: string) => {
    if (!set.file) return
    reloading = reloading
      .then(() => reloadFrontends(server, process.env, logger, reason))
      .catch((err: unknown) => {
        logger.error({ reason: err instanceof Error ? err.message : String(err) }, 'configuration reload failed')
      })
  }
  // BFF_CONFIG_WATCH was validated as a boolean word with the rest (config-env.ts).
  const unwatch =
    set.file && process.env.BFF_CONFIG_WATCH && /^(true|1|yes)$/.test(process.env.BFF_CONFIG_WATCH)
      ? watchConfigFile(set.file, () => reload('file changed'))
      : undefined
  let stopping = false
  const stop = (signal: string) => {
    if (stopping) return
    stopping = true
    unwatch?.()
    server.deps.logger.info({ signal }, 'shutting down')
    const force = setTimeout(() => process.exit(1), 25_000)
    force.unref()
    server
      .close()
      .then(() => stopTracing?.())
      .then(
        () => process.exit(0),
        () => process.exit(1),
      )
  }
  // SIGHUP reads the TLS client certificate and key again (security model S82),
  // and BFF_CONFIG_FILE (security model S91).
  process.on('SIGHUP', () => {
    for (const deps of server.frontends().values()) {
      const tls = deps.tls
      if (!tls?.pair) deps.logger.info('SIGHUP: no TLS client certificate configured, nothing to reload')
      // A refused pair is audited by reload() itself.
      else if (!tls.reload('SIGHUP')) deps.logger.info('SIGHUP: the TLS client certificate files are unchanged or refused')
    }
    reload('SIGHUP')
  })
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
}

async function main(argv: string[]): Promise<void> {
  const parsed = parseArgs(argv)
  switch (parsed.kind) {
    case 'help':
      process.stdout.write(parsed.text)
      return
    case 'version':
      print(`tokenward ${version()}`)
      return
    case 'usage-error':
      return usageError(parsed.message)
    case 'run':
      break
  }
  const { command, sub, values, flags } = parsed
  switch (command) {
    case 'serve':
      return serve()
    case 'check-config': {
      const set = frontendsOrExit()
      for (const f of set.frontends) {
        const prefix = set.matchHost ? `${f.name}: ` : ''
        for (const w of f.config.warnings) process.stderr.write(`warning: ${prefix}${w}\n`)
        process.stdout.write(`${prefix}configuration is valid: ${f.config.routes.length} route(s), issuer ${f.config.issuer}\n`)
      }
      return
    }
    case 'doctor':
      process.exitCode = await doctorFrontends(frontendsOrExit(), print, { json: flags.has('json') })
      return
    case 'sessions': {
      const { sid, sub: user, frontend } = values
      if (sub === 'list' && user && !sid) {
        process.exitCode = await listSessions(frontendConfig(frontendsOrExit(), frontend), user, flags.has('json'), print)
        return
      }
      if (sub === 'revoke' && (sid ? !user : user) && !flags.has('json')) {
        process.exitCode = await revokeSessions(frontendConfig(frontendsOrExit(), frontend), sid ? { sid } : { sub: user! }, print)
        return
      }
      return usageError(sub === 'list' ? 'sessions list needs --sub <sub>' : 'sessions revoke needs exactly one of --sid or --sub')
    }
    case 'keys':
      if (sub === 'generate') {
        process.stdout.write(`BFF_ENCRYPTION_KEYS=${generateKeyringEntry()}\n`)
        process.stdout.write(`BFF_COOKIE_SECRET=${(await import('node:crypto')).randomBytes(32).toString('base64url')}\n`)
        return
      }
      return usageError('keys needs a subcommand: generate')
  }
}

const argv = process.argv.slice(2)
main(argv).then(
  () => {
    // One-shot commands exit as soon as they are done, rather than waiting for
    // idle keep-alive sockets (IdP discovery) to time out.
    if (!serving) process.exit(process.exitCode ?? 0)
  },
  (err: unknown) => {
    process.stderr.write(`tokenward: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exit(1)
  },
)
