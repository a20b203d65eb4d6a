// tokenward demo SPA: plain ES module, no framework. Everything it asks of
// tokenward goes through tokenward's client helper (`tokenward/client`, built
// from src/client/ and served here as /client.js), which adds the X-CSRF
// header and same-origin credentials and listens for session-end events.
// The SPA never handles a token: the session lives in an HTTP-only cookie
// that tokenward sets, and API calls go through tokenward's proxy on this
// origin. Nothing is kept in localStorage or sessionStorage.
// All text reaches the page through textContent, never innerHTML, so claims
// such as a name with markup in it stay text.

import { BffRequestError, createBff } from '/client.js'

const SESSION_ENDED = 'Your session has ended. Sign in again to continue.'

const bff = createBff({
  // The demo shows its signed-out view with a button rather than leaving for
  // the IdP by itself, which is what the helper does by default.
  onLoginRequired: () => showSignedOut(SESSION_ENDED),
})

/** What to tell the user when tokenward reports the session gone (GET /auth/events). */
const ENDED_BECAUSE = new Map([
  ['logout', 'You signed out in another tab or window.'],
  ['backchannel_logout', 'You were signed out at the identity provider.'],
  ['frontchannel_logout', 'You were signed out at the identity provider.'],
  ['session_revoked', 'An administrator ended your session.'],
  ['session_expired', 'Your session expired. Sign in again to continue.'],
  ['refresh_token_rejected', 'The identity provider no longer accepts this sign-in. Sign in again to continue.'],
])

const $ = (selector) => document.querySelector(selector)
const $$ = (selector) => [...document.querySelectorAll(selector)]

const state = {
  session: null,
  lastIat: null,
  busy: false,
  lastEndCheck: 0,
  /** Unsubscribes from session-end events; set while signed in. */
  stopWatching: null,
}

async function readJson(res) {
  if (!(res.headers.get('content-type') ?? '').includes('application/json')) return null
  return res.json().catch(() => null)
}

// ---------------------------------------------------------------------------
// Session

async function loadSession(options) {
  try {
    const session = await bff.session(options)
    if (session) showSignedIn(session)
    else showSignedOut()
  } catch (err) {
    showSignedOut()
    showError(describeError(err))
  }
}

function showSignedIn(session) {
  state.session = session
  const claims = session.claims
  setFields({
    name: claims.name ?? claims.preferred_username ?? session.sub,
    email: claims.email ?? '—',
    sub: session.sub,
    sid: session.sid,
  })
  for (const key of ['expiresAt', 'idleExpiresAt']) {
    for (const el of $$(`[data-time="${key}"]`)) {
      el.textContent = formatTime(session[key])
      el.dateTime = new Date(session[key] * 1000).toISOString()
    }
  }
  $('#who').textContent = claims.email ?? session.sub
  $('#who').hidden = false
  $('#status').textContent = 'Signed in.'
  $('#signed-out').hidden = true
  $('#signed-in').hidden = false
  updateCountdowns()
  // A logout in another tab, a back-channel logout, an administrator's revoke
  // or expiry reaches this tab at once, without polling.
  state.stopWatching ??= bff.onSessionEnded(({ reason }) => {
    state.stopWatching = null
    showSignedOut(ENDED_BECAUSE.get(reason) ?? SESSION_ENDED)
  })
}

function showSignedOut(message) {
  state.stopWatching?.()
  state.stopWatching = null
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
  // Back to this page after the IdP; tokenward accepts only a same-origin path.
  bff.login()
}

async function signOut() {
  // tokenward ends the session, then the helper navigates to the IdP's
  // end-session page (its URL carries no token), which ends the IdP session
  // too and comes back here signed out.
  await busy(() => bff.logout())
}

// ---------------------------------------------------------------------------
// API calls through tokenward's proxy

async function callApi(path) {
  await busy(async () => {
    const started = new Date()
    const res = await bff.fetch(`/api${path}`, { headers: { Accept: 'application/json' } })
    const body = await readJson(res)
    log(`GET /api${path} → ${res.status}${body?.error ? ` ${body.error}` : ''}`, started)
    // A 401 login_required already went to onLoginRequired: signed out.
    if (!state.session) return
    hideBanners()
    showResult(res, body)
    if (!res.ok) showError(describeFailure(res, body))
    // The call slid the idle timeout: show the new one, without sliding it again.
    const session = await bff.session({ slide: false })
    if (session) showSignedIn(session)
    else showSignedOut(SESSION_ENDED)
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
  // The API reports when the access token it got was issued: a newer one than
  // last time means tokenward refreshed it behind the SPA's back.
  const refreshed = typeof data.iat === 'number' && state.lastIat !== null && data.iat !== state.lastIat
  $('#refreshed').hidden = !refreshed
  if (refreshed) log(`tokenward refreshed the access token (issued ${formatClock(data.iat)})`)
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
  // (at most every 10 s, in case the two clocks disagree, or another tab's
  // API calls slid the idle timeout), without sliding it.
  if (ended && !state.busy && Date.now() - state.lastEndCheck > 10_000) {
    state.lastEndCheck = Date.now()
    loadSession({ slide: false })
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
  } catch (err) {
    showError(describeError(err))
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

function describeError(err) {
  if (err instanceof BffRequestError) {
    return `${err.message}${err.retryAfter === undefined ? '' : ` (retry in ${err.retryAfter} s)`}`
  }
  return 'The request failed: tokenward cannot be reached. Is `npm run demo` still running?'
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

function formatTime(epochSeconds) {
  return new Date(epochSeconds * 1000).toLocaleString()
}

function formatClock(epochSeconds) {
  return new Date(epochSeconds * 1000).toLocaleTimeString()
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
// A page restored from the back/forward cache shows what it showed when it was
// left; after a sign-out that would be a signed-in view. Ask the server again,
// on a fresh event stream (the old one may have been dropped meanwhile).
addEventListener('pageshow', (event) => {
  if (!event.persisted) return
  state.stopWatching?.()
  state.stopWatching = null
  loadSession()
})
loadSession()
