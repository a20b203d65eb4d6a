import type { RefreshLeases } from '../types.js'
import type { MemoryKeyspace } from './keyspace.js'

export class MemoryRefreshLeases implements RefreshLeases {
  readonly #k: MemoryKeyspace

  constructor(keyspace: MemoryKeyspace) {
    this.#k = keyspace
  }

  async acquire(sid: string, token: string, leaseMs: number): Promise<{ acquired: boolean; journal: number | null }> {
    const k = this.#k
    const held = k.live(k.locks, sid)
    if (!held) k.locks.set(sid, { value: token, expiresAt: k.now() + leaseMs })
    return { acquired: !held, journal: k.live(k.journals, sid)?.value ?? null }
  }

  async renew(sid: string, token: string, leaseMs: number): Promise<boolean> {
    const k = this.#k
    const held = k.live(k.locks, sid)
    if (held?.value !== token) return false
    held.expiresAt = k.now() + leaseMs
    return true
  }

  async release(sid: string, token: string): Promise<void> {
    const k = this.#k
    if (k.live(k.locks, sid)?.value === token) k.locks.delete(sid)
  }

  async writeJournal(sid: string, token: string, version: number, ttlMs: number): Promise<boolean> {
    const k = this.#k
    if (k.live(k.locks, sid)?.value !== token) return false
    k.journals.set(sid, { value: version, expiresAt: k.now() + Math.max(1, Math.floor(ttlMs)) })
    return true
  }

  async clearJournal(sid: string): Promise<void> {
    this.#k.journals.delete(sid)
  }
}
