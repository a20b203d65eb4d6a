import { randomBytes } from 'node:crypto'
import { loadConfig } from '../../src/config.js'
import { ConfigError } from '../../src/errors.js'

/** The variables without a default (BFF_CLIENT_SECRET: unless private_key_jwt; docs/configuration.md). */
export const REQUIRED_VARIABLES: readonly string[] = [
  'BFF_PUBLIC_URL',
  'BFF_ISSUER',
  'BFF_CLIENT_ID',
  'BFF_CLIENT_SECRET',
  'BFF_ROUTES',
  'BFF_COOKIE_SECRET',
  'BFF_ENCRYPTION_KEYS',
]

/** A valid environment for loadConfig, with throwaway secrets generated per call. */
export function testEnv(overrides: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    BFF_PUBLIC_URL: 'http://localhost:3000',
    BFF_ISSUER: 'http://127.0.0.1:4000',
    BFF_CLIENT_ID: 'tokenward-test',
    BFF_CLIENT_SECRET: randomBytes(24).toString('base64url'),
    BFF_ROUTES: JSON.stringify([{ prefix: '/api', upstream: 'http://127.0.0.1:5000/v1', token: 'user' }]),
    BFF_COOKIE_SECRET: randomBytes(32).toString('base64url'),
    BFF_ENCRYPTION_KEYS: `k1:${randomBytes(32).toString('base64')}`,
    BFF_ALLOW_HTTP: 'true',
    BFF_LOG_LEVEL: 'silent',
    ...overrides,
  }
}

/** The problems loadConfig reports for `env`, or none when it accepts it. */
export function configProblems(env: Record<string, string | undefined>): string[] {
  try {
    loadConfig(env)
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems]
    throw err
  }
  return []
}
