// undici (see src/proxy/pool.ts): its Agent takes the client certificate for
// the TLS handshake, which Node's global fetch has no option for.
import { watch, type FSWatcher } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { Agent, fetch as undiciFetch } from 'undici'
import { audit, type Logger } from '../log.js'
import { CertificateError, readCaBundle, readCertificatePair, type CertificatePair } from './certificate.js'

/** What a connection pool to one upstream needs for TLS: the identity of the material, and the material. */
export interface UpstreamTls {
  /** Different for every certificate generation, so pools are never shared across a rotation. */
  readonly id: string
  readonly cert?: string | undefined
  readonly key?: string | undefined
  readonly ca?: readonly string[] | undefined
}

export interface ClientTlsFiles {
  readonly certFile: string | undefined
  readonly keyFile: string | undefined
  readonly caFile: string | undefined
}

let generations = 0

/**
 * tokenward's TLS material for outgoing calls (RFC 8705): the client certificate
 * presented to the IdP (client authentication, §2, and certificate-bound tokens,
 * §3) and to upstreams on `mtls` routes, and the extra CA bundle. A renewed pair
 * on disk replaces the current one only once it passed the same checks as at
 * startup; a bad pair is logged and the current one keeps serving (security
 * model S82). Sessions are untouched by a reload.
 */
export class ClientTls {
  readonly #files: ClientTlsFiles
  readonly #logger: Logger
  readonly #ca: string[] | undefined
  #pair: CertificatePair | undefined
  #id: string
  #agent: Agent | undefined
  #caAgent: Agent | undefined
  readonly #listeners = new Set<(retiredId: string) => void>()
  readonly #watchers: FSWatcher[] = []
  #debounce: NodeJS.Timeout | undefined

  /** Throws a CertificateError when the files are not usable (loadConfig has checked them already). */
  constructor(files: ClientTlsFiles, logger: Logger) {
    this.#files = files
    this.#logger = logger
    this.#ca = files.caFile ? readCaBundle(files.caFile) : undefined
    this.#pair = files.certFile && files.keyFile ? readCertificatePair(files.certFile, files.keyFile) : undefined
    this.#id = `tls${++generations}`
  }

  /** The current certificate and key, or undefined when only a CA bundle is configured. */
  get pair(): CertificatePair | undefined {
    return this.#pair
  }

  /** The TLS material for an upstream: with the certificate on an `mtls` route, the CA bundle alone otherwise. */
  upstream(mtls: boolean): UpstreamTls | undefined {
    if (mtls && this.#pair) return { id: this.#id, cert: this.#pair.certPem, key: this.#pair.keyPem, ca: this.#ca }
    return this.#ca ? { id: 'ca', ca: this.#ca } : undefined
  }

  /** Called with the id of the material a reload replaced, so its connection pools can be closed. */
  onRetire(listener: (retiredId: string) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  #dispatcher(): Agent {
    this.#agent ??= new Agent({
      connect: {
        ...(this.#pair ? { cert: this.#pair.certPem, key: this.#pair.keyPem } : {}),
        ...(this.#ca ? { ca: this.#ca } : {}),
      },
      keepAliveTimeout: 4000,
    })
    return this.#agent
  }

  /** A fetch that trusts the CA bundle and presents no certificate (doctor's probes of routes without `mtls`). */
  readonly fetchWithoutCertificate = (url: string, init: RequestInit): Promise<Response> => {
    this.#caAgent ??= new Agent({ connect: this.#ca ? { ca: this.#ca } : {} })
    return undiciFetch(url, { ...(init as Parameters<typeof undiciFetch>[1]), dispatcher: this.#caAgent }) as unknown as Promise<Response>
  }

  /** A fetch for IdP calls that presents the current certificate (and trusts the CA bundle). */
  readonly fetch = (url: string, init: RequestInit): Promise<Response> =>
    // undici's own fetch with its own Agent: Node 20's built-in fetch bundles an
    // older undici whose dispatcher interface differs.
    undiciFetch(url, { ...(init as Parameters<typeof undiciFetch>[1]), dispatcher: this.#dispatcher() }) as unknown as Promise<Response>

  /**
   * Reads the files again. Returns true when a new, valid pair replaced the
   * current one; false when nothing changed or the new pair is refused (logged,
   * the current pair keeps serving).
   */
  reload(trigger: string): boolean {
    const { certFile, keyFile } = this.#files
    if (!certFile || !keyFile || !this.#pair) return false
    let next: CertificatePair
    try {
      next = readCertificatePair(certFile, keyFile)
    } catch (err) {
      const reason = err instanceof CertificateError ? err.message : 'the files cannot be read'
      audit(this.#logger, 'client_certificate_reload', { outcome: 'failure', reason, trigger, kept: this.#pair.thumbprint })
      return false
    }
    if (next.thumbprint === this.#pair.thumbprint && next.keyPem === this.#pair.keyPem) return false
    const previous = { id: this.#id, agent: this.#agent, thumbprint: this.#pair.thumbprint }
    this.#pair = next
    this.#id = `tls${++generations}`
    this.#agent = undefined
    audit(this.#logger, 'client_certificate_reload', {
      outcome: 'success',
      trigger,
      previous: previous.thumbprint,
      thumbprint: next.thumbprint,
      subject: next.certificate.subject.replace(/\n/g, ', '),
      notAfter: new Date(next.notAfter).toISOString(),
    })
    // New requests already use the new pair; what is in flight on the old
    // connections finishes there (a graceful close), so no request fails.
    for (const l of this.#listeners) l(previous.id)
    void previous.agent?.close().catch(() => {})
    return true
  }

  /**
   * Watches the directories of the certificate and key (a file replaced by a
   * rename, or a Kubernetes secret's symlink swap, is only seen there) and
   * reloads shortly after the last change, so a key and a certificate written
   * one after the other are read together.
   */
  watch(): void {
    const { certFile, keyFile } = this.#files
    if (!certFile || !keyFile || this.#watchers.length > 0) return
    for (const dir of new Set([dirname(resolve(certFile)), dirname(resolve(keyFile))])) {
      try {
        const w = watch(dir, { persistent: false }, () => {
          clearTimeout(this.#debounce)
          this.#debounce = setTimeout(() => this.reload('file change'), 200)
          this.#debounce.unref()
        })
        w.on('error', (err) => this.#logger.warn({ dir, reason: err.message }, 'watching the client certificate directory failed'))
        this.#watchers.push(w)
      } catch (err) {
        this.#logger.warn(
          { dir, reason: err instanceof Error ? err.message : String(err) },
          'cannot watch the client certificate directory; reload with SIGHUP',
        )
      }
    }
  }

  async close(): Promise<void> {
    clearTimeout(this.#debounce)
    for (const w of this.#watchers.splice(0)) w.close()
    await Promise.all([this.#agent?.close().catch(() => {}), this.#caAgent?.close().catch(() => {})])
    this.#agent = undefined
    this.#caAgent = undefined
  }
}
