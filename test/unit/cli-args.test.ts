import { describe, expect, it } from 'vitest'
import { COMMANDS, parseArgs, USAGE, version } from '../../src/cli/usage.js'

describe('tokenward command line parsing', () => {
  it('--help, -h and help print the usage; --version prints the package version', () => {
    for (const argv of [['--help'], ['-h'], ['help']]) expect(parseArgs(argv)).toEqual({ kind: 'help', text: USAGE })
    expect(parseArgs(['--version'])).toEqual({ kind: 'version' })
    expect(parseArgs(['-V'])).toEqual({ kind: 'version' })
    expect(version()).toMatch(/^\d+\.\d+\.\d+/)
  })

  it('<command> --help is that command help for every command, and never runs it', () => {
    for (const [name, spec] of Object.entries(COMMANDS)) {
      expect(parseArgs([name, '--help'])).toEqual({ kind: 'help', text: spec.help })
      expect(parseArgs(['help', name])).toEqual({ kind: 'help', text: spec.help })
      expect(spec.help).toContain(`tokenward ${name}`)
    }
    expect(parseArgs(['sessions', 'revoke', '--sid', 'x', '--help']).kind).toBe('help')
  })

  it('unknown commands, options and arguments are usage errors', () => {
    expect(parseArgs(['frobnicate']).kind).toBe('usage-error')
    expect(parseArgs(['check-config', '--frob']).kind).toBe('usage-error')
    expect(parseArgs(['doctor', '--jsn']).kind).toBe('usage-error')
    expect(parseArgs(['keys', 'make']).kind).toBe('usage-error')
    expect(parseArgs(['sessions', 'list', '--sub']).kind).toBe('usage-error')
    expect(parseArgs(['serve', 'extra']).kind).toBe('usage-error')
  })

  it('known options parse', () => {
    const r = parseArgs(['sessions', 'list', '--sub', 'kim', '--json'])
    expect(r).toMatchObject({ kind: 'run', command: 'sessions', sub: 'list', values: { sub: 'kim' } })
    expect(r.kind === 'run' && r.flags.has('json')).toBe(true)
    expect(parseArgs([])).toMatchObject({ kind: 'run', command: 'serve' })
    expect(parseArgs(['doctor', '--json'])).toMatchObject({ kind: 'run', command: 'doctor' })
  })
})

describe('option values', () => {
  it('a value may start with a dash (base64url session ids can)', () => {
    expect(parseArgs(['sessions', 'revoke', '--sid', '-Abc_9'])).toMatchObject({ kind: 'run', values: { sid: '-Abc_9' } })
    expect(parseArgs(['sessions', 'revoke', '--sid', '--sub']).kind).toBe('usage-error')
  })
})
