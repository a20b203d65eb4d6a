import { BffError } from '../errors.js'
import { SCOPE_TOKEN_LIST_RE } from '../protocol.js'

/**
 * The login policy: which authentication a login asks the IdP for, and what the
 * callback then demands of the ID token. BFF_AUTH_PARAMS sets a floor; a login
 * request (the SPA, or a step-up `loginUrl`, RFC 9470 §4) may only ask for more.
 */

/** The authorization parameters a login request may set itself. */
export interface RequestedLoginParams {
  readonly prompt?: string | undefined
  readonly acr_values?: string | undefined
  readonly max_age?: string | undefined
}

/** What the authorization request effectively asked for; the callback holds the ID token to it. */
export interface AskedAuthentication {
  /** OIDC Core §3.1.2.1 `acr_values`, in order of preference. */
  readonly acrValues?: readonly string[] | undefined
  /** OIDC Core §3.1.2.1 `max_age`, seconds. */
  readonly maxAge?: number | undefined
}

export interface EffectiveAuthParams {
  /** Every configured and requested authorization parameter, floors applied (no protocol parameters). */
  readonly params: ReadonlyArray<readonly [string, string]>
  readonly asked: AskedAuthentication
  /** prompt=none: the IdP answers without showing anything (OIDC Core §3.1.2.6). */
  readonly silent: boolean
}

const PROMPTS = new Set(['none', 'login', 'consent', 'select_account'])
const MAX_AGE = /^\d{1,9}$/
const POLICY_KEYS = new Set(['prompt', 'acr_values', 'max_age'])

/** A problem with one value, or the parsed value. */
function parsePrompt(value: string): string[] | string {
  const list = value.split(' ')
  if (list.some((p) => !PROMPTS.has(p))) return 'prompt must be none, login, consent or select_account (space-separated)'
  if (new Set(list).size !== list.length) return 'prompt must not repeat a value'
  // OIDC Core §3.1.2.1: none with any other value is an error.
  if (list.includes('none') && list.length > 1) return 'prompt=none cannot be combined with other values'
  return list
}

function parseAcrValues(value: string): string[] | string {
  if (value.length > 512 || !SCOPE_TOKEN_LIST_RE.test(value)) return 'acr_values is malformed'
  return [...new Set(value.split(' '))]
}

function parseMaxAge(value: string): number | string {
  return MAX_AGE.test(value) ? Number(value) : 'max_age must be a number of seconds'
}

/** Problems with the policy parameters of BFF_AUTH_PARAMS (for loadConfig). */
export function authParamsProblems(configured: ReadonlyArray<readonly [string, string]>): string[] {
  const problems: string[] = []
  const seen = new Set<string>()
  for (const [k, v] of configured) {
    if (!POLICY_KEYS.has(k)) continue
    if (seen.has(k)) problems.push(`BFF_AUTH_PARAMS must not set ${k} twice`)
    seen.add(k)
    const parsed = k === 'prompt' ? parsePrompt(v) : k === 'acr_values' ? parseAcrValues(v) : parseMaxAge(v)
    if (typeof parsed === 'string') problems.push(`BFF_AUTH_PARAMS: ${parsed}`)
  }
  return problems
}

function configuredValue(configured: ReadonlyArray<readonly [string, string]>, key: string): string | undefined {
  return configured.find(([k]) => k === key)?.[1]
}

/**
 * The authorization parameters of one login: configuration (BFF_AUTH_PARAMS)
 * merged with what the request asks, where the configured values are a floor:
 *
 * - `max_age`: the smaller of the two (a shorter age is a fresher login).
 * - `acr_values`: when configured, a request may only narrow the list to a
 *   non-empty subset (asking for fewer of the acceptable levels is asking for
 *   more); anything else is refused. Without a configured list, the request's.
 * - `prompt`: when the configured prompt contains `login`, the result always
 *   does; a request may add values, and `none` is refused (it would skip the
 *   re-authentication). Any other configured prompt (`consent`, which some IdPs
 *   need before they grant offline_access, or `select_account`) is a default
 *   the request's prompt replaces, as it did before: it is a user-experience
 *   choice, not an authentication requirement, and a silent login
 *   (prompt=none) must stay possible.
 *
 * Returns a 400 invalid_request for a malformed or weakening request. Pure.
 */
