// The dev IdP's interactions: the login form and automatic consent.

import type { IncomingMessage, ServerResponse } from 'node:http'
import { errors, type Interaction, type Provider } from 'oidc-provider'
import { checkCredentials, type DevIdpLoginResult } from './accounts.js'
import { errorPage, loginPage, sendHtml } from './pages.js'

export async function handleInteraction(
  provider: Provider,
  password: string,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  loginResult?: (username: string) => DevIdpLoginResult | undefined,
): Promise<void> {
  const match = /^\/interaction\/([\w-]+)(\/login|\/abort)?$/.exec(path)
  if (!match) return sendHtml(res, 404, errorPage('Not found', ''))
  const action = match[2] ?? ''
  const allowed = action === '' ? 'GET' : 'POST'
  if (req.method !== allowed) {
    res.setHeader('Allow', allowed)
    return sendHtml(res, 405, errorPage('Method not allowed', ''))
  }

  let details: Interaction
  try {
    details = await provider.interactionDetails(req, res)
  } catch (err) {
    if (err instanceof errors.SessionNotFound) {
      return sendHtml(
        res,
        400,
        errorPage('This sign-in has expired', 'It was completed already or took too long. Go back to the application and sign in again.'),
      )
    }
    throw err
  }
  if (details.uid !== match[1]) return sendHtml(res, 400, errorPage('Sign-in mismatch', 'Start over from the application.'))

  const { prompt } = details
  if (prompt.name === 'consent') {
    // First-party dev IdP: consent is implied, never shown.
    const grantId = await grantConsent(provider, details)
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true })
  }
  if (prompt.name !== 'login') {
    return sendHtml(res, 500, errorPage('Unsupported prompt', `The dev IdP cannot handle "${prompt.name}".`))
  }

  if (action === '') return sendHtml(res, 200, loginPage(details, password))

  if (action === '/abort') {
    return provider.interactionFinished(
      req,
      res,
      {
        error: 'access_denied',
        error_description: 'End-user cancelled the sign-in',
      },
      { mergeWithLastSubmission: false },
    )
  }

  const form = await readForm(req)
  if (!form) return sendHtml(res, 413, errorPage('Request too large', ''))
  const username = (form.get('username') ?? '').trim()
  const problem = checkCredentials(username, form.get('password') ?? '', password)
  if (problem) return sendHtml(res, 200, loginPage(details, password, problem, username))
  return provider.interactionFinished(
    req,
    res,
    { login: { ...loginResult?.(username), accountId: username } },
    { mergeWithLastSubmission: false },
  )
}

async function grantConsent(provider: Provider, details: Interaction): Promise<string> {
  const accountId = details.session?.accountId
  const clientId = details.params.client_id
  if (!accountId || typeof clientId !== 'string') throw new Error('consent prompt without account or client')
  const grant = (details.grantId ? await provider.Grant.find(details.grantId) : undefined) ?? new provider.Grant({ accountId, clientId })
  const missing = details.prompt.details as {
    missingOIDCScope?: string[]
    missingOIDCClaims?: string[]
    missingResourceScopes?: Record<string, string[]>
  }
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '))
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims)
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '))
  }
  return grant.save()
}

async function readForm(req: IncomingMessage, limit = 16 * 1024): Promise<URLSearchParams | undefined> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    const buffer = chunk as Buffer
    size += buffer.length
    if (size > limit) return undefined
    chunks.push(buffer)
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'))
}
