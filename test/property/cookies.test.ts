// Property tests for the cookie boundary: picking the session cookie out of a
// hostile Cookie header (security model S18) and unsealing its value.
// fast-check prints the seed and path of a failing run; replay it with
// FC_SEED=<seed> FC_PATH=<path> npx vitest run test/property.
import { randomBytes } from 'node:crypto'
import fc from 'fast-check'
import { Hono, type Context } from 'hono'
import { beforeAll, describe, expect, it } from 'vitest'
import { readCookie } from '../../src/http/headers.js'
import { CookieSealer } from '../../src/session/cookie.js'
import type { AppEnv } from '../../src/types.js'
import { runs } from '../helpers/fast-check.js'

const replay = {
  ...(process.env.FC_SEED ? { seed: Number(process.env.FC_SEED) } : {}),
  ...(process.env.FC_PATH ? { path: process.env.FC_PATH } : {}),
}

// The names tokenward reads: with and without the __Host- prefix, and the
// login-transaction cookie, whose name extends the session cookie's.
const NAMES = ['__Host-tokenward', '__Host-tokenward-tx', 'tokenward', 'tokenward-tx']

/** A context as @hono/node-server builds it: readCookie reads Node's parsed headers. */
function nodeContext(cookie: string | undefined): Context<AppEnv> {
  return { env: { incoming: { headers: cookie === undefined ? {} : { cookie } } } } as unknown as Context<AppEnv>
}

/** Names that merely look like `name`: longer, shorter, other case, padded. */
function lookalike(name: string): fc.Arbitrary<string> {
  return fc.constantFrom(
    `${name}x`,
    `x${name}`,
    `${name}-tx`,
    `_${name}`,
    `${name}_`,
    name.toLowerCase(),
    name.toUpperCase(),
    name.slice(0, -1),
    name.slice(1),
    `${name} `,
    `${name}\t`,
    `"${name}"`,
    `%${Buffer.from(name[0]!).toString('hex')}${name.slice(1)}`,
    name.replace('-', '_'),
    `${name}.`,
    `${name}[]`,
  )
}

const VALUE_UNITS = [
  'a',
  'Z',
  '0',
  '-',
  '_',
  '.',
  '~',
  '!',
  '#',
  '$',
  '%',
  '&',
  "'",
  '(',
  ')',
  '*',
  '+',
  '/',
  ':',
  '<',
  '=',
  '>',
  '?',
  '@',
  '[',
  ']',
  '^',
  '`',
  '{',
  '|',
  '}',
  ',',
  ' ',
  '"',
  '\\',
  'é',
  'ÿ',
  '%3B',
  '%20',
  'Fe26.2*',
  '~2',
  '__Host-tokenward=',
  'tokenward=',
]

/** A cookie value as sent, and the value a reader must return for it. */
const cookieValue = fc
  .tuple(fc.string({ unit: fc.constantFrom(...VALUE_UNITS), maxLength: 12 }), fc.boolean())
  .filter(([core]) => core === core.trim() && !core.startsWith('"') && !core.endsWith('"'))
  .map(([core, quoted]) => ({ sent: quoted ? `"${core}"` : core, expected: core }))

type Pair = { kind: 'cookie'; name: string; sent: string; expected: string } | { kind: 'junk'; text: string }

function pairs(name: string): fc.Arbitrary<Pair[]> {
  const cookieName = fc.oneof(
    { weight: 3, arbitrary: fc.constant(name) },
    // Leading spaces are separator whitespace: still the same name.
    { weight: 1, arbitrary: fc.constantFrom(` ${name}`, `  ${name}`) },
    { weight: 5, arbitrary: lookalike(name) },
    { weight: 2, arbitrary: fc.constantFrom(...NAMES) },
    { weight: 2, arbitrary: fc.stringMatching(/^[A-Za-z0-9_.-]{0,20}$/) },
  )
  const pair: fc.Arbitrary<Pair> = fc.oneof(
    { weight: 8, arbitrary: fc.tuple(cookieName, cookieValue).map(([n, v]): Pair => ({ kind: 'cookie', name: n, ...v })) },
    // Pairs without `=`, empty pairs and stray text.
    {
      weight: 1,
      arbitrary: fc.constantFrom('', ' ', name, `${name} `, 'x', '=', '==x', `=${name}=evil`).map((text): Pair => ({ kind: 'junk', text })),
    },
  )
  return fc.array(pair, { maxLength: 8 })
}

