// The dev IdP (demo/idp.ts) with what only tests ask of it: a token endpoint
// that can be made slow. The demo and the benchmarks use the dev IdP as it is.
import { routePath, startDevIdp, type DevIdp, type DevIdpOptions } from '../../demo/idp.js'

export interface TestIdp extends DevIdp {
  /**
   * Holds every token request this long before oidc-provider sees it (0: not
   * at all). It is counted on arrival; the refresh token is rotated only after
   * the delay, like a slow IdP under load.
   */
  setTokenEndpointDelay(ms: number): void
}

export async function startTestIdp(options: Omit<DevIdpOptions, 'intercept'> = {}): Promise<TestIdp> {
  // The token path is known once the provider exists; nothing is delayed before that.
  const token = { path: '', delayMs: 0 }
  const idp = await startDevIdp({
    ...options,
    intercept(req, _res, pass) {
      const delay = token.delayMs
      if (delay > 0 && req.method === 'POST' && (req.url ?? '/').split('?')[0] === token.path) {
        setTimeout(() => {
          if (!req.socket.destroyed) pass()
        }, delay)
        return
      }
      pass()
    },
  })
  token.path = routePath(idp.provider, 'token')
  return Object.assign(idp, {
    setTokenEndpointDelay(ms: number) {
      token.delayMs = Math.max(0, ms)
    },
  })
}
