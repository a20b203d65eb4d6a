// Multi-tenant issuers (Microsoft Entra ID's `common` and `organizations`
// endpoints): discovery names an issuer template, each token names the
// issuer of the user's own tenant. See docs/providers.md and security model S79.

/** The placeholder Entra ID puts in the discovered issuer of its multi-tenant endpoints. */
export const TENANT_PLACEHOLDER = '{tenantid}'

/** Entra ID tenant ids (`tid`) are GUIDs; nothing else is ever put into an issuer. */
const TENANT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

const ENTRA_HOST = 'login.microsoftonline.com'
/** Entra ID's personal-account tenant: `/consumers` discovers this tenant's own issuer. */
export const ENTRA_CONSUMERS_TENANT = '9188040d-6c67-4c5b-b112-36a304b66dad'

export function isTenantId(value: string): boolean {
  return TENANT_ID.test(value)
}

/**
 * Which kind of Entra ID endpoint an issuer URL is, from its first path
 * segment: `common`/`organizations` discover an issuer template (tokens from
 * any tenant), `consumers` discovers the personal-account tenant's issuer,
 * which differs from the URL.
 */
export function entraAlias(issuer: string): 'multi-tenant' | 'consumers' | undefined {
  if (!URL.canParse(issuer)) return undefined
  const url = new URL(issuer)
  if (url.hostname.toLowerCase() !== ENTRA_HOST) return undefined
  const segment = url.pathname.split('/')[1]?.toLowerCase()
  if (segment === 'common' || segment === 'organizations') return 'multi-tenant'
  if (segment === 'consumers') return 'consumers'
  return undefined
}

/**
 * True when `template` holds the placeholder once and, with it replaced by one
 * path segment (`common`, `organizations`), is the configured issuer: the
 * template belongs to the endpoint that was configured, not to another one.
 */
export function isTemplateOf(template: string, configured: string): boolean {
  const at = template.indexOf(TENANT_PLACEHOLDER)
  if (at < 0 || template.indexOf(TENANT_PLACEHOLDER, at + 1) >= 0) return false
  const prefix = template.slice(0, at)
  const suffix = template.slice(at + TENANT_PLACEHOLDER.length)
  const issuer = configured.endsWith('/') && !suffix.endsWith('/') ? configured.slice(0, -1) : configured
  if (!issuer.startsWith(prefix) || !issuer.endsWith(suffix) || issuer.length <= prefix.length + suffix.length) return false
  return /^[A-Za-z0-9._-]+$/.test(issuer.slice(prefix.length, issuer.length - suffix.length))
}

/**
 * The issuers of the allowed tenants of a template endpoint: the only `iss`
 * values tokenward accepts from it (ID tokens, RFC 9207 responses, logout tokens).
 */
export class TenantIssuers {
  readonly template: string
  /** Lower-case tenant id → that tenant's issuer. */
  readonly #issuers: ReadonlyMap<string, string>

  constructor(template: string, tenants: readonly string[]) {
    this.template = template
    this.#issuers = new Map(tenants.map((t) => [t.toLowerCase(), template.replace(TENANT_PLACEHOLDER, t.toLowerCase())]))
  }

  /** Every allowed tenant's issuer. */
  get issuers(): string[] {
    return [...this.#issuers.values()]
  }

  has(issuer: string): boolean {
    return this.issuers.includes(issuer)
  }

  /**
   * Why an ID token's claims are not from an allowed tenant, or undefined when
   * they are: `tid` must be an allowed tenant and `iss` that tenant's issuer.
   */
  claimsProblem(claims: { iss?: unknown; tid?: unknown }): string | undefined {
    if (typeof claims.tid !== 'string' || !isTenantId(claims.tid)) return 'ID token from a multi-tenant issuer without a tenant id (tid)'
    const expected = this.#issuers.get(claims.tid.toLowerCase())
    if (expected === undefined) return 'ID token from a tenant that BFF_ISSUER_TENANTS does not allow'
    if (claims.iss !== expected) return "ID token iss is not its tenant's issuer"
    return undefined
  }
}