function render(list: readonly Pair[], separators: readonly string[]): string {
  return list
    .map((p, i) => `${i === 0 ? '' : separators[i % separators.length]}${p.kind === 'cookie' ? `${p.name}=${p.sent}` : p.text}`)
    .join('')
}

/** The brief's rule: the value of the first pair called exactly `name` (leading separator spaces aside). */
function expectedValue(list: readonly Pair[], name: string): string | undefined {
  for (const p of list) if (p.kind === 'cookie' && p.name.replace(/^ +/, '') === name) return p.expected
  return undefined
}

const header = fc
  .constantFrom(...NAMES)
  .chain((name) =>
    fc.tuple(fc.constant(name), pairs(name), fc.array(fc.constantFrom('; ', ';', ';  ', ' ; '), { minLength: 1, maxLength: 3 })),
  )

describe('readCookie over hostile Cookie headers (security model S18)', () => {
  it('returns exactly the first pair named N, never a lookalike name or text inside a value', () => {
    const RUNS = runs(20_000)
    let found = 0
    fc.assert(
      fc.property(header, ([name, list, seps]) => {
        const raw = render(list, seps)
        const expected = expectedValue(list, name)
        if (expected !== undefined) found++
        expect(readCookie(nodeContext(raw), name)).toBe(expected)
      }),
      { numRuns: RUNS, ...replay },
    )
    expect(found).toBeGreaterThan(RUNS / 10)
  })

  it('never throws on arbitrary header text and returns a piece of it without a separator', () => {
    const text = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 60 }),
      fc.string({ unit: fc.constantFrom('__Host-tokenward', '=', ';', ' ', '"', 'a', '\t'), maxLength: 20 }),
    )
    fc.assert(
      fc.property(fc.constantFrom(...NAMES), text, (name, raw) => {
        const v = readCookie(nodeContext(raw), name)
        if (v === undefined) return
        expect(raw).toContain(v)
        expect(v).not.toContain(';')
      }),
      { numRuns: runs(20_000), ...replay },
    )
  })

  it('gives the same answer through a Hono app without a socket (c.req.header fallback)', async () => {
    const app = new Hono<AppEnv>()
    app.get('/:name', (c) => c.json({ value: readCookie(c, c.req.param('name')) ?? null }))
    // fetch's Headers trim the whole value and refuse non-Latin-1: stay inside what it carries.
    const latin1 = header.filter(([, list, seps]) => /^[\x20-\x7e\xa0-\xff]*$/.test(render(list, seps)))
    await fc.assert(
      fc.asyncProperty(latin1, async ([name, list, seps]) => {
        const raw = render(list, seps)
        const res = await app.request(`/${encodeURIComponent(name)}`, { headers: raw.trim() ? { cookie: raw } : {} })
        const body = (await res.json()) as { value: string | null }
        expect(body.value ?? undefined).toBe(expectedValue(list, name))
      }),
      { numRuns: runs(2_000), ...replay },
    )
  })
})

