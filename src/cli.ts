#!/usr/bin/env node
import { loadConfig } from './config.js'
import { doctor, listSessions, revokeSessions } from './commands.js'
import { generateKeyringEntry } from './crypto/keyring.js'
import { ConfigError } from './errors.js'
import { createLogger } from './log.js'
import { startServer } from './server.js'
import { initTracing } from './tracing.js'

const USAGE = `Usage: tokenward <command>

Commands:
  serve            start the server from BFF_* environment variables
  check-config     validate the environment; exit 1 listing every problem
  doctor           check the configuration, Redis and the IdP (and what it supports)
  keys generate    print a new BFF_ENCRYPTION_KEYS entry and a cookie secret
  sessions list --sub <sub> [--json]
                   a user's sessions: sid, created, last used, expiry (never a token)
  sessions revoke (--sid <sid> | --sub <sub>)
                   end sessions on every instance and revoke their refresh tokens
`

/** The value after `--name` in argv, or undefined. */
function option(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(`--${name}`)
  const v = i >= 0 ? argv[i + 1] : undefined
  return v && !v.startsWith('--') ? v : undefined
}

const print = (line: string) => process.stdout.write(`${line}\n`)

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

async function serve(): Promise<void> {
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
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
}

async function main(argv: string[]): Promise<void> {
  const [command, sub] = argv
  switch (command) {
    case 'serve':
    case undefined:
      return serve()
    case 'check-config': {
      const config = configOrExit()
      for (const w of config.warnings) process.stderr.write(`warning: ${w}\n`)
      process.stdout.write(`configuration is valid: ${config.routes.length} route(s), issuer ${config.issuer}\n`)
      return
    }
    case 'doctor':
      process.exitCode = await doctor(configOrExit(), print)
      return
    case 'sessions': {
      const sid = option(argv, 'sid')
      const user = option(argv, 'sub')
      if (sub === 'list' && user) {
        process.exitCode = await listSessions(configOrExit(), user, argv.includes('--json'), print)
        return
      }
      if (sub === 'revoke' && (sid ? !user : user)) {
        process.exitCode = await revokeSessions(configOrExit(), sid ? { sid } : { sub: user! }, print)
        return
      }
      break
    }
    case 'keys':
      if (sub === 'generate') {
        process.stdout.write(`BFF_ENCRYPTION_KEYS=${generateKeyringEntry()}\n`)
        process.stdout.write(`BFF_COOKIE_SECRET=${(await import('node:crypto')).randomBytes(32).toString('base64url')}\n`)
        return
      }
      break
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE)
      return
  }
  process.stderr.write(USAGE)
  process.exit(2)
}

const argv = process.argv.slice(2)
main(argv).then(
  () => {
    // One-shot commands exit as soon as they are done, rather than waiting for
    // idle keep-alive sockets (IdP discovery) to time out.
    if (argv[0] !== undefined && argv[0] !== 'serve') process.exit(process.exitCode ?? 0)
  },
  (err: unknown) => {
    process.stderr.write(`tokenward: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exit(1)
  },
)
