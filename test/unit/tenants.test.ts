import { describe, expect, it } from 'vitest'
import { entraAlias, isTemplateOf, TenantIssuers } from '../../src/oidc/tenants.js'

const TEMPLATE = 'https://login.microsoftonline.com/{tenantid}/v2.0'
const A = '6f1c2b3a-0d4e-4f5a-8b6c-7d8e9f0a1b2c'
const B = '0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d'

describe('multi-tenant issuers (security model S79)', () => {
  it('a template belongs to the common or organizations endpoint configured, and to no other issuer', () => {
    expect(isTemplateOf(TEMPLATE, 'https://login.microsoftonline.com/common/v2.0')).toBe(true)
    expect(isTemplateOf(TEMPLATE, 'https://login.microsoftonline.com/organizations/v2.0/')).toBe(true)
    expect(isTemplateOf(TEMPLATE, 'https://login.microsoftonline.com/common')).toBe(false)
    expect(isTemplateOf(TEMPLATE, 'https://login.example.com/common/v2.0')).toBe(false)
    expect(isTemplateOf(TEMPLATE, 'https://login.microsoftonline.com/a/b/v2.0')).toBe(false)
    expect(isTemplateOf('https://login.microsoftonline.com/{tenantid}/{tenantid}/v2.0', 'https://login.microsoftonline.com/x/x/v2.0')).toBe(
      false,
    )
    expect(isTemplateOf('https://login.microsoftonline.com/common/v2.0', 'https://login.microsoftonline.com/common/v2.0')).toBe(false)
  })

  it('Entra ID endpoints are recognised by host and first path segment only', () => {
    expect(entraAlias('https://login.microsoftonline.com/common/v2.0')).toBe('multi-tenant')
    expect(entraAlias('https://LOGIN.microsoftonline.com/Organizations/v2.0')).toBe('multi-tenant')
    expect(entraAlias('https://login.microsoftonline.com/consumers/v2.0')).toBe('consumers')
    expect(entraAlias(`https://login.microsoftonline.com/${A}/v2.0`)).toBeUndefined()
    expect(entraAlias('https://idp.example.com/common/v2.0')).toBeUndefined()
  })

  it("an ID token passes only with an allowed tid and that tenant's issuer", () => {
    const tenants = new TenantIssuers(TEMPLATE, [A])
    const issuerA = `https://login.microsoftonline.com/${A}/v2.0`
    expect(tenants.issuers).toEqual([issuerA])
    expect(tenants.claimsProblem({ iss: issuerA, tid: A })).toBeUndefined()
    expect(tenants.claimsProblem({ iss: issuerA })).toMatch(/without a tenant id/)
    expect(tenants.claimsProblem({ iss: issuerA, tid: '../x' })).toMatch(/without a tenant id/)
    expect(tenants.claimsProblem({ iss: `https://login.microsoftonline.com/${B}/v2.0`, tid: B })).toMatch(/does not allow/)
    expect(tenants.claimsProblem({ iss: `https://login.microsoftonline.com/${B}/v2.0`, tid: A })).toMatch(/not its tenant's issuer/)
    expect(tenants.has(issuerA)).toBe(true)
    expect(tenants.has(TEMPLATE)).toBe(false)
  })
})