describe('CookieSealer.unseal over forged and damaged seals', () => {
  const secretA = randomBytes(32).toString('base64url')
  const secretB = randomBytes(32).toString('base64url')
  const foreignSecret = randomBytes(32).toString('base64url')
  // Rotation: the first secret seals, both unseal.
  const sealer = new CookieSealer([secretA, secretB])
  const payload = { h: randomBytes(16).toString('base64url').slice(0, 22) }
  let genuine: string[] = []
  let foreign = ''

  beforeAll(async () => {
    genuine = [await sealer.seal(payload, 3600), await new CookieSealer([secretB]).seal(payload, 3600)]
    foreign = await new CookieSealer([foreignSecret]).seal(payload, 3600)
    // Unseal each genuine seal once, so the success cache holds them while their variants are tried.
    for (const g of genuine) expect(await sealer.unseal(g, 3600)).toEqual(payload)
    expect(await sealer.unseal(foreign, 3600)).toBeNull()
  })

  const CHARS = [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_*~.=+/ %', '\u0000', 'é']

  type Damage =
    | { op: 'flip'; at: number; to: string }
    | { op: 'truncate'; at: number }
    | { op: 'delete'; at: number; count: number }
    | { op: 'insert'; at: number; text: string }
    | { op: 'swapParts'; a: number; b: number }
    | { op: 'case' }

  const damage: fc.Arbitrary<Damage> = fc.oneof(
    fc.record({ op: fc.constant('flip' as const), at: fc.nat(), to: fc.constantFrom(...CHARS) }),
    fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
    fc.record({ op: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 8 }) }),
    fc.record({
      op: fc.constant('insert' as const),
      at: fc.nat(),
      text: fc.string({ unit: fc.constantFrom(...CHARS), minLength: 1, maxLength: 6 }),
    }),
    fc.record({ op: fc.constant('swapParts' as const), a: fc.nat(7), b: fc.nat(7) }),
    fc.constant({ op: 'case' as const }),
  )

  /** Damages a seal somewhere strictly inside it; appending is tested on its own below. */
  function apply(seal: string, d: Damage): string {
    switch (d.op) {
      case 'flip': {
        const i = d.at % seal.length
        return `${seal.slice(0, i)}${d.to}${seal.slice(i + 1)}`
      }
      case 'truncate':
        return seal.slice(0, d.at % seal.length)
      case 'delete': {
        const i = d.at % seal.length
        return `${seal.slice(0, i)}${seal.slice(i + d.count)}`
      }
      case 'insert': {
        // Before the last character, so that no insertion is an append in disguise.
        const i = d.at % Math.max(1, seal.length - 1)
        return `${seal.slice(0, i)}${d.text}${seal.slice(i)}`
      }
      case 'swapParts': {
        const parts = seal.split('*')
        const a = d.a % parts.length
        const b = d.b % parts.length
        ;[parts[a], parts[b]] = [parts[b]!, parts[a]!]
        return parts.join('*')
      }
      case 'case':
        return seal.replace(/[a-z]/, (c) => c.toUpperCase())
    }
  }

  it('returns null, without throwing, for every bit flip, truncation, deletion, insertion and reshuffle of a genuine seal', async () => {
    const RUNS = runs(5_000)
    let damaged = 0
    await fc.assert(
      fc.asyncProperty(fc.nat(1), fc.array(damage, { minLength: 1, maxLength: 3 }), async (which, ds) => {
        const original = genuine[which]!
        const value = ds.reduce(apply, original)
        if (value === original) return
        damaged++
        expect(await sealer.unseal(value, 3600)).toBeNull()
      }),
      { numRuns: RUNS, ...replay },
    )
    expect(damaged).toBeGreaterThan((RUNS * 4) / 5)
  })

  it('returns null for seals made with a secret it does not hold, and for arbitrary text', async () => {
    const text = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 80 }),
      fc.string({ unit: fc.constantFrom(...CHARS), maxLength: 300 }).map((s) => `Fe26.2*${s}`),
      fc
        .array(fc.string({ unit: fc.constantFrom(...CHARS), maxLength: 50 }), { minLength: 7, maxLength: 9 })
        .map((p) => `Fe26.2*${p.join('*')}~2`),
      fc.constantFrom('', 'Fe26.2*', 'Fe26.2**********~2', `Fe26.2*${'A'.repeat(3000)}`, foreign, `${foreign}~2`),
    )
    await fc.assert(
      fc.asyncProperty(text, async (value) => {
        expect(await sealer.unseal(value, 3600)).toBeNull()
      }),
      { numRuns: runs(3_000), ...replay },
    )
  })

  // Regression (was a bug): iron-session's unsealData reads the version suffix with
  // `seal.split('~')` and `parseInt`, so anything appended to a genuine seal
  // that does not begin with a digit (`x`, `~`, `~2`, `.5`...) is ignored and
  // the seal still opens. CookieSealer.unseal checks only the `Fe26.2*` prefix
  // and the length. The brief's property: a string that seal() did not produce
  // unseals to null. Remove `.fails` once src/session/cookie.ts pins the shape.
  it('returns null for a genuine seal with data appended', async () => {
    const suffix = fc.string({ unit: fc.constantFrom(...CHARS), minLength: 1, maxLength: 10 })
    await fc.assert(
      fc.asyncProperty(fc.nat(1), suffix, async (which, s) => {
        expect(await sealer.unseal(`${genuine[which]!}${s}`, 3600)).toBeNull()
      }),
      { numRuns: runs(1_000), ...replay, examples: [[0, 'x']] },
    )
  })
})
