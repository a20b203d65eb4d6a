#!/usr/bin/env node
import { loadConfig } from './config.js'
import { doctor, listSessions, revokeSessions } from './commands.js'
import { generateKeyringEntry } from './crypto/keyring.js'
import { ConfigError } from './errors.js'
import { createLogger } from './log.js'
import { startServer } from './server.js'
import { initTracing } from './tracing.js'
import { parseArgs, USAGE, version } from './cli/usage.js'

const print = (line: string) => process.stdout.write(`${line}\n`)

/** A command line tokenward does not understand: the reason and the usage on stderr, exit 2. */
function usageError(message: string): never {
  process.stderr.write(`tokenward: ${message}\n\n${USAGE}`)
  process.exit(2)
}

function configOrExit() {
  try {
    return loadConfig(process.env)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tokenward: ${err.message}\n`)
      process.exit(1)
    }
    throw err
  }
}

/** Set once `serve` runs: every other command exits as soon as it is done. */
let serving = false

async function serve(): Promise<void> {
  serving = true
  const config = configOrExit()
  const logger = createLogger(config.logLevel)
  const stopTracing = await initTracing(process.env, logger)
  // Production never uses the in-memory store (docs/deployment.md).
  const server = await startServer(config, { store: 'redis', logger })
  let stopping = false
  const stop = (signal: string) => {
    if (stopping) return
    stopping = true
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
  // SIGHUP reads the TLS client certificate and key again (security model S82).
  process.on('SIGHUP', () => {
    const tls = server.deps.tls
    if (!tls?.pair) server.deps.logger.info('SIGHUP: no TLS client certificate configured, nothing to reload')
    // A refused pair is audited by reload() itself.
    else if (!tls.reload('SIGHUP')) server.deps.logger.info('SIGHUP: the TLS client certificate files are unchanged or refused')
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
      const config = configOrExit()
      for (const w of config.warnings) process.stderr.write(`warning: ${w}\n`)
      process.stdout.write(`configuration is valid: ${config.routes.length} route(s), issuer ${config.issuer}\n`)
      return
    }
    case 'doctor':
      process.exitCode = await doctor(configOrExit(), print, { json: flags.has('json') })
      return
    case 'sessions': {
      const { sid, sub: user } = values
      if (sub === 'list' && user && !sid) {
        process.exitCode = await listSessions(configOrExit(), user, flags.has('json'), print)
        return
      }
      if (sub === 'revoke' && (sid ? !user : user) && !flags.has('json')) {
        process.exitCode = await revokeSessions(configOrExit(), sid ? { sid } : { sub: user! }, print)
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
