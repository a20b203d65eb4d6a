const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => ESCAPES[ch]!)
}

/** A small, self-contained page for failures a person sees in the browser (login, callback). */
export function errorPage(title: string, message: string, home = '/'): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}a{color:#0b5fff}</style></head>
<body><h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p><p><a href="${escapeHtml(home)}">Back to the application</a></p></body></html>`
}

/**
 * The answer to a front-channel logout (routes/frontchannel.ts): shown, if at
 * all, inside the IdP's logout page. No script, no link, no resource to load,
 * and the same text whether or not a session ended.
 */
export function frontchannelPage(): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Signed out</title>
<style>body{font:14px/1.4 system-ui,sans-serif;margin:.5rem;color:#222}</style></head>
<body><p>Signed out of this application.</p></body></html>`
}
