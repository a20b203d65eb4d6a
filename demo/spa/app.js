// tokenward demo SPA: plain ES module, no build step, no framework.
// It never handles a token: the session lives in an HTTP-only cookie that
// tokenward sets, and API calls go through tokenward's proxy on this origin.
// Nothing is kept in localStorage or sessionStorage.
// All text reaches the page through textContent, never innerHTML, so claims
// such as a name with markup in it stay text.

// tokenward refuses state-changing and proxied requests without this header:
// a cross-site form or <img> cannot add it, and a cross-site fetch that adds
// it needs a CORS preflight that tokenward never grants.
const CSRF_HEADERS = { 'X-CSRF': '1' }

const $ = (selector) => document.querySelector(selector)
const $$ = (selector) => [...document.querySelectorAll(selector)]

const state = {
  session: null,
  lastIat: null,
  busy: false,
  lastEndCheck: 0,
}

async function request(path, init = {}) {
  const res = await fetch(path, {
    credentials: 'same-origin',
    cache: 'no-store',
    ...init,
    headers: { Accept: 'application/json', ...CSRF_HEADERS, ...init.headers },
  })
  let body = null
  if ((res.headers.get('content-type') ?? '').includes('application/json')) {
    body = await res.json().catch(() => null)
  }
  return { res, body }
}

// ---------------------------------------------------------------------------
// Session

async function loadSession() {
  try {
    const { res, body } = await request('/auth/session')
    if (res.ok && body?.authenticated) return showSignedIn(body)
    if (res.status === 401) return showSignedOut()
    showSignedOut()
    showError(describeFailure(res, body))
  } catch {
    showSignedOut()
    showError('tokenward cannot be reached. Is `npm run demo` still running?')
  }
}

function showSignedIn(session) {
  state.session = session
  const claims = session.claims ?? {}
  setFields({
    name: claims.name ?? claims.preferred_username ?? session.sub,
    email: claims.email ?? '—',
    sub: session.sub,
    sid: session.sid ?? '—',
  })
  for (const key of ['expiresAt', 'idleExpiresAt']) {
    for (const el of $$(`[data-time="${key}"]`)) {
      const at = session[key]
      el.textContent = typeof at === 'number' ? formatTime(at) : '—'
      if (typeof at === 'number') el.dateTime = new Date(at * 1000).toISOString()
    }
  }
  $('#who').textContent = claims.email ?? session.sub
  $('#who').hidden = false
  $('#status').textContent = 'Signed in.'
  $('#signed-out').hidden = true
  $('#signed-in').hidden = false
  updateCountdowns()
}

function showSignedOut(message) {
  state.session = null
  state.lastIat = null
  $('#who').hidden = true
  $('#status').textContent = 'Signed out.'
  $('#signed-in').hidden = true
  $('#signed-out').hidden = false
  hideBanners()
  if (message) showNotice(message)
}

function signIn() {
  // tokenward accepts only a same-origin relative path as returnTo.
  location.assign(`/auth/login?returnTo=${encodeURIComponent('/')}`)
}

async function signOut() {
  await busy(async () => {
    const { res, body } = await request('/auth/logout', { method: 'POST' })
    if (res.ok && typeof body?.redirectTo === 'string' && isHttpUrl(body.redirectTo)) {
      // The IdP's end-session page (or the post-logout page) ends the IdP
      // session too; the URL carries no token.
      location.assign(body.redirectTo)
      return
    }
    if (res.status === 401) return showSignedOut('You were already signed out.')
    showError(describeFailure(res, body))
  })
}

// ---------------------------------------------------------------------------
// API calls through tokenward's proxy

async function callApi(path) {
  await busy(async () => {
    const started = new Date()
    const { res, body } = await request(`/api${path}`)
    log(`GET /api${path} → ${res.status}${body?.error ? ` ${body.error}` : ''}`, started)
    if (res.status === 401 && body?.error === 'login_required') {
      return showSignedOut('Your session has ended. Sign in again to continue.')
    }
    hideBanners()
    showResult(res, body)
    if (!res.ok) showError(describeFailure(res, body))
    // The call moved the idle timeout; show the new one.
    const session = await request('/auth/session')
    if (session.res.ok && session.body?.authenticated) showSignedIn(session.body)
    else if (session.res.status === 401) showSignedOut('Your session has ended. Sign in again to continue.')
  })
}

