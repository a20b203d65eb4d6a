import { createHash, createPrivateKey, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { rootCertificates } from 'node:tls'

/**
 * tokenward's TLS client certificate and key (RFC 8705), read from PEM files and
 * checked together: the key is a private key, it belongs to the certificate, and
 * the certificate is valid now (security model S80). The key's PEM is kept only
 * in process memory, for the TLS handshakes; it is never logged.
 */
export interface CertificatePair {
  readonly certPem: string
  readonly keyPem: string
  readonly certificate: X509Certificate
  /** RFC 8705 §3.1 `x5t#S256`: base64url SHA-256 of the certificate's DER encoding. */
  readonly thumbprint: string
  /** Epoch milliseconds. */
  readonly notAfter: number
  readonly notBefore: number
}

/** A problem with the certificate files, worded for an operator (no key material in it). */
export class CertificateError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'CertificateError'
  }
}

function readText(file: string, variable: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch (err) {
    const code = (err as { code?: string }).code
    throw new CertificateError(`${variable} ${file} cannot be read (${code ?? 'error'})`)
  }
}

/** RFC 8705 §3.1: the certificate thumbprint a bound token's `cnf` carries. */
export function certificateThumbprint(certificate: X509Certificate): string {
  return createHash('sha256').update(certificate.raw).digest('base64url')
}

/**
 * Reads and checks a certificate and key pair. Throws a CertificateError naming
 * the variable at fault: unreadable file, not a certificate, not a private key,
 * key that does not belong to the certificate, certificate expired or not yet valid.
 */
export function readCertificatePair(certFile: string, keyFile: string, now: number = Date.now()): CertificatePair {
  const certPem = readText(certFile, 'BFF_TLS_CLIENT_CERT')
  const keyPem = readText(keyFile, 'BFF_TLS_CLIENT_KEY')
  let certificate: X509Certificate
  try {
    certificate = new X509Certificate(certPem)
  } catch {
    throw new CertificateError(`BFF_TLS_CLIENT_CERT ${certFile} is not a PEM certificate`)
  }
  let key: ReturnType<typeof createPrivateKey>
  try {
    key = createPrivateKey(keyPem)
  } catch {
    throw new CertificateError(`BFF_TLS_CLIENT_KEY ${keyFile} is not a PEM private key (an encrypted key is not supported)`)
  }
  if (!certificate.checkPrivateKey(key)) {
    throw new CertificateError(`BFF_TLS_CLIENT_KEY ${keyFile} does not belong to the certificate in BFF_TLS_CLIENT_CERT ${certFile}`)
  }
  const notBefore = Date.parse(certificate.validFrom)
  const notAfter = Date.parse(certificate.validTo)
  if (now >= notAfter) {
    throw new CertificateError(`BFF_TLS_CLIENT_CERT ${certFile} expired on ${new Date(notAfter).toISOString()}`)
  }
  if (now < notBefore) {
    throw new CertificateError(`BFF_TLS_CLIENT_CERT ${certFile} is not valid before ${new Date(notBefore).toISOString()}`)
  }
  return { certPem, keyPem, certificate, thumbprint: certificateThumbprint(certificate), notAfter, notBefore }
}

/**
 * BFF_TLS_CA: the PEM bundle that verifies the IdP's and the upstreams'
 * servers, in addition to Node's built-in roots (setting only the bundle would
 * silently stop trusting every public CA). Throws a CertificateError when the
 * file is unreadable or holds no certificate.
 */
export function readCaBundle(caFile: string): string[] {
  const text = readText(caFile, 'BFF_TLS_CA')
  const pems = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
  if (pems.length === 0) throw new CertificateError(`BFF_TLS_CA ${caFile} holds no PEM certificate`)
  for (const pem of pems) {
    try {
      new X509Certificate(pem)
    } catch {
      throw new CertificateError(`BFF_TLS_CA ${caFile} holds a certificate that cannot be parsed`)
    }
  }
  return [...rootCertificates, ...pems]
}
