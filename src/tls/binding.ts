/**
 * The RFC 8705 §3.1 confirmation of a JWT access token (RFC 9068): the
 * `cnf.x5t#S256` certificate thumbprint the token is bound to, or undefined
 * for an opaque token or an unbound one. The token is tokenward's own, from the
 * IdP's token endpoint, so its payload is only read here, not verified; an
 * opaque bound token is recognised by the upstream's refusal instead.
 */
export function boundCertificate(token: string): string | undefined {
  const parts = token.split('.')
  if (parts.length !== 3) return undefined
  try {
    const claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as { cnf?: Record<string, unknown> }
    const x5t = claims.cnf?.['x5t#S256']
    return typeof x5t === 'string' ? x5t : undefined
  } catch {
    return undefined
  }
}
