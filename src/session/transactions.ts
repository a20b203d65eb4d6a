import { createHash } from 'node:crypto'
import { DecryptError, type Keyring } from '../crypto/keyring.js'
import type { TransactionRecords } from '../store/types.js'

/** What a login needs to remember between /auth/login and /auth/callback. */
export interface LoginTransaction {
  readonly codeVerifier: string
  readonly nonce: string
  readonly returnTo: string
  /** Epoch ms. */
  readonly createdAt: number
  /** prompt=none: an IdP answer that the user must act is sent back to the app, not shown as a failure. */
  readonly silent?: boolean
  /** The acr_values the authorization request effectively asked for; the ID token's `acr` must be one of them. */
  readonly acrValues?: readonly string[]
  /** The max_age (seconds) the authorization request effectively asked for; `auth_time` must meet it. */
  readonly maxAge?: number
}

/** Transactions live at most 10 minutes (security model S2). */
export const TRANSACTION_TTL_SECONDS = 600

/**
 * Login transactions, keyed by the browser's transaction handle and the `state`,
 * so one transaction cookie serves several tabs logging in at once and cannot pile
 * up, while each state is bound to the browser that started it (RFC 9700 §4.7) and
 * can be redeemed once only (§4.2.4).
 */
export class TransactionStore {
  readonly #records: TransactionRecords
  readonly #keyring: Keyring

  constructor(records: TransactionRecords, keyring: Keyring) {
    this.#records = records
    this.#keyring = keyring
  }

  #id(handle: string, state: string): string {
    return createHash('sha256').update('tokenward/tx\0').update(handle).update('\0').update(state).digest('base64url')
  }

  async put(handle: string, state: string, tx: LoginTransaction): Promise<void> {
    const id = this.#id(handle, state)
    const sealed = this.#keyring.seal(Buffer.from(JSON.stringify(tx)), Buffer.from(`tokenward/tx\0${id}`))
    await this.#records.put(id, sealed, TRANSACTION_TTL_SECONDS * 1000)
  }

  /** Returns and deletes the transaction; null when unknown, used, expired or undecryptable. */
  async take(handle: string, state: string, now: number): Promise<LoginTransaction | null> {
    const id = this.#id(handle, state)
    const sealed = await this.#records.take(id)
    if (!sealed) return null
    try {
      const tx = JSON.parse(this.#keyring.open(sealed, Buffer.from(`tokenward/tx\0${id}`)).toString()) as LoginTransaction
      return now - tx.createdAt <= TRANSACTION_TTL_SECONDS * 1000 ? tx : null
    } catch (err) {
      if (err instanceof DecryptError || err instanceof SyntaxError) return null
      throw err
    }
  }
}
