import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'

export const USAGE = `Usage: tokenward <command> [options]

Commands:
  serve            start the server from BFF_* environment variables
  check-config     validate the environment; exit 1 listing every problem
  doctor [--json]  prove the configuration works: client authentication at the IdP,
                   revocation, every route's upstream, Redis, metrics exposure, and
                   what the IdP advertises; exit 1 on a failure, 0 with warnings
  keys generate    print a new BFF_ENCRYPTION_KEYS entry and a cookie secret
  sessions list --sub <sub> [--frontend <name>] [--json]
                   a user's sessions: sid, created, last used, expiry (never a token)
  sessions revoke (--sid <sid> | --sub <sub>) [--frontend <name>]
                   end sessions on every instance and revoke their refresh tokens

Options:
  --help, -h       this text (or, after a command, that command's help)
  --version, -V    print the version

Run \`tokenward <command> --help\` for a command's details.
`

/** One command's help: what it does, its options, its exit codes. */
export interface CommandSpec {
  /** Options that take a value, without the leading `--`. */
  values: readonly string[]
  /** Options that are switches, without the leading `--`. */
  flags: readonly string[]
  help: string
}

const ENV =
  'Configuration comes from the BFF_* environment variables, and with BFF_CONFIG_FILE\nfrom that file, one frontend per entry (docs/configuration.md).'

export const COMMANDS: Record<string, CommandSpec> = {
  serve: {
    values: [],
    flags: [],
    help: `Usage: tokenward serve

Starts the server. ${ENV}
An invalid configuration (including an unknown BFF_* variable) is reported, every
problem at once, and the process exits 1. SIGTERM and SIGINT drain and stop it;
SIGHUP reads the TLS client certificate and key (BFF_TLS_CLIENT_CERT) again,
and BFF_CONFIG_FILE: a file with problems is refused (logged) and the running
frontends kept.
`,
  },
  'check-config': {
    values: [],
    flags: [],
    help: `Usage: tokenward check-config

Validates the environment without starting anything. ${ENV}
Exit 0 with a one-line summary (warnings on stderr), or exit 1 listing every
problem, including BFF_* variables tokenward does not know ("did you mean ...?").
`,
  },
  doctor: {
    values: [],
    flags: ['json'],
    help: `Usage: tokenward doctor [--json]

Checks that the configuration works against the real services: Redis (a write,
read and delete, naming the host and the cause of a failure), IdP discovery and
what the IdP supports, client authentication at the token endpoint (a request
that must fail as a grant: invalid_grant proves the credentials, invalid_client
refutes them), the revocation endpoint (a made-up token with the client's
authentication: RFC 7009 answers 200), every route's upstream reachable, and
where /metrics is exposed. What only the IdP's discovery document says is
marked [advertised].

Each check is PASS (proven, or advertised where nothing could prove it), WARN
(not advertised or not provable; the line says what it costs) or FAIL (proven
broken). Exit 1 when any check fails, 0 with warnings only. With
BFF_CONFIG_FILE the checks run per frontend, each line prefixed with its name.

  --json   print one JSON object: {"ok": bool, "checks": [{"name", "status":
           "pass"|"warn"|"fail", "basis": "proven"|"advertised", "detail",
           "frontend"}]}
`,
  },
  keys: {
    values: [],
    flags: [],
    help: `Usage: tokenward keys generate

Prints a new BFF_ENCRYPTION_KEYS entry (prepend it to the keyring to rotate) and
a random BFF_COOKIE_SECRET. Needs no configuration.
`,
  },
  sessions: {
    values: ['sid', 'sub', 'frontend'],
    flags: ['json'],
    help: `Usage: tokenward sessions list --sub <sub> [--frontend <name>] [--json]
       tokenward sessions revoke (--sid <sid> | --sub <sub>) [--frontend <name>]

--frontend names the frontend of BFF_CONFIG_FILE whose sessions are meant;
required when the file declares more than one (each frontend's sessions are
its own, security model S88).

list    a user's sessions: sid, created, last used, expiry (never a token);
        --json prints one JSON object per line
revoke  ends the sessions on every instance (open tabs are told at once) and
        revokes their refresh tokens at the IdP; exit 1 when nothing matched
${ENV}
`,
  },
}

/** The version in tokenward's package.json, found upward from this file (src/, dist/ or a test build). */
export function version(): string {
  let dir = import.meta.dirname
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string }
      if (pkg.name === 'tokenward' && pkg.version) return pkg.version
    } catch {
      // no package.json here: keep looking upward
    }
    const up = dirname(dir)
    if (up === dir) return 'unknown'
    dir = up
  }
}

export type Parsed =
  | { kind: 'help'; text: string }
  | { kind: 'version' }
  | { kind: 'usage-error'; message: string }
  | { kind: 'run'; command: string; sub: string | undefined; values: Record<string, string>; flags: Set<string> }

/**
 * Parses argv strictly: an unknown command, subcommand argument or option is a
 * usage error (exit 2), so a typo never runs something else.
 */
export function parseArgs(argv: readonly string[]): Parsed {
  const [first, ...rest] = argv
  if (first === undefined) return { kind: 'run', command: 'serve', sub: undefined, values: {}, flags: new Set() }
  if (first === '--help' || first === '-h' || first === 'help') {
    const topic = rest[0] !== undefined ? COMMANDS[rest[0]] : undefined
    return { kind: 'help', text: topic?.help ?? USAGE }
  }
  if (first === '--version' || first === '-V' || first === 'version') return { kind: 'version' }
  const spec = Object.hasOwn(COMMANDS, first) ? COMMANDS[first] : undefined
  if (!spec) return { kind: 'usage-error', message: `unknown command "${first}"` }
  if (rest.includes('--help') || rest.includes('-h')) return { kind: 'help', text: spec.help }
  const values: Record<string, string> = {}
  const flags = new Set<string>()
  const positional: string[] = []
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!
    if (!arg.startsWith('-')) {
      positional.push(arg)
      continue
    }
    const name = arg.replace(/^--?/, '')
    if (spec.flags.includes(name)) flags.add(name)
    else if (spec.values.includes(name)) {
      const v = rest[i + 1]
      // A value may start with one dash (a base64url sid can); only an option name starts with two.
      if (v === undefined || v.startsWith('--')) return { kind: 'usage-error', message: `${arg} needs a value` }
      values[name] = v
      i++
    } else return { kind: 'usage-error', message: `unknown option "${arg}" for ${first}` }
  }
  const subs: Record<string, readonly string[]> = { keys: ['generate'], sessions: ['list', 'revoke'] }
  const allowed = subs[first] ?? []
  if (positional.length > (allowed.length > 0 ? 1 : 0) || (positional[0] !== undefined && !allowed.includes(positional[0]))) {
    return { kind: 'usage-error', message: `unexpected argument "${positional.find((p) => !allowed.includes(p)) ?? positional[1]}"` }
  }
  return { kind: 'run', command: first, sub: positional[0], values, flags }
}
