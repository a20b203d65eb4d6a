// A throwaway PKI for mutual-TLS tests (RFC 8705), made at test time in a
// temporary directory with Debian's `openssl` CLI (node:crypto reads X.509
// certificates but cannot issue them). Nothing here is ever committed.
import { createHash, X509Certificate } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface Issued {
  readonly certFile: string
  readonly keyFile: string
  readonly cert: string
  readonly key: string
  /** RFC 8705 §3.1 x5t#S256 of the certificate. */
  readonly thumbprint: string
}

export interface Pki {
  readonly dir: string
  /** The test CA: signs the servers' and the clients' certificates. */
  readonly ca: Issued
  /** A certificate for 127.0.0.1 and localhost, for the IdP's and upstreams' HTTPS listeners. */
  readonly server: Issued
  /** A client certificate signed by the CA (`subject` in openssl's /O=.../CN=... form). */
  client(name: string, subject: string, options?: { days?: number; expired?: boolean; notYetValid?: boolean }): Issued
  /** A self-signed client certificate (RFC 8705 §2.2). */
  selfSigned(name: string, subject: string): Issued
  close(): void
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] })
}

function issued(dir: string, name: string): Issued {
  const certFile = join(dir, `${name}.pem`)
  const keyFile = join(dir, `${name}.key`)
  const cert = readFileSync(certFile, 'utf8')
  return {
    certFile,
    keyFile,
    cert,
    key: readFileSync(keyFile, 'utf8'),
    thumbprint: createHash('sha256').update(new X509Certificate(cert).raw).digest('base64url'),
  }
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']

export function createPki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'tokenward-pki-'))
  openssl(dir, ['req', '-x509', ...EC, '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', '/CN=tokenward test CA', '-days', '2'])
  const sign = (name: string, subject: string, ext: string, days: number) => {
    openssl(dir, ['req', '-new', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject])
    writeFileSync(join(dir, `${name}.ext`), ext)
    openssl(dir, [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      String(days),
      '-extfile',
      `${name}.ext`,
    ])
    return issued(dir, name)
  }
  const server = sign('server', '/CN=localhost', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n', 2)
  return {
    dir,
    ca: issued(dir, 'ca'),
    server,
    client(name, subject, options = {}) {
      if (!options.expired && !options.notYetValid) return sign(name, subject, 'extendedKeyUsage=clientAuth\n', options.days ?? 2)
      const [start, end] = options.expired ? ['20200101000000Z', '20200102000000Z'] : ['20991231000000Z', '21000101000000Z']
      // `openssl x509` takes no start date in OpenSSL 3.0: `openssl ca` does.
      openssl(dir, ['req', '-new', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject])
      writeFileSync(join(dir, 'index.txt'), '')
      writeFileSync(join(dir, 'serial'), '1000\n')
      writeFileSync(
        join(dir, 'ca.cnf'),
        '[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\npolicy=p\ndefault_md=sha256\nunique_subject=no\n[p]\ncommonName=supplied\norganizationName=optional\n',
      )
      openssl(dir, [
        'ca',
        '-batch',
        '-config',
        'ca.cnf',
        '-cert',
        'ca.pem',
        '-keyfile',
        'ca.key',
        '-in',
        `${name}.csr`,
        '-out',
        `${name}.pem`,
        '-startdate',
        start,
        '-enddate',
        end,
        '-notext',
      ])
      return issued(dir, name)
    },
    selfSigned(name, subject) {
      openssl(dir, ['req', '-x509', ...EC, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-subj', subject, '-days', '2'])
      return issued(dir, name)
    },
    close() {
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** The certificate as a JWK with x5c, as a client registers it for self_signed_tls_client_auth (RFC 8705 §2.2). */
export function certificateJwk(pair: Issued): Record<string, unknown> {
  const cert = new X509Certificate(pair.cert)
  return { ...cert.publicKey.export({ format: 'jwk' }), x5c: [cert.raw.toString('base64')] }
}

/** Replaces a file the way deployment tools do: written beside it, then renamed over it. */
export function replaceFile(path: string, content: string): void {
  const tmp = `${path}.${process.pid}.tmp`
  writeFileSync(tmp, content)
  renameSync(tmp, path)
}
