// yaml: the BFF_CONFIG_FILE parser (YAML 1.2, so JSON is read by the same code).
// A runtime dependency since the file is read at startup and on reload, not a
// build-time tool; JSON.parse alone would force operators to write JSON.
import { readFileSync } from 'node:fs'
import { parse as parseYaml } from 'yaml'
import { loadConfig, type Config, type LoadConfigOptions } from './config.js'
import { KNOWN_VARIABLES, suggestVariable, unknownVariableProblems } from './config-env.js'
import { ConfigError } from './errors.js'

/**
 * Several frontends (an SPA at its public URL, with its IdP client, routes,
 * secrets and sessions) served by one tokenward process, read from
 * BFF_CONFIG_FILE (docs/configuration.md "Several frontends").
 */
export interface Frontend {
  /** `[a-z][a-z0-9-]{0,31}`: a bounded metrics/log label and part of the Redis key prefix. */
  readonly name: string
  /** The frontend's configuration; its Redis prefix is `${BFF_REDIS_PREFIX}${name}:` with a file. */
  readonly config: Config
  /** BFF_PUBLIC_URL's host (port included, lower case): what a request's Host must equal. */
  readonly host: string
}

export interface FrontendSet {
  readonly frontends: readonly Frontend[]
  /** True with BFF_CONFIG_FILE: requests are dispatched by Host, an unknown Host is refused (421). */
  readonly matchHost: boolean
  /** The file read, for reload (SIGHUP, BFF_CONFIG_WATCH). */
  readonly file: string | undefined
}

/**
 * The Host values that name a frontend: its public URL's host exactly, and,
 * when that URL has no port, the same host with the scheme's default port
 * (RFC 9110 §4.2.3: `example.com` and `example.com:443` are the same origin
 * for https), as some proxies and clients send it.
 */
export function hostKeys(frontend: Pick<Frontend, 'host' | 'config'>): string[] {
  const url = frontend.config.publicUrl
  if (url.port !== '') return [frontend.host]
  return [frontend.host, `${frontend.host}:${url.protocol === 'https:' ? 443 : 80}`]
}

/** The name of the one frontend of an environment-only configuration. */
export const DEFAULT_FRONTEND = 'default'

const NAME = /^[a-z][a-z0-9-]{0,31}$/

/**
 * Process-wide variables: one listener, one Redis, one log and trace pipeline
 * per process, so a frontend cannot set them (docs/configuration.md).
 */
export function isProcessWide(variable: string): boolean {
  return (
    /^BFF_REDIS_/.test(variable) ||
    ['BFF_HOST', 'BFF_PORT', 'PORT', 'BFF_LOG_LEVEL', 'BFF_TRUSTED_PROXIES', 'BFF_METRICS_LISTEN', 'BFF_ACCESS_LOG'].includes(variable) ||
    variable === 'BFF_CONFIG_FILE' ||
    variable === 'BFF_CONFIG_WATCH'
  )
}

/** Keys whose variable name has no clean lowerCamelCase (docs/configuration.md lists them). */
const SPECIAL_KEYS: Readonly<Record<string, string>> = { cookieSameSite: 'BFF_COOKIE_SAMESITE' }

/** `BFF_SESSION_IDLE_TIMEOUT` → `sessionIdleTimeout`. */
export function keyOf(variable: string): string {
  return variable
    .replace(/^BFF_/, '')
    .toLowerCase()
    .replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase())
}

/** Every file key and the variable it sets (process-wide ones included, to name them when refused). */
const KEY_TO_VARIABLE: ReadonlyMap<string, string> = new Map([
  ...KNOWN_VARIABLES.filter((v) => v.startsWith('BFF_')).map((v) => [keyOf(v), v] as const),
  ...Object.entries(SPECIAL_KEYS),
])

/** The variable a frontend key sets, or undefined for a key that maps to none. */
export function variableOf(key: string): string | undefined {
  return KEY_TO_VARIABLE.get(key)
}

function suggestKey(key: string): string | undefined {
  const keys = [...KEY_TO_VARIABLE.keys()]
  const byVariable = suggestVariable(`BFF_${key.replace(/([A-Z])/g, '_$1')}`.toUpperCase(), [...KEY_TO_VARIABLE.values()])
  if (byVariable) return keys.find((k) => KEY_TO_VARIABLE.get(k) === byVariable && !(k in SPECIAL_KEYS)) ?? keyOf(byVariable)
  return undefined
}

const REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g

/** Replaces `${NAME}` in every string of `value` from `env`; unset names are reported. */
function resolveRefs(value: unknown, env: Record<string, string | undefined>, missing: Set<string>): unknown {
  if (typeof value === 'string')
    return value.replace(REF, (_, name: string) => {
      const v = env[name]
      if (v === undefined || v === '') {
        missing.add(name)
        return ''
      }
      return v
    })
  if (Array.isArray(value)) return value.map((v) => resolveRefs(v, env, missing))
  if (value !== null && typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolveRefs(v, env, missing)]))
  return value
}

/** A value as the variable's text: scalars as written, lists and maps as JSON, authParams as a query string. */
function asVariableText(variable: string, value: unknown): string | undefined {
  if (typeof value === 'string') return value
  if (typeof value === 'number' || typeof value === 'boolean') return String(value)
  if (value === null || value === undefined) return undefined
  if (variable === 'BFF_AUTH_PARAMS' && typeof value === 'object' && !Array.isArray(value)) {
    return new URLSearchParams(Object.entries(value).map(([k, v]): [string, string] => [k, String(v)])).toString()
  }
  return JSON.stringify(value)
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

/**
 * Parses the file's text (YAML or JSON) into frontends, every problem of every
 * frontend reported at once in one ConfigError.
 */
export function frontendsFromText(
  text: string,
  env: Record<string, string | undefined>,
  options: LoadConfigOptions = {},
  file = 'BFF_CONFIG_FILE',
): Frontend[] {
  let doc: unknown
  try {
    doc = parseYaml(text, { prettyErrors: true })
  } catch (err) {
    // The parser's message names line and column, never a value from the environment.
    throw new ConfigError([`${file} is not valid YAML or JSON: ${(err as Error).message.split('\n')[0]}`])
  }
  if (!isRecord(doc)) throw new ConfigError([`${file} must be a map with a "frontends" list`])
  const problems: string[] = []
  for (const key of Object.keys(doc)) if (key !== 'frontends') problems.push(`${file}: unknown top-level key "${key}" (only "frontends")`)
  const list = doc.frontends
  if (!Array.isArray(list) || list.length === 0) {
    problems.push(`${file}: "frontends" must be a non-empty list`)
    throw new ConfigError(problems)
  }

  // A problem of the environment itself (an unknown BFF_* variable) is reported
  // once, not once per frontend that inherits it.
  const envProblems = new Set(unknownVariableProblems(env))
  problems.push(...envProblems)
  const frontends: Frontend[] = []
  const names = new Map<string, number>()
  const hosts = new Map<string, string>()
  list.forEach((entry: unknown, i) => {
    const label = `frontends[${i}]${isRecord(entry) && typeof entry.name === 'string' ? ` (${entry.name})` : ''}`
    const own: string[] = []
    if (!isRecord(entry)) {
      problems.push(`${label}: must be a map of settings`)
      return
    }
    const name = entry.name
    if (typeof name !== 'string' || !NAME.test(name)) own.push('name is required: [a-z][a-z0-9-]{0,31}')
    else if (names.has(name)) own.push(`name "${name}" is already used by frontends[${names.get(name)}]`)
    else names.set(name, i)

    const mapped: Record<string, string | undefined> = {}
    for (const [key, raw] of Object.entries(entry)) {
      if (key === 'name') continue
      const variable = variableOf(key)
      if (!variable) {
        const suggestion = suggestKey(key)
        own.push(`${key} is not a tokenward setting${suggestion ? ` (did you mean ${suggestion}?)` : ''}`)
        continue
      }
      if (isProcessWide(variable)) {
        own.push(`${key} (${variable}) is process-wide: set it in the environment, not per frontend`)
        continue
      }
      const missing = new Set<string>()
      const value = resolveRefs(raw, env, missing)
      for (const m of missing) own.push(`${key} refers to \${${m}}, which is not set in the environment`)
      mapped[variable] = asVariableText(variable, value)
    }

    let config: Config | undefined
    if (own.length === 0) {
      try {
        config = loadConfig({ ...env, ...mapped }, { ...options, allowPathBase: true })
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err
        own.push(...err.problems.filter((p) => !envProblems.has(p)))
      }
    }
    if (config) {
      // A host and path base serve one frontend; several frontends may share a host at different bases.
      const host = config.publicUrl.host.toLowerCase()
      const where = `${host}${config.basePath}`
      const other = hosts.get(where)
      if (other !== undefined)
        own.push(`publicUrl ${config.basePath ? `${host} at ${config.basePath}` : `host ${host}`} is already served by frontend ${other}`)
      else hosts.set(where, String(name))
      // Browsers send a cookie to every port of its host name and every path
      // under its Path (RFC 6265 §5.1.4, §8.5): with the same name, one
      // frontend's sign-in would replace the other's cookie (security model S92).
      for (const f of other === undefined ? frontends : []) {
        const o = f.config
        if (o.publicUrl.hostname !== config.publicUrl.hostname || o.cookie.name !== config.cookie.name) continue
        if (!o.basePath && !config.basePath) continue // the same-origin case keeps its warning below
        if (pathsOverlap(o.cookie.path, config.cookie.path)) {
          own.push(
            `cookie ${config.cookie.name} at Path=${config.cookie.path} overlaps frontend ${f.name}'s (Path=${o.cookie.path}) on host name ${config.publicUrl.hostname}: set a distinct cookieName`,
          )
        }
      }
    }
    for (const p of own) problems.push(`${label}: ${p}`)
    if (config && own.length === 0 && envProblems.size === 0) {
      const n = name as string
      frontends.push({ name: n, host: config.publicUrl.host.toLowerCase(), config: withPrefix(config, `${config.redis.prefix}${n}:`) })
    }
  })
  if (problems.length > 0) throw new ConfigError(problems)
  return frontends.map((f) => {
    // Browsers keep cookies per host name, whatever the port (RFC 6265 §8.5):
    // frontends on one host name with one cookie name overwrite each other's
    // cookies; distinct cookie names keep them apart (security model S92).
    const sharing = frontends
      .filter(
        (o) => o !== f && o.config.publicUrl.hostname === f.config.publicUrl.hostname && o.config.cookie.name === f.config.cookie.name,
      )
      .map((o) => o.name)
    if (sharing.length === 0) return f
    const warning = `publicUrl shares its host name and cookie name with ${sharing.join(', ')}: browsers send the same cookies to both, so a sign-in at one signs the other out (give each frontend its own host name or its own cookieName)`
    return { ...f, config: Object.freeze({ ...f.config, warnings: [...f.config.warnings, warning] }) }
  })
}

/** Whether a cookie of one Path is sent to requests under the other (RFC 6265 §5.1.4). */
export function pathsOverlap(a: string, b: string): boolean {
  const under = (p: string, base: string) => base === '/' || p === base || p.startsWith(`${base}/`)
  return under(a, b) || under(b, a)
}

/** The configuration with its derived Redis key prefix (not settable, security model S88). */
function withPrefix(config: Config, prefix: string): Config {
  return Object.freeze({ ...config, redis: Object.freeze({ ...config.redis, prefix }) })
}

/**
 * The frontends tokenward serves: those of BFF_CONFIG_FILE, or without it one
 * frontend from the environment, exactly as before (no Host matching, the
 * environment's Redis prefix).
 */
export function loadFrontends(env: Record<string, string | undefined>, options: LoadConfigOptions = {}): FrontendSet {
  const file = env.BFF_CONFIG_FILE
  if (!file) {
    const config = loadConfig(env, options)
    return { frontends: [{ name: DEFAULT_FRONTEND, config, host: config.publicUrl.host.toLowerCase() }], matchHost: false, file: undefined }
  }
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ConfigError([`BFF_CONFIG_FILE ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`])
  }
  return { frontends: frontendsFromText(text, env, options, `BFF_CONFIG_FILE ${file}`), matchHost: true, file }
}

/**
 * Process-wide settings are read from the environment once (the first
 * frontend's configuration carries them, identical in all).
 */
export function processConfig(set: FrontendSet): Config {
  return set.frontends[0]!.config
}