export function effectiveAuthParams(
  configured: ReadonlyArray<readonly [string, string]>,
  requested: RequestedLoginParams,
): EffectiveAuthParams | BffError {
  const refuse = (message: string) => new BffError('invalid_request', `${message}.`, { logDetail: `login parameters refused: ${message}` })

  // Configuration was validated by loadConfig; a malformed value here is ignored rather than trusted.
  const confPromptRaw = configuredValue(configured, 'prompt')
  const confPromptParsed = confPromptRaw === undefined ? undefined : parsePrompt(confPromptRaw)
  const confPrompt = Array.isArray(confPromptParsed) ? confPromptParsed : undefined
  const confAcrRaw = configuredValue(configured, 'acr_values')
  const confAcrParsed = confAcrRaw === undefined ? undefined : parseAcrValues(confAcrRaw)
  const confAcr = Array.isArray(confAcrParsed) ? confAcrParsed : undefined
  const confMaxAgeRaw = configuredValue(configured, 'max_age')
  const confMaxAgeParsed = confMaxAgeRaw === undefined ? undefined : parseMaxAge(confMaxAgeRaw)
  const confMaxAge = typeof confMaxAgeParsed === 'number' ? confMaxAgeParsed : undefined

  let reqPrompt: string[] | undefined
  if (requested.prompt !== undefined) {
    const p = parsePrompt(requested.prompt)
    if (typeof p === 'string') return refuse(p)
    reqPrompt = p
  }
  let reqAcr: string[] | undefined
  if (requested.acr_values !== undefined) {
    const a = parseAcrValues(requested.acr_values)
    if (typeof a === 'string') return refuse(a)
    reqAcr = a
  }
  let reqMaxAge: number | undefined
  if (requested.max_age !== undefined) {
    const m = parseMaxAge(requested.max_age)
    if (typeof m === 'string') return refuse(m)
    reqMaxAge = m
  }

  let prompt: string[] | undefined
  if (confPrompt?.includes('login')) {
    if (reqPrompt?.includes('none'))
      return refuse('prompt=none is not allowed: this deployment always requires the user to sign in again (prompt=login)')
    prompt = [...new Set([...confPrompt, ...(reqPrompt ?? [])])]
  } else {
    prompt = reqPrompt ?? confPrompt
  }

  let acrValues: string[] | undefined
  if (confAcr) {
    if (reqAcr && !reqAcr.every((a) => confAcr.includes(a))) {
      return refuse('acr_values may only ask for authentication levels this deployment is configured to accept')
    }
    acrValues = reqAcr ?? confAcr
  } else {
    acrValues = reqAcr
  }

  const maxAge = confMaxAge === undefined ? reqMaxAge : reqMaxAge === undefined ? confMaxAge : Math.min(confMaxAge, reqMaxAge)

  const params: Array<[string, string]> = configured.filter(([k]) => !POLICY_KEYS.has(k)).map(([k, v]) => [k, v])
  if (prompt) params.push(['prompt', prompt.join(' ')])
  if (acrValues) params.push(['acr_values', acrValues.join(' ')])
  if (maxAge !== undefined) params.push(['max_age', String(maxAge)])
  return {
    params,
    asked: { ...(acrValues ? { acrValues } : {}), ...(maxAge !== undefined ? { maxAge } : {}) },
    silent: prompt !== undefined && prompt.length === 1 && prompt[0] === 'none',
  }
}

/**
 * Seconds of tolerance on `auth_time`: the time between the user's
 * authentication at the IdP and the callback (the redirect, the code exchange),
 * plus clock drift between the IdP and tokenward. The same 60 s tokenward
 * allows on a future `iat`; without it, max_age=0 (OIDC Core §3.1.2.1: like
 * prompt=login) could never be met.
 */
export const AUTH_TIME_SKEW_SECONDS = 60

/**
 * Whether the ID token shows the authentication that was asked for. Returns a
 * log detail naming the failed check, or undefined when it is met:
 *
 * - `acr_values` asked and the ID token carries `acr`: it must be one of them
 *   (OIDC Core §2, §3.1.2.1; RFC 9470 §3). An IdP that returns no `acr` is
 *   not held to it (acr_values is a voluntary claim request).
 * - `max_age` asked: `auth_time` is REQUIRED (OIDC Core §3.1.2.1, §2) and at
 *   most max_age (+ skew) seconds old, and not in the future beyond the skew.
 */
export function authenticationShortfall(
  asked: AskedAuthentication,
  claims: { readonly acr?: unknown; readonly auth_time?: unknown },
  nowSeconds: number,
): string | undefined {
  if (asked.acrValues?.length && claims.acr !== undefined) {
    if (typeof claims.acr !== 'string' || !asked.acrValues.includes(claims.acr)) {
      return `ID token acr ${JSON.stringify(claims.acr).slice(0, 100)} is not one of the requested acr_values`
    }
  }
  if (asked.maxAge !== undefined) {
    if (typeof claims.auth_time !== 'number' || !Number.isFinite(claims.auth_time))
      return 'ID token has no auth_time although max_age was requested'
    const age = nowSeconds - claims.auth_time
    if (age > asked.maxAge + AUTH_TIME_SKEW_SECONDS) return `ID token auth_time is ${age} s old, more than max_age=${asked.maxAge}`
    if (age < -AUTH_TIME_SKEW_SECONDS) return 'ID token auth_time is in the future'
  }
  return undefined
}