function showResult(res, body) {
  $('#result-empty').hidden = true
  $('#result').hidden = false
  const data = body ?? {}
  setResult({
    status: `${res.status} ${res.statusText}`.trim(),
    message: data.message ?? (Array.isArray(data.items) ? `${data.items.length} items` : '—'),
    scope: data.scope === undefined ? '—' : data.scope || '(none)',
    iat: typeof data.iat === 'number' ? `${formatTime(data.iat)} (${ago(data.iat)})` : '—',
    exp: typeof data.exp === 'number' ? formatTime(data.exp) : '—',
    calledAt: data.calledAt ? new Date(data.calledAt).toLocaleTimeString() : '—',
  })
  const refreshed = typeof data.iat === 'number' && state.lastIat !== null && data.iat !== state.lastIat
  $('#refreshed').hidden = !refreshed
  if (typeof data.iat === 'number') state.lastIat = data.iat

  const list = $('#items')
  list.replaceChildren()
  list.hidden = !Array.isArray(data.items)
  for (const item of data.items ?? []) {
    const li = document.createElement('li')
    li.textContent = `${item.name} — ${Number(item.price).toFixed(2)}`
    list.append(li)
  }
  $('#raw').textContent = JSON.stringify(body, null, 2) ?? ''
}

// ---------------------------------------------------------------------------
// Countdowns

function updateCountdowns() {
  const session = state.session
  if (!session) return
  const now = Date.now() / 1000
  let ended = false
  for (const key of ['expiresAt', 'idleExpiresAt']) {
    const at = session[key]
    const left = typeof at === 'number' ? at - now : NaN
    if (left <= 0) ended = true
    for (const el of $$(`[data-countdown="${key}"]`)) {
      el.textContent = Number.isNaN(left) ? '' : left > 0 ? `in ${duration(left)}` : 'ended'
      el.classList.toggle('soon', left > 0 && left < 120)
    }
  }
  // The server is the judge: ask it when the clock says the session is over
  // (at most every 10 s, in case the two clocks disagree).
  if (ended && !state.busy && Date.now() - state.lastEndCheck > 10_000) {
    state.lastEndCheck = Date.now()
    loadSession()
// A page restored from the back/forward cache shows what it showed when it was
// left; after a sign-out that would be a signed-in view. Ask the server again.
addEventListener('pageshow', (event) => {
  if (event.persisted) loadSession()
})
  }
}

// ---------------------------------------------------------------------------
// Helpers

async function busy(task) {
  if (state.busy) return
  state.busy = true
  for (const button of $$('button')) button.disabled = true
  try {
    await task()
  } catch {
    showError('The request failed: tokenward cannot be reached.')
  } finally {
    state.busy = false
    for (const button of $$('button')) button.disabled = false
  }
}

function setFields(values) {
  for (const [key, value] of Object.entries(values)) {
    for (const el of $$(`[data-field="${key}"]`)) el.textContent = String(value)
  }
}

function setResult(values) {
  for (const [key, value] of Object.entries(values)) {
    for (const el of $$(`[data-result="${key}"]`)) el.textContent = String(value)
  }
}

function describeFailure(res, body) {
  const code = body?.error ? ` ${body.error}` : ''
  const message = body?.message ? `: ${body.message}` : ''
  const retry = res.headers.get('retry-after')
  return `${res.status}${code}${message}${retry ? ` (retry in ${retry} s)` : ''}`
}

function showError(text) {
  $('#error').textContent = text
  $('#error').hidden = false
}

function showNotice(text) {
  $('#notice').textContent = text
  $('#notice').hidden = false
}

function hideBanners() {
  $('#error').hidden = true
  $('#notice').hidden = true
}

function log(text, at = new Date()) {
  const li = document.createElement('li')
  const time = document.createElement('time')
  time.dateTime = at.toISOString()
  time.textContent = at.toLocaleTimeString()
  li.append(time, ` ${text}`)
  const list = $('#log')
  list.prepend(li)
  while (list.children.length > 20) list.lastElementChild.remove()
}

function isHttpUrl(value) {
  try {
    const { protocol } = new URL(value, location.href)
    return protocol === 'https:' || protocol === 'http:'
  } catch {
    return false
  }
}

function formatTime(epochSeconds) {
  return new Date(epochSeconds * 1000).toLocaleString()
}

function ago(epochSeconds) {
  const seconds = Math.max(0, Math.round(Date.now() / 1000 - epochSeconds))
  return seconds < 2 ? 'just now' : `${duration(seconds)} ago`
}

function duration(totalSeconds) {
  const s = Math.floor(totalSeconds)
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const parts = h ? [`${h}h`, `${m}m`] : m ? [`${m}m`] : []
  return [...parts, `${s % 60}s`].join(' ')
}

// ---------------------------------------------------------------------------

$('#sign-in').addEventListener('click', signIn)
$('#sign-out').addEventListener('click', signOut)
$('#call-api').addEventListener('click', () => callApi('/hello'))
$('#load-items').addEventListener('click', () => callApi('/items'))
setInterval(updateCountdowns, 1000)
loadSession()
