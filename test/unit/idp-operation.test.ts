import { describe, expect, it } from 'vitest'
import { methodLabel, statusClass } from '../../src/metrics.js'
import { idpOperation } from '../../src/oidc/fetch.js'

const endpoints = {
  jwks_uri: 'https://idp.example/jwks',
  token_endpoint: 'https://idp.example/token',
  revocation_endpoint: 'https://idp.example/token/revocation',
  pushed_authorization_request_endpoint: 'https://idp.example/request',
  userinfo_endpoint: 'https://idp.example/me',
}

describe('idpOperation: a bounded label for every IdP request', () => {
  it('tells the operations apart by endpoint and grant type', () => {
    const grant = (g: string) => new URLSearchParams({ grant_type: g, code: 'x' })
    expect(idpOperation('https://idp.example/.well-known/openid-configuration', undefined, undefined)).toBe('discovery')
    expect(idpOperation('https://idp.example/.well-known/openid-configuration', undefined, endpoints)).toBe('discovery')
    expect(idpOperation('https://idp.example/jwks', undefined, endpoints)).toBe('jwks')
    expect(idpOperation('https://idp.example/token', grant('authorization_code'), endpoints)).toBe('code_exchange')
    expect(idpOperation('https://idp.example/token', 'grant_type=refresh_token&refresh_token=x', endpoints)).toBe('refresh')
    expect(idpOperation('https://idp.example/token', grant('client_credentials'), endpoints)).toBe('client_credentials')
    expect(idpOperation('https://idp.example/token', grant('urn:ietf:params:oauth:grant-type:token-exchange'), endpoints)).toBe(
      'token_exchange',
    )
    expect(idpOperation('https://idp.example/token', grant('password'), endpoints)).toBe('other')
    expect(idpOperation('https://idp.example/token/revocation', 'token=x', endpoints)).toBe('revocation')
    expect(idpOperation('https://idp.example/request', 'client_id=x', endpoints)).toBe('par')
    expect(idpOperation('https://idp.example/me?x=1', undefined, endpoints)).toBe('userinfo')
    expect(idpOperation('https://elsewhere.example/token', grant('refresh_token'), endpoints)).toBe('other')
  })

  it('knows the RFC 8705 §5 mTLS endpoint aliases as the same operations', () => {
    const withAliases = {
      ...endpoints,
      mtls_endpoint_aliases: {
        token_endpoint: 'https://mtls.idp.example/token',
        revocation_endpoint: 'https://mtls.idp.example/token/revocation',
        pushed_authorization_request_endpoint: 'https://mtls.idp.example/request',
      },
    }
    expect(idpOperation('https://mtls.idp.example/token', 'grant_type=refresh_token&refresh_token=x', withAliases)).toBe('refresh')
    expect(idpOperation('https://mtls.idp.example/token/revocation', 'token=x', withAliases)).toBe('revocation')
    expect(idpOperation('https://mtls.idp.example/request', 'client_id=x', withAliases)).toBe('par')
    expect(idpOperation('https://idp.example/token', 'grant_type=refresh_token', withAliases)).toBe('refresh')
    expect(idpOperation('https://mtls.idp.example/jwks', undefined, withAliases)).toBe('other')
  })

  it('bounds methods and statuses', () => {
    expect(methodLabel('GET')).toBe('GET')
    expect(methodLabel('PROPFIND')).toBe('OTHER')
    expect(statusClass(204)).toBe('2xx')
    expect(statusClass(503)).toBe('5xx')
    expect(statusClass(0)).toBe('0xx')
    expect(statusClass(999)).toBe('0xx')
  })
})
