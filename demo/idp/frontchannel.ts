// OpenID Connect Front-Channel Logout 1.0 for the dev IdP. oidc-provider 9 has
// no such feature, so it is built here from what it does have: clients may
// register `frontchannel_logout_uri` (extra client metadata), the logout
// confirmation (rpInitiatedLogout.logoutSource) notes which clients the IdP
// session has and their `sid`s, the confirmation's success event picks the
// clients actually logged out, and the "signed out" page
// (postLogoutSuccessSource) renders one iframe per client (§2, §4).
//
// Limitation: when the logout names a post_logout_redirect_uri, oidc-provider
// redirects straight to it and no page of the IdP is shown, so no iframe is
// rendered. Logging out at the IdP itself (its end-session endpoint without a
// redirect) shows the page.

import { randomBytes } from 'node:crypto'
import { errors, type Configuration, type KoaContextWithOIDC, type Provider } from 'oidc-provider'

/** One relying party to notify: the iframe's src. */
export interface LogoutFrame {
  readonly clientId: string
  readonly url: string
}

const PROPERTIES = ['frontchannel_logout_uri', 'frontchannel_logout_session_required']
const COOKIE = 'devidp.frontchannel'
/** Logouts under way at once; the oldest are forgotten beyond this (bounded memory). */
const MAX_PENDING = 1000

function remember<V>(map: Map<string, V>, key: string, value: V): void {
  if (map.size >= MAX_PENDING) map.delete(map.keys().next().value!)
  map.set(key, value)
}

export class FrontchannelLogout {
  /** The xsrf secret of a shown logout confirmation → the frames of every client of that IdP session. */
  readonly #offered = new Map<string, LogoutFrame[]>()
  /** A cookie value set on the confirmation's redirect → the frames the "signed out" page renders. */
  readonly #due = new Map<string, LogoutFrame[]>()

  /** Accepts the client metadata (Front-Channel Logout 1.0 §2) and advertises the feature (§3). */
  configure(configuration: Configuration): void {
    const extra = configuration.extraClientMetadata ?? {}
    const previous = extra.validator
    configuration.extraClientMetadata = {
      ...extra,
      properties: [...(extra.properties ?? []), ...PROPERTIES],
      validator(ctx, key, value, metadata) {
        if (key === 'frontchannel_logout_uri' && value !== undefined) {
          const url = typeof value === 'string' && URL.canParse(value) ? new URL(value) : undefined
          // §2: an absolute http(s) URI; no fragment.
          if (!url || !/^https?:$/.test(url.protocol) || url.hash) {
            throw new errors.InvalidClientMetadata('frontchannel_logout_uri must be an absolute http(s) URI without a fragment')
          }
        }
        if (key === 'frontchannel_logout_session_required' && value !== undefined && typeof value !== 'boolean') {
          throw new errors.InvalidClientMetadata('frontchannel_logout_session_required must be a boolean')
        }
        previous?.(ctx, key, value, metadata)
      },
    }
    configuration.discovery = {
      ...configuration.discovery,
      frontchannel_logout_supported: true,
      frontchannel_logout_session_supported: true,
    }
  }

  /** Called while the logout confirmation is shown: which clients the session has, with their iframe URLs. */
  async offer(ctx: KoaContextWithOIDC): Promise<void> {
    const session = ctx.oidc.session
    const secret = session?.state?.secret
    if (!session || typeof secret !== 'string') return
    const frames: LogoutFrame[] = []
    for (const clientId of Object.keys(session.authorizations ?? {})) {
      const client = await ctx.oidc.provider.Client.find(clientId).catch(() => undefined)
      const metadata = client?.metadata() as Record<string, unknown> | undefined
      const uri = metadata?.frontchannel_logout_uri
      if (typeof uri !== 'string') continue
      const url = new URL(uri)
      const sid = session.sidFor(clientId)
      // §2: iss and sid are added when the client requires them.
      if (metadata?.frontchannel_logout_session_required === true && sid) {
        url.searchParams.set('iss', ctx.oidc.issuer)
        url.searchParams.set('sid', sid)
      }
      frames.push({ clientId, url: url.href })
    }
    remember(this.#offered, secret, frames)
  }

  /**
   * Wires the feature into a provider: ID tokens carry `sid` for clients that
   * require it (§3; oidc-provider adds it only for back-channel clients), and
   * a confirmed logout (end_session.success) keeps the frames of the clients it
   * ended for the next page.
   */
  attach(provider: Provider): void {
    // Each Provider has a Client class of its own, so this touches only this IdP.
    const proto = provider.Client.prototype as unknown as { includeSid(): boolean; metadata(): Record<string, unknown> }
    // eslint-disable-next-line @typescript-eslint/unbound-method -- called below with the client as `this`
    const includeSid = proto.includeSid
    proto.includeSid = function (this: typeof proto) {
      const m = this.metadata()
      return (
        Boolean(includeSid.call(this)) || (typeof m.frontchannel_logout_uri === 'string' && m.frontchannel_logout_session_required === true)
      )
    }
    provider.on('end_session.success', (ctx: KoaContextWithOIDC) => {
      const xsrf = ctx.oidc.params?.xsrf
      const offered = typeof xsrf === 'string' ? this.#offered.get(xsrf) : undefined
      if (!offered || typeof xsrf !== 'string') return
      this.#offered.delete(xsrf)
      // "Yes, sign me out" ends every client's session; otherwise only the
      // client that asked for the logout (oidc-provider's end_session rules).
      const all = Boolean(ctx.oidc.params?.logout)
      const asking = ctx.oidc.client?.clientId
      const frames = offered.filter((f) => all || f.clientId === asking)
      if (frames.length === 0) return
      const id = randomBytes(16).toString('base64url')
      remember(this.#due, id, frames)
      ctx.cookies.set(COOKIE, id, { path: this.#successPath(ctx), httpOnly: true, sameSite: 'lax', maxAge: 60_000, overwrite: true })
    })
  }

  /** The frames the "signed out" page renders (once). */
  take(ctx: KoaContextWithOIDC): LogoutFrame[] {
    const id = ctx.cookies.get(COOKIE)
    if (!id) return []
    ctx.cookies.set(COOKIE, null, { path: this.#successPath(ctx), overwrite: true })
    const frames = this.#due.get(id) ?? []
    this.#due.delete(id)
    return frames
  }

  #successPath(ctx: KoaContextWithOIDC): string {
    return new URL(ctx.oidc.urlFor('end_session_success')).pathname
  }
}
