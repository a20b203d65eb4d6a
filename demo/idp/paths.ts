// Where the dev IdP serves an oidc-provider endpoint.

import type Provider from 'oidc-provider'

/**
 * oidc-provider prefixes its paths with the issuer's path (its mount path),
 * but the dev IdP's listener serves it at the root, whatever the issuer's
 * path (demo/idp.ts, `issuer`).
 */
export function routePath(provider: Provider, name: Parameters<Provider['pathFor']>[0]): string {
  const mount = new URL(provider.issuer).pathname.replace(/\/$/, '')
  const path = provider.pathFor(name)
  return path.startsWith(mount) ? path.slice(mount.length) : path
}

/** routePath, or undefined for a feature that is off (oidc-provider has no route for it). */
export function optionalRoutePath(provider: Provider, name: Parameters<Provider['pathFor']>[0]): string | undefined {
  try {
    return routePath(provider, name)
  } catch {
    return undefined
  }
}
