// The dev IdP's pages: plain HTML, no external resources, no scripts,
// everything echoed is escaped.

import type { ServerResponse } from 'node:http'
import type { Interaction } from 'oidc-provider'
import type { LogoutFrame } from './frontchannel.js'

const CSS = `
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:grid;place-items:center;background:#f3f4f6;color:#111827;
font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{width:min(380px,92vw);background:#fff;border-radius:12px;padding:28px 28px 20px;
box-shadow:0 1px 3px rgba(0,0,0,.08),0 8px 24px rgba(0,0,0,.06)}
h1{font-size:1.25rem;margin:0 0 4px}
.brand{font-size:.8rem;letter-spacing:.06em;text-transform:uppercase;color:#6b7280;margin:0 0 16px}
label{display:block;font-weight:600;font-size:.9rem;margin:14px 0 4px}
input{width:100%;padding:9px 11px;border:1px solid #d1d5db;border-radius:8px;font:inherit}
input:focus{outline:2px solid #2563eb;outline-offset:1px}
.actions{display:flex;gap:8px;margin-top:20px}
button{flex:1;padding:10px 12px;border-radius:8px;border:1px solid transparent;font:inherit;font-weight:600;cursor:pointer}
.primary{background:#2563eb;color:#fff}.primary:hover{background:#1d4ed8}
.secondary{background:#fff;color:#374151;border-color:#d1d5db}.secondary:hover{background:#f9fafb}
.hint{font-size:.85rem;color:#4b5563;background:#eff6ff;border-radius:8px;padding:8px 10px;margin:0}
.error{font-size:.9rem;color:#991b1b;background:#fef2f2;border-radius:8px;padding:8px 10px;margin:12px 0 0}
.meta{font-size:.8rem;color:#6b7280;margin:16px 0 0;word-break:break-word}
`

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${escapeHtml(title)} · tokenward dev IdP</title>
<style>${CSS}</style>
</head>
<body>
<main>
<p class="brand">tokenward dev IdP</p>
${body}
</main>
</body>
</html>
`
}

/** A request parameter as the provider parsed it: a string, or nothing to show. */
function stringParam(value: unknown): string {
  return typeof value === 'string' ? value : ''
}

export function loginPage(details: Interaction, password: string, error?: string, username = ''): string {
  const uid = escapeHtml(details.uid)
  const clientId = escapeHtml(stringParam(details.params.client_id))
  const scope = escapeHtml(stringParam(details.params.scope))
  return page(
    'Sign in',
    `<h1>Sign in</h1>
<p class="hint">Any username, password <strong>${escapeHtml(password)}</strong>.</p>
${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${uid}/login">
<label for="username">Username</label>
<input id="username" name="username" autocomplete="username" required autofocus value="${escapeHtml(username)}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<!-- Sign in first: Enter submits with the first submit button (HTML implicit submission). -->
<div class="actions">
<button class="primary" type="submit">Sign in</button>
<button class="secondary" type="submit" formaction="/interaction/${uid}/abort" formnovalidate>Cancel</button>
</div>
</form>
<p class="meta">Application: ${clientId}<br>Scope: ${scope}</p>`,
  )
}

export function logoutPage(form: string): string {
  // `form` is oidc-provider's own hidden form (id op.logoutForm, with its
  // xsrf token); the buttons submit it from outside.
  return page(
    'Sign out',
    `<h1>Sign out?</h1>
<p>Do you want to sign out of the tokenward dev IdP?</p>
${form}
<div class="actions">
<button class="secondary" type="submit" form="op.logoutForm">Stay signed in</button>
<button class="primary" type="submit" form="op.logoutForm" name="logout" value="yes" autofocus>Yes, sign me out</button>
</div>`,
  )
}

/**
 * "Signed out", with one iframe per relying party to notify by front-channel
 * logout (OpenID Connect Front-Channel Logout 1.0 §4; demo/idp/frontchannel.ts).
 */
export function loggedOutPage(frames: readonly LogoutFrame[] = []): string {
  const notified = frames
    .map(
      (f) =>
        `<iframe src="${escapeHtml(f.url)}" title="Signing out of ${escapeHtml(f.clientId)}" data-client="${escapeHtml(f.clientId)}" width="240" height="40" style="border:0"></iframe>`,
    )
    .join('\n')
  return page(
    'Signed out',
    `<h1>Signed out</h1>\n<p>You are signed out of the tokenward dev IdP. You can close this tab.</p>${notified ? `\n${notified}` : ''}`,
  )
}

/**
 * The "signed out" page's policy: like sendHtml's, plus frame-src for the
 * relying parties' front-channel logout URIs (their origins only).
 */
export function loggedOutCsp(frames: readonly LogoutFrame[]): string {
  const origins = [...new Set(frames.map((f) => new URL(f.url).origin))]
  const frameSrc = origins.length > 0 ? `; frame-src ${origins.join(' ')}` : ''
  return `default-src 'none'; style-src 'unsafe-inline'${frameSrc}; frame-ancestors 'none'; base-uri 'none'`
}

export function errorPage(title: string, message: string): string {
  return page(title, `<h1>${escapeHtml(title)}</h1>\n${message ? `<p>${escapeHtml(message)}</p>` : ''}`)
}

export function sendHtml(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, {
    'Content-Type': 'text/html; charset=utf-8',
    'Cache-Control': 'no-store',
    // No scripts on these pages at all; inline <style> only. frame-ancestors
    // against clickjacking of the login form. No form-action: Chrome applies
    // it to the redirect chain back to the client, which is another origin.
    'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
    'X-Content-Type-Options': 'nosniff',
  })
  res.end(html)
}

function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}
