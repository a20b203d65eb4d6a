// The deployment files (deploy/, docker-compose.yml, .dockerignore) checked
// against the code they deploy. No Docker daemon, compose plugin, cluster or
// helm binary is assumed, so the files have to be right by construction: this
// test is what keeps them right when src/ changes (a renamed variable, a moved
// probe, a new runtime dependency that the production image would lack).

import { execFile, spawnSync } from 'node:child_process'
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { builtinModules } from 'node:module'
import { basename, join, posix } from 'node:path'
import { Ajv, type ErrorObject } from 'ajv'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse, parseAllDocuments, parseDocument } from 'yaml'
import { KNOWN_VARIABLES, unknownVariableProblems } from '../../src/config-env.js'
import { loadConfig } from '../../src/config.js'
import { isProcessWide, keyOf } from '../../src/config-file.js'
import { startServer } from '../../src/server.js'
import { REQUIRED_VARIABLES } from '../helpers/env.js'
import { createPki } from '../helpers/pki.js'

const root = join(import.meta.dirname, '..', '..')
const read = (path: string): string => readFileSync(join(root, path), 'utf8')
const tmp = join(root, '.test-dist', `deploy-${process.pid}`)
afterAll(() => rmSync(tmp, { recursive: true, force: true }))

type Env = Record<string, string | undefined>

// ---------------------------------------------------------------------------
// What the code reads

/** Every BFF_* name src/config.ts mentions: the variables tokenward reads. */
/** The BFF_* variables tokenward reads: the names of its environment schema. */
const configVars = new Set(KNOWN_VARIABLES.filter((name) => name.startsWith('BFF_')))

const REQUIRED = REQUIRED_VARIABLES

const bffNames = (text: string): string[] => [...new Set(text.match(/\bBFF_[A-Z0-9_]+/g) ?? [])]

/** Valid values for the secrets the deploy files must never contain. */
function generatedSecrets(): Record<string, string> {
  return {
    BFF_CLIENT_SECRET: randomBytes(24).toString('base64url'),
    BFF_COOKIE_SECRET: randomBytes(32).toString('base64url'),
    BFF_ENCRYPTION_KEYS: `k1:${randomBytes(32).toString('base64')}`,
  }
}

// ---------------------------------------------------------------------------
// Kubernetes objects, as far as these checks look into them

interface Meta {
  name: string
  labels?: Record<string, string>
  annotations?: Record<string, string>
}
interface Probe {
  httpGet?: { path: string; port: string | number }
}
interface SecurityContext {
  runAsNonRoot?: boolean
  runAsUser?: number
  readOnlyRootFilesystem?: boolean
  allowPrivilegeEscalation?: boolean
  privileged?: boolean
  capabilities?: { drop?: string[]; add?: string[] }
  seccompProfile?: { type: string }
}
interface Container {
  name: string
  image: string
  command?: string[]
  args?: string[]
  ports?: Array<{ name?: string; containerPort: number }>
  env?: Array<{ name: string; value?: string }>
  envFrom?: Array<{ configMapRef?: { name: string }; secretRef?: { name: string } }>
  livenessProbe?: Probe
  readinessProbe?: Probe
  lifecycle?: { preStop?: { exec?: { command: string[] }; sleep?: { seconds: number } } }
  resources?: { requests?: Record<string, unknown>; limits?: Record<string, unknown> }
  securityContext?: SecurityContext
  volumeMounts?: Array<{ name: string; mountPath: string; subPath?: string; readOnly?: boolean }>
}
interface Deployment {
  kind: 'Deployment'
  metadata: Meta
  spec: {
    replicas: number
    selector: { matchLabels: Record<string, string> }
    template: {
      metadata: Meta
      spec: {
        containers: Container[]
        securityContext?: SecurityContext
        terminationGracePeriodSeconds?: number
        volumes?: Array<{ name: string; configMap?: { name: string } }>
      }
    }
  }
}
interface ServiceObject {
  kind: 'Service'
  metadata: Meta
  spec: { selector: Record<string, string>; ports: Array<{ name?: string; port: number; targetPort: string | number }> }
}
interface NetworkPolicyPeer {
  podSelector?: { matchLabels?: Record<string, string> }
  namespaceSelector?: { matchLabels?: Record<string, string> }
  ipBlock?: { cidr: string }
}
interface NetworkPolicy {
  kind: 'NetworkPolicy'
  metadata: Meta
  spec: {
    podSelector: { matchLabels?: Record<string, string> }
    policyTypes?: string[]
    ingress?: Array<{ ports?: Array<{ port?: string | number; protocol?: string }>; from?: NetworkPolicyPeer[] }>
  }
}
interface K8sObject {
  apiVersion: string
  kind: string
  metadata: Meta
  data?: Record<string, unknown>
  stringData?: Record<string, unknown>
  spec?: Record<string, unknown>
}

function parseManifests(text: string, where: string): K8sObject[] {
  const objects: K8sObject[] = []
  for (const doc of parseAllDocuments(text)) {
    expect(
      doc.errors.map((e) => e.message),
      `YAML errors in ${where}`,
    ).toEqual([])
    const value = doc.toJS() as K8sObject | null
    if (value === null) continue
    expect(value.apiVersion, `${where}: apiVersion`).toBeTypeOf('string')
    expect(value.kind, `${where}: kind`).toBeTypeOf('string')
    expect(value.metadata?.name, `${where}: metadata.name`).toBeTypeOf('string')
    objects.push(value)
  }
  return objects
}

/** The environment a pod gets from a ConfigMap and then a Secret (envFrom: the last source wins). */
function envFrom(configMap: K8sObject, secret: K8sObject | undefined): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(configMap.data ?? {})) env[k] = String(v)
  for (const [k, v] of Object.entries(secret?.data ?? {})) env[k] = Buffer.from(String(v), 'base64').toString('utf8')
  for (const [k, v] of Object.entries(secret?.stringData ?? {})) env[k] = String(v)
  return env
}

/** Placeholder secret values swapped for valid generated ones; every swapped one must be a placeholder. */
function withRealSecrets(env: Record<string, string>): Env {
  const real = generatedSecrets()
  const out: Env = { ...env }
  for (const [k, v] of Object.entries(env)) {
    if (/REPLACE|change-?me|<.*>/i.test(v)) {
      expect(real[k], `no generated value for the placeholder in ${k}`).toBeDefined()
      out[k] = real[k]
    }
  }
  return out
}

/** tokenward's own drain limit after SIGTERM (src/cli.ts), when it can be found. */
function drainSeconds(): number | undefined {
  const m = /setTimeout\(\(\) => process\.exit\(1\),\s*([\d_]+)\)/.exec(read('src/cli.ts'))
  return m ? Number(m[1]!.replace(/_/g, '')) / 1000 : undefined
}

/**
 * The checks every tokenward Deployment must pass, for deploy/k8s and for the
 * rendered Helm chart alike. Returns the container and its ConfigMap and Secret.
 */
function checkDeployment(
  objects: K8sObject[],
  where: string,
): { container: Container; configMap: K8sObject; secret: K8sObject | undefined; deployment: Deployment } {
  const deployments = objects.filter((o) => o.kind === 'Deployment') as unknown as Deployment[]
  expect(deployments, `${where}: one Deployment`).toHaveLength(1)
  const deployment = deployments[0]!
  const { spec } = deployment
  expect(spec.replicas, `${where}: replicas`).toBeGreaterThanOrEqual(2)
  const podLabels = spec.template.metadata.labels ?? {}
  expect(podLabels, `${where}: the selector matches the pod labels`).toMatchObject(spec.selector.matchLabels)

  const pod = spec.template.spec
  const container = pod.containers.find((c) => c.name === 'tokenward') ?? pod.containers[0]!
  expect(container, `${where}: a tokenward container`).toBeDefined()
  // The image's CMD (node dist/cli.js serve) is what runs: nothing overrides it.
  expect(container.command, `${where}: no command override`).toBeUndefined()
  expect(container.args, `${where}: no args override`).toBeUndefined()

  // Restrictive security settings, on the container or inherited from the pod.
  const sc: SecurityContext = { ...pod.securityContext, ...container.securityContext }
  expect(sc.runAsNonRoot, `${where}: runAsNonRoot`).toBe(true)
  expect(sc.readOnlyRootFilesystem, `${where}: readOnlyRootFilesystem`).toBe(true)
  expect(sc.allowPrivilegeEscalation, `${where}: allowPrivilegeEscalation`).toBe(false)
  expect(sc.privileged ?? false, `${where}: privileged`).toBe(false)
  expect(sc.capabilities?.drop, `${where}: capabilities drop ALL`).toContain('ALL')
  expect(sc.capabilities?.add ?? [], `${where}: no capabilities added`).toEqual([])
  expect(sc.seccompProfile?.type, `${where}: seccompProfile`).toBe('RuntimeDefault')
  if (sc.runAsUser !== undefined) expect(sc.runAsUser, `${where}: runAsUser`).toBeGreaterThan(0)

  for (const kind of ['requests', 'limits'] as const) {
    expect(container.resources?.[kind], `${where}: resources.${kind}`).toMatchObject({ cpu: expect.anything(), memory: expect.anything() })
  }

  // Probes on the container's own port, at the paths tokenward serves.
  const port = container.ports?.find((p) => p.name === 'http') ?? container.ports?.[0]
  expect(port?.containerPort, `${where}: containerPort`).toBeTypeOf('number')
  const probePort = (probe: Probe | undefined): number | undefined => {
    const p = probe?.httpGet?.port
    return typeof p === 'number' ? p : container.ports?.find((cp) => cp.name === p)?.containerPort
  }
  expect(container.livenessProbe?.httpGet?.path, `${where}: liveness path`).toBe('/healthz')
  expect(container.readinessProbe?.httpGet?.path, `${where}: readiness path`).toBe('/readyz')
  expect(probePort(container.livenessProbe), `${where}: liveness port`).toBe(port!.containerPort)
  expect(probePort(container.readinessProbe), `${where}: readiness port`).toBe(port!.containerPort)

  // Endpoints drain before SIGTERM, and the drain fits the grace period.
  const preStop = container.lifecycle?.preStop
  const sleep = preStop?.sleep?.seconds ?? (preStop?.exec?.command[0] === 'sleep' ? Number(preStop.exec.command[1]) : NaN)
  expect(sleep, `${where}: a preStop sleep`).toBeGreaterThan(0)
  const grace = pod.terminationGracePeriodSeconds ?? 30
  expect(grace, `${where}: terminationGracePeriodSeconds covers the preStop sleep`).toBeGreaterThan(sleep)
  const drain = drainSeconds()
  if (drain !== undefined)
    expect(grace, `${where}: terminationGracePeriodSeconds covers preStop + tokenward's ${drain} s drain`).toBeGreaterThan(sleep + drain)

  // The env comes from a ConfigMap and a Secret of this set (Secret last, so it wins).
  const configMapName = container.envFrom?.find((e) => e.configMapRef)?.configMapRef?.name
  const secretName = container.envFrom?.find((e) => e.secretRef)?.secretRef?.name
  expect(configMapName, `${where}: envFrom a ConfigMap`).toBeDefined()
  expect(secretName, `${where}: envFrom a Secret`).toBeDefined()
  expect(
    container.envFrom!.findIndex((e) => e.secretRef),
    `${where}: the Secret comes after the ConfigMap`,
  ).toBeGreaterThan(container.envFrom!.findIndex((e) => e.configMapRef))
  const configMap = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === configMapName)
  expect(configMap, `${where}: the ConfigMap ${configMapName}`).toBeDefined()
  const secret = objects.find((o) => o.kind === 'Secret' && o.metadata.name === secretName)
  for (const v of Object.values(configMap!.data ?? {})) expect(v, `${where}: ConfigMap values are strings`).toBeTypeOf('string')
  for (const e of container.env ?? []) expect(configVars.has(e.name) || !e.name.startsWith('BFF_'), `${where}: env ${e.name}`).toBe(true)

  // Every Service selects these pods and targets one of the container's ports; one of them serves http.
  const services = objects.filter((o) => o.kind === 'Service') as unknown as ServiceObject[]
  expect(services.length, `${where}: a Service`).toBeGreaterThan(0)
  for (const service of services) {
    expect(podLabels, `${where}: the Service ${service.metadata.name} selects the pods`).toMatchObject(service.spec.selector)
    for (const p of service.spec.ports)
      expect(
        (container.ports ?? []).flatMap((cp) => [cp.name, cp.containerPort]),
        `${where}: the Service ${service.metadata.name}'s targetPort`,
      ).toContain(p.targetPort)
  }
  expect(
    services.some((svc) => svc.spec.ports.some((p) => [port!.name, port!.containerPort].includes(p.targetPort))),
    `${where}: a Service for the http port`,
  ).toBe(true)
  const pdb = objects.find((o) => o.kind === 'PodDisruptionBudget') as
    { spec: { minAvailable: number; selector: { matchLabels: Record<string, string> } } } | undefined
  expect(pdb?.spec.minAvailable, `${where}: PodDisruptionBudget minAvailable`).toBe(1)
  expect(podLabels, `${where}: the PodDisruptionBudget selects the pods`).toMatchObject(pdb!.spec.selector.matchLabels)

  return { container, configMap: configMap!, secret, deployment }
}

// ---------------------------------------------------------------------------
// Several frontends from one file: BFF_CONFIG_FILE (docs/configuration.md,
// docs/deployment.md "Several frontends"). The deploy files are checked against
// the documented format by reading the rendered file as plain YAML, not through
// tokenward's own loader for it.

/** The variable naming the file. The deploy files may name it even where src/ does not list it yet. */
const CONFIG_FILE_VARIABLE = 'BFF_CONFIG_FILE'
/** The BFF_* names the deploy files may use. */
const deployVars = new Set([...configVars, CONFIG_FILE_VARIABLE])
/** Where the chart and the multi-frontend overlay mount the file. */
const FRONTENDS_PATH = '/etc/tokenward/frontends.yaml'

/** Frontend keys whose values are secrets: in the file only ever a ${ENV_NAME} reference. */
const SECRET_KEYS = ['clientSecret', 'clientPrivateKey', 'cookieSecret', 'encryptionKeys', 'dpopKey'] as const
const ENV_REFERENCE = /^\$\{[A-Za-z_][A-Za-z0-9_]*\}$/
/** Process-wide variables: from the environment only, never set by a frontend. */
const PROCESS_WIDE = /^BFF_(HOST|PORT|REDIS_[A-Z_]+|LOG_LEVEL|TRUSTED_PROXIES|METRICS_LISTEN|ACCESS_LOG|CONFIG_FILE)$/
/** The format's mapping: a frontend key is its variable in lowerCamelCase without BFF_, special cases aside. */
const SPECIAL_KEYS: Record<string, string> = { cookieSameSite: 'BFF_COOKIE_SAMESITE' }
const variableOf = (key: string): string => SPECIAL_KEYS[key] ?? `BFF_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`

type Frontend = Record<string, unknown> & { name: string; publicUrl: string; routes?: Array<{ prefix: string }> }

/**
 * A rendered frontends file: YAML with only `frontends` at the top, each entry
 * with a bounded name and an https publicUrl (both unique), keys that map to
 * tokenward variables other than the process-wide ones, and secrets only as
 * ${ENV_NAME} references.
 */
function checkFrontendsFile(text: string, where: string): Frontend[] {
  const doc = parseDocument(text)
  expect(
    doc.errors.map((e) => e.message),
    `${where}: YAML errors`,
  ).toEqual([])
  const file = doc.toJS() as Record<string, unknown>
  expect(Object.keys(file), `${where}: only frontends at the top level`).toEqual(['frontends'])
  expect(Array.isArray(file.frontends), `${where}: frontends is a list`).toBe(true)
  const frontends = file.frontends as Frontend[]
  expect(frontends.length, `${where}: frontends`).toBeGreaterThan(0)
  for (const [i, f] of frontends.entries()) {
    const at = `${where}: frontends[${i}] (${String(f.name)})`
    expect(f.name, `${at}: name`).toMatch(/^[a-z][a-z0-9-]{0,31}$/)
    expect(f.publicUrl, `${at}: publicUrl`).toBeTypeOf('string')
    expect(new URL(f.publicUrl).protocol, `${at}: publicUrl`).toBe('https:')
    for (const key of Object.keys(f).filter((k) => k !== 'name')) {
      expect(configVars, `${at}: ${key} is a tokenward variable`).toContain(variableOf(key))
      expect(variableOf(key), `${at}: ${key} is process-wide`).not.toMatch(PROCESS_WIDE)
    }
    for (const key of SECRET_KEYS) if (key in f) expect(f[key], `${at}: ${key} is a reference, never the secret`).toMatch(ENV_REFERENCE)
  }
  expect(new Set(frontends.map((f) => f.name)).size, `${where}: unique names`).toBe(frontends.length)
  expect(new Set(frontends.map((f) => new URL(f.publicUrl).host)).size, `${where}: unique hosts`).toBe(frontends.length)
  return frontends
}

/**
 * One frontend's environment as the format defines it, { ...process environment,
 * ...frontend mapped }, with valid generated values for its ${ENV_NAME}
 * references (what the Secret would hold).
 */
function frontendEnv(frontend: Frontend, processEnv: Record<string, string>): Env {
  const real: Record<string, string> = {
    ...generatedSecrets(),
    BFF_CLIENT_PRIVATE_KEY: generateKeyPairSync('ec', { namedCurve: 'P-256' })
      .privateKey.export({ type: 'pkcs8', format: 'pem' })
      .toString(),
  }
  const env: Env = { ...processEnv }
  // The file itself: loadConfig here reads one frontend's environment.
  delete env[CONFIG_FILE_VARIABLE]
  for (const [key, value] of Object.entries(frontend)) {
    if (key === 'name') continue
    const variable = variableOf(key)
    if (typeof value === 'string' && ENV_REFERENCE.test(value)) {
      expect(real[variable], `a generated value for ${variable}`).toBeDefined()
      env[variable] = real[variable]
    } else {
      // Lists and maps as JSON (routes); strings, numbers and booleans as their text.
      env[variable] = typeof value === 'string' ? value : JSON.stringify(value)
    }
  }
  return env
}

/** The Ingress rules' hosts and backends, and its TLS hosts. */
function ingressOf(objects: K8sObject[]): { hosts: string[]; tlsHosts: string[]; backends: unknown[]; text: string } {
  const ingresses = objects.filter((o) => o.kind === 'Ingress')
  expect(ingresses).toHaveLength(1)
  const spec = ingresses[0]!.spec as {
    tls?: Array<{ hosts: string[] }>
    rules: Array<{ host: string; http: { paths: Array<{ backend: unknown }> } }>
  }
  return {
    hosts: spec.rules.map((r) => r.host),
    tlsHosts: (spec.tls ?? []).flatMap((t) => t.hosts),
    backends: spec.rules.flatMap((r) => r.http.paths.map((p) => p.backend)),
    text: JSON.stringify(ingresses[0]),
  }
}

// ---------------------------------------------------------------------------
// Dockerfile

interface Instruction {
  op: string
  args: string
}
interface Stage {
  name: string | undefined
  instructions: Instruction[]
}

/** Logical instructions per stage: continuations joined, comments dropped. */
function parseDockerfile(text: string): Stage[] {
  const logical: string[] = []
  let current = ''
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd()
    if (/^\s*#/.test(line) || (line.trim() === '' && current === '')) continue
    if (line.endsWith('\\')) {
      current += `${line.slice(0, -1)} `
      continue
    }
    logical.push(`${current}${line}`.trim())
    current = ''
  }
  const stages: Stage[] = []
  for (const line of logical) {
    const m = /^(\S+)\s*(.*)$/.exec(line)!
    const op = m[1]!.toUpperCase()
    const args = m[2]!
    if (op === 'FROM') {
      const from = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args)
      stages.push({ name: from?.[2], instructions: [] })
    } else if (stages.length > 0) {
      stages.at(-1)!.instructions.push({ op, args })
    }
  }
  return stages
}

const ops = (stage: Stage, op: string): string[] => stage.instructions.filter((i) => i.op === op).map((i) => i.args)

/** COPY sources and destination, flags removed. */
function copies(stage: Stage): Array<{ from: string | undefined; sources: string[]; dest: string }> {
  return ops(stage, 'COPY').map((args) => {
    const words = args.split(/\s+/)
    const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length)
    const paths = words.filter((w) => !w.startsWith('--'))
    return { from, sources: paths.slice(0, -1), dest: paths.at(-1)! }
  })
}

// ---------------------------------------------------------------------------

describe('container image (deploy/Dockerfile)', () => {
  const stages = parseDockerfile(read('deploy/Dockerfile'))
  const runtime = stages.at(-1)!
  const pkg = JSON.parse(read('package.json')) as {
    scripts: Record<string, string>
    bin: Record<string, string>
    dependencies: Record<string, string>
  }
  const outDir = join(tmp, 'dist')

  // The production bundle, built the way the image's `npm run build` builds it
  // (asserted below), into a directory of the test's own.
  beforeAll(() => {
    const r = spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json', '--outDir', outDir], { cwd: root, encoding: 'utf8' })
    if (r.status !== 0) throw new Error(`build failed: ${r.stdout}${r.stderr}`)
  }, 120_000)

  it('the default (last) stage is the runtime stage and runs `node dist/cli.js serve`, as npm start does', () => {
    expect(runtime.name).toBe('runtime')
    const cmd = ops(runtime, 'CMD').at(-1)
    expect(cmd).toBeDefined()
    expect(JSON.parse(cmd!)).toEqual(['node', 'dist/cli.js', 'serve'])
    expect(ops(runtime, 'ENTRYPOINT')).toEqual([])
    expect(pkg.scripts.start).toBe('node dist/cli.js serve')
    expect(pkg.bin.tokenward).toBe('dist/cli.js')
  })

  it('runs as a numeric non-root user, in production mode, with a curl-free HEALTHCHECK on /healthz', () => {
    const user = ops(runtime, 'USER').at(-1)
    expect(user, 'a USER in the runtime stage').toBeDefined()
    // Numeric, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
    const m = /^(\d+)(?::(\d+))?$/.exec(user!)
    expect(m, `USER ${user} is numeric`).not.toBeNull()
    expect(Number(m![1])).toBeGreaterThan(0)
    expect(ops(runtime, 'ENV').some((e) => /\bNODE_ENV=production\b/.test(e))).toBe(true)
    const health = ops(runtime, 'HEALTHCHECK')
    expect(health).toHaveLength(1)
    expect(health[0]).toMatch(/\bCMD\b/)
    expect(health[0]).toContain('/healthz')
    expect(health[0]).not.toMatch(/\b(curl|wget)\b/)
    // The probe's port follows the server's: BFF_PORT, then PORT, then the default.
    expect(health[0]).toContain('process.env.BFF_PORT||process.env.PORT||')
  })

  it('the HEALTHCHECK command is valid exec form and passes against a running tokenward, and fails without one', async () => {
    // Docker silently falls back to shell form when the JSON is invalid, so parse it.
    const health = ops(runtime, 'HEALTHCHECK')[0]!
    const argv = JSON.parse(health.slice(health.indexOf('CMD') + 3).trim()) as string[]
    expect(argv[0]).toBe('node')
    const config = loadConfig({
      ...envOf('deploy/k8s/base/configmap.yaml'),
      ...generatedSecrets(),
      BFF_HOST: '127.0.0.1',
      BFF_LOG_LEVEL: 'silent',
    })
    const server = await startServer(config, { store: 'memory', port: 0 })
    // Asynchronously: the server answers from this very process.
    const run = (env: Env) =>
      new Promise<number | null>((resolve) => {
        execFile(process.execPath, argv.slice(1), { env: { PATH: process.env.PATH, ...env }, timeout: 10_000 }, (err) => {
          resolve(err ? (typeof err.code === 'number' ? err.code : 1) : 0)
        })
      })
    try {
      expect(await run({ BFF_PORT: String(server.port) })).toBe(0)
      expect(await run({ PORT: String(server.port) })).toBe(0)
    } finally {
      await server.close()
    }
    expect(await run({ BFF_PORT: String(server.port) })).not.toBe(0)
  })

  it('exposes the port tokenward listens on by default', () => {
    const port = loadConfig({ ...envOf('deploy/k8s/base/configmap.yaml'), BFF_PORT: undefined, ...generatedSecrets() }).port
    expect(ops(runtime, 'EXPOSE').flatMap((e) => e.split(/\s+/))).toContain(String(port))
    expect(read('deploy/Dockerfile')).toContain(`||${port})+'/healthz'`)
  })

  it('the runtime stage holds only dist/, package.json, package-lock.json and production dependencies', () => {
    const runs = ops(runtime, 'RUN')
    expect(runs.some((r) => /\bnpm ci\b/.test(r) && /--omit=dev\b/.test(r))).toBe(true)
    for (const r of runs) {
      if (/\bnpm (ci|install|i)\b/.test(r)) expect(r, 'every install in the runtime stage omits dev dependencies').toMatch(/--omit=dev\b/)
    }
    const copied = copies(runtime).flatMap((c) => c.sources.map((s) => basename(s)))
    expect(copied.sort()).toEqual(['dist', 'package-lock.json', 'package.json'])
  })

  it('the build stage runs npm ci and npm run build, whose output directory (dist/) the runtime stage copies', () => {
    const fromBuild = copies(runtime).find((c) => c.from !== undefined)
    expect(fromBuild, 'a COPY --from=<build stage>').toBeDefined()
    const build = stages.find((s) => s.name === fromBuild!.from)
    expect(build, `a stage named ${fromBuild!.from}`).toBeDefined()
    const runs = ops(build!, 'RUN')
    expect(runs.some((r) => /\bnpm ci\b/.test(r))).toBe(true)
    expect(runs.some((r) => /\bnpm run build\b/.test(r))).toBe(true)
    // What `npm run build` runs, and where it writes: this test builds the same.
    expect(pkg.scripts.build).toBe('tsc -p tsconfig.build.json && tsc -p tsconfig.client.json')
    const clientConfig = JSON.parse(read('tsconfig.client.json')) as { compilerOptions: { outDir: string } }
    expect(posix.normalize(clientConfig.compilerOptions.outDir).startsWith('dist')).toBe(true)
    const buildConfig = JSON.parse(read('tsconfig.build.json')) as { compilerOptions: { outDir: string } }
    const workdir = ops(build!, 'WORKDIR').at(-1)!
    expect(fromBuild!.sources).toEqual([posix.join(workdir, buildConfig.compilerOptions.outDir)])
    expect(posix.normalize(fromBuild!.dest)).toBe(buildConfig.compilerOptions.outDir)
    // The build has the files it needs from the context.
    const inputs = copies(build!)
      .filter((c) => c.from === undefined)
      .flatMap((c) => c.sources)
    for (const f of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'tsconfig.client.json', 'src'])
      expect(inputs).toContain(f)
  })

  it("the CMD's script exists in the production build", () => {
    const cmd = JSON.parse(ops(runtime, 'CMD').at(-1)!) as string[]
    const script = cmd[1]!
    expect(script.startsWith('dist/')).toBe(true)
    expect(statSync(join(outDir, script.slice('dist/'.length))).isFile()).toBe(true)
  })

  it('the production build imports nothing but Node built-ins and production dependencies', () => {
    // A dev dependency imported from src/ passes every test and then crashes
    // the image, whose runtime stage installs production dependencies only.
    const builtins = new Set(builtinModules)
    const deps = new Set(Object.keys(pkg.dependencies))
    const missing = new Set<string>()
    const files = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.js') ? [join(dir, e.name)] : [],
      )
    const jsFiles = files(outDir)
    expect(jsFiles.length).toBeGreaterThan(0)
    for (const file of jsFiles) {
      const code = readFileSync(file, 'utf8')
      const specifiers = [
        ...code.matchAll(/\bfrom\s*['"]([^'"]+)['"]/g),
        ...code.matchAll(/\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g),
        ...code.matchAll(/^\s*import\s*['"]([^'"]+)['"]/gm),
      ].map((m) => m[1]!)
      for (const s of specifiers) {
        if (s.startsWith('.') || s.startsWith('/') || s.startsWith('node:') || builtins.has(s)) continue
        const name = s.startsWith('@') ? s.split('/').slice(0, 2).join('/') : s.split('/')[0]!
        if (!deps.has(name)) missing.add(`${name} (${file.slice(outDir.length + 1)})`)
      }
    }
    expect([...missing], 'imported by the build but not a production dependency').toEqual([])
  })

  it('has a dev stage that runs the demo entry scripts', () => {
    const dev = stages.find((s) => s.name === 'dev')
    expect(dev).toBeDefined()
    const cmd = JSON.parse(ops(dev!, 'CMD').at(-1)!) as string[]
    const script = cmd.find((a) => a.endsWith('.ts'))
    expect(script).toBeDefined()
    expect(existsSync(join(root, script!))).toBe(true)
  })

  it('.dockerignore lets in exactly what the Dockerfile copies from the context, and never .env', () => {
    const lines = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'))
    // An allowlist: everything out, then the inputs back in.
    expect(lines[0]).toBe('*')
    const allowed = lines.filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/$/, ''))
    expect(allowed).not.toContain('.env')
    const fromContext = stages.flatMap((s) =>
      copies(s)
        .filter((c) => c.from === undefined)
        .flatMap((c) => c.sources),
    )
    expect([...new Set(fromContext)].sort()).toEqual([...allowed].sort())
  })
})

// ---------------------------------------------------------------------------

function envOf(configMapPath: string): Record<string, string> {
  const cm = parseManifests(read(configMapPath), configMapPath).find((o) => o.kind === 'ConfigMap')!
  return envFrom(cm, undefined)
}

describe('Kubernetes manifests (deploy/k8s)', () => {
  const k8s = join(root, 'deploy/k8s')
  /** Every file under deploy/k8s, relative to the repository root. */
  const allFiles = (readdirSync(k8s, { recursive: true }) as string[])
    .map((f) => posix.join('deploy/k8s', f.split('\\').join('/')))
    .filter((f) => statSync(join(root, f)).isFile())
  const baseFiles = ['configmap.yaml', 'deployment.yaml', 'service.yaml', 'pdb.yaml'].map((f) => `deploy/k8s/base/${f}`)
  const baseObjects = baseFiles.flatMap((f) => parseManifests(read(f), f))
  const baseDeployment = baseObjects.find((o) => o.kind === 'Deployment') as unknown as Deployment
  /** The Secret the base's Deployment reads: the operator's, never rendered by the base or production. */
  const realSecretName = baseDeployment.spec.template.spec.containers[0]!.envFrom!.find((e) => e.secretRef)!.secretRef!.name

  const hasKubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' }).status === 0
  const noKubectl = 'no `kubectl` on PATH: the kustomize overlays are not rendered (the static checks of deploy/k8s still ran)'
  const overlays = ['example', 'production'] as const
  /** `kubectl kustomize <dir>` (relative to the repository root), parsed. */
  const kustomize = (dir: string): K8sObject[] => {
    const r = spawnSync('kubectl', ['kustomize', dir], { cwd: root, encoding: 'utf8' })
    expect(r.stderr, `kubectl kustomize ${dir}`).toBe('')
    expect(r.status, `kubectl kustomize ${dir}`).toBe(0)
    return parseManifests(r.stdout, `kubectl kustomize ${dir}`)
  }
  const rendered = new Map<string, K8sObject[]>()
  const render = (overlay: (typeof overlays)[number]): K8sObject[] => {
    if (!rendered.has(overlay)) rendered.set(overlay, kustomize(`deploy/k8s/overlays/${overlay}`))
    return rendered.get(overlay)!
  }
  const servicesOf = (objects: K8sObject[]) => objects.filter((o) => o.kind === 'Service') as unknown as ServiceObject[]

  if (!hasKubectl) it('renders the overlays with `kubectl kustomize`', (ctx) => ctx.skip(noKubectl))

  it('deploy/k8s/ itself holds no manifest, so `kubectl apply -f deploy/k8s/` applies nothing (and no Secret)', () => {
    const topLevel = readdirSync(k8s).filter((f) => /\.(ya?ml|json)$/.test(f))
    expect(topLevel).toEqual([])
  })

  it('the base parses, holds a Deployment, Service, ConfigMap and PodDisruptionBudget, and no Secret', () => {
    expect(parse(read('deploy/k8s/base/kustomization.yaml'))).toMatchObject({ kind: 'Kustomization', resources: expect.any(Array) })
    expect(baseObjects.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'Deployment', 'PodDisruptionBudget', 'Service'])
    expect(realSecretName).toBeTruthy()
    // Only the example overlay may hold secret material, and only as placeholders.
    for (const f of allFiles.filter((f) => !f.startsWith('deploy/k8s/overlays/example/')))
      expect(read(f), `${f} renders no Secret`).not.toMatch(/^kind:\s*Secret\b|secretGenerator:/m)
  })

  it("the pod runs as the image's numeric USER: runAsNonRoot, no hard-coded runAsUser", () => {
    // The image's USER is numeric (checked above), so the kubelet can verify runAsNonRoot;
    // leaving runAsUser out lets platforms that assign uids (OpenShift restricted) do so.
    const pod = baseDeployment.spec.template.spec
    expect(pod.securityContext?.runAsNonRoot).toBe(true)
    expect(pod.securityContext?.runAsUser).toBeUndefined()
    for (const c of pod.containers) expect(c.securityContext?.runAsUser, c.name).toBeUndefined()
  })

  it('every BFF_* name in deploy/k8s is one tokenward reads', () => {
    for (const f of allFiles) {
      for (const name of bffNames(read(f))) {
        expect(deployVars, `${name} in ${f}`).toContain(name)
        if (name !== CONFIG_FILE_VARIABLE) expect(KNOWN_VARIABLES, `${name} in ${f}`).toContain(name)
      }
    }
  })

  it('the base ConfigMap sets BFF_TRUSTED_PROXIES (empty: trust nobody) with a comment saying what to put there', () => {
    const text = read('deploy/k8s/base/configmap.yaml')
    expect(envOf('deploy/k8s/base/configmap.yaml')).toHaveProperty('BFF_TRUSTED_PROXIES', '')
    expect(text).toMatch(/#[^\n]*\n(?:\s*#[^\n]*\n)*\s*BFF_TRUSTED_PROXIES:/)
  })

  describe.each(overlays)('overlay %s (kubectl kustomize)', (overlay) => {
    it.skipIf(!hasKubectl)('renders a Deployment that is restrictive, replicated, drained, probed and resourced', () => {
      const objects = render(overlay)
      const { deployment } = checkDeployment(objects, overlay)
      expect(deployment.spec.template.spec.securityContext?.runAsUser, `${overlay}: no hard-coded runAsUser`).toBeUndefined()
    })

    it.skipIf(!hasKubectl)('every BFF_* variable in the rendered ConfigMap and Secret is one tokenward knows', () => {
      const { configMap, secret } = checkDeployment(render(overlay), overlay)
      const env = envFrom(configMap, secret)
      expect(Object.keys(env).length).toBeGreaterThan(0)
      expect(unknownVariableProblems(env), overlay).toEqual([])
    })

    it.skipIf(!hasKubectl)("with real secrets, the pod's environment passes loadConfig on the container's http port", () => {
      const { configMap, secret, container } = checkDeployment(render(overlay), overlay)
      const routes = JSON.parse(String(configMap.data!.BFF_ROUTES)) as unknown
      expect(Array.isArray(routes)).toBe(true)
      const config = loadConfig(withRealSecrets({ ...generatedSecrets(), ...envFrom(configMap, secret) }))
      expect(config.routes.length).toBeGreaterThan(0)
      expect(config.allowHttp, 'production manifests never allow plain http').toBe(false)
      expect(config.port).toBe(container.ports!.find((p) => p.name === 'http')!.containerPort)
    })

    it.skipIf(!hasKubectl)(
      'the probe paths are served by tokenward (liveness 200 without Redis or IdP; readiness answers, not 404)',
      async () => {
        const { configMap, secret, container } = checkDeployment(render(overlay), overlay)
        // The rendered environment, on free loopback ports, with an IdP that is
        // certainly down and the in-memory store: the probes must still exist.
        const env = withRealSecrets({ ...generatedSecrets(), ...envFrom(configMap, secret) })
        const config = loadConfig({
          ...env,
          ...(env.BFF_METRICS_LISTEN ? { BFF_METRICS_LISTEN: '127.0.0.1:0' } : {}),
          BFF_ISSUER: 'http://127.0.0.1:1',
          BFF_ALLOW_HTTP: 'true',
          BFF_HOST: '127.0.0.1',
          BFF_LOG_LEVEL: 'silent',
        })
        const server = await startServer(config, { store: 'memory', port: 0 })
        try {
          const base = `http://127.0.0.1:${server.port}`
          const live = await fetch(`${base}${container.livenessProbe!.httpGet!.path}`)
          expect(live.status).toBe(200)
          const ready = await fetch(`${base}${container.readinessProbe!.httpGet!.path}`)
          expect([200, 503]).toContain(ready.status)
          expect(ready.headers.get('content-type')).toMatch(/json/)
          if (env.BFF_METRICS_LISTEN) {
            // The http port (the one the http Service routes) does not serve /metrics; the metrics listener does.
            expect((await fetch(`${base}/metrics`)).status).toBe(404)
            expect(server.metricsUrl).toBeDefined()
            expect((await fetch(server.metricsUrl!)).status).toBe(200)
          }
        } finally {
          await server.close()
        }
      },
    )
  })

  it.skipIf(!hasKubectl)(
    'example: its Secret, generated under another name than the real one, holds placeholders only and is refused at startup',
    () => {
      const objects = render('example')
      const { configMap, secret, deployment } = checkDeployment(objects, 'example')
      expect(secret, 'the Secret the Deployment reads').toBeDefined()
      expect(secret!.metadata.name, 'cannot overwrite the Secret the operator creates').not.toBe(realSecretName)
      for (const s of objects.filter((o) => o.kind === 'Secret')) expect(s.metadata.name).not.toBe(realSecretName)
      // Nothing of the example shares a name with a production object or selects production pods.
      const production = render('production')
      const productionNames = new Set(production.map((o) => `${o.kind}/${o.metadata.name}`))
      for (const o of objects) expect(productionNames, `${o.kind}/${o.metadata.name}`).not.toContain(`${o.kind}/${o.metadata.name}`)
      const productionPodLabels = checkDeployment(production, 'production').deployment.spec.template.metadata.labels ?? {}
      expect(productionPodLabels).not.toMatchObject(deployment.spec.selector.matchLabels)
      for (const service of servicesOf(objects)) expect(productionPodLabels).not.toMatchObject(service.spec.selector)

      const env = envFrom(configMap, secret)
      for (const name of REQUIRED) expect(env[name], `${name} from the ConfigMap or Secret`).toBeTruthy()
      // Secrets live in the Secret, never in the ConfigMap.
      for (const name of ['BFF_CLIENT_SECRET', 'BFF_COOKIE_SECRET', 'BFF_ENCRYPTION_KEYS', 'BFF_CLIENT_PRIVATE_KEY']) {
        expect(configMap.data ?? {}, `${name} is not in the ConfigMap`).not.toHaveProperty(name)
      }
      const values = Object.entries({ ...secret!.stringData, ...secret!.data })
      expect(values.length).toBeGreaterThan(0)
      for (const [k, v] of Object.entries(envFrom({ ...configMap, data: {} }, secret))) {
        expect(v, `${k} in the example Secret is a placeholder`).toMatch(/REPLACE_ME/)
      }
      expect(() => loadConfig(env)).toThrow(/BFF_COOKIE_SECRET[\s\S]*BFF_ENCRYPTION_KEYS|BFF_ENCRYPTION_KEYS[\s\S]*BFF_COOKIE_SECRET/)
    },
  )

  it.skipIf(!hasKubectl)('production: renders no Secret and reads the one the operator creates', () => {
    const objects = render('production')
    expect(objects.filter((o) => o.kind === 'Secret')).toEqual([])
    const { container, deployment } = checkDeployment(objects, 'production')
    expect(container.envFrom!.find((e) => e.secretRef)!.secretRef!.name).toBe(realSecretName)
    expect(deployment.spec.replicas).toBeGreaterThanOrEqual(2)
  })

  it.skipIf(!hasKubectl)(
    'production: /metrics on a port of its own, in a Service of its own; the http Service routes no metrics port',
    () => {
      const objects = render('production')
      const { configMap, container } = checkDeployment(objects, 'production')
      const listen = String(configMap.data!.BFF_METRICS_LISTEN)
      expect(listen).toBe('0.0.0.0:9464')
      const metricsPort = container.ports!.find((p) => p.name === 'metrics')
      const httpPort = container.ports!.find((p) => p.name === 'http')!
      expect(metricsPort?.containerPort).toBe(Number(listen.split(':').at(-1)))
      expect(metricsPort!.containerPort).not.toBe(httpPort.containerPort)

      const targets = (svc: ServiceObject, p: { name?: string; containerPort: number }) =>
        svc.spec.ports.some((sp) => sp.targetPort === p.name || sp.targetPort === p.containerPort)
      const services = servicesOf(objects)
      const metricsServices = services.filter((svc) => targets(svc, metricsPort!))
      expect(metricsServices.length, 'a Service with a metrics port').toBe(1)
      expect(metricsServices[0]!.spec.ports.map((p) => p.name)).toEqual(['metrics'])
      const httpServices = services.filter((svc) => targets(svc, httpPort))
      expect(httpServices.length, 'a Service for the http port').toBeGreaterThan(0)
      for (const svc of httpServices) {
        expect(targets(svc, metricsPort!), `${svc.metadata.name} routes no metrics port`).toBe(false)
        expect(svc.spec.ports.map((p) => p.targetPort).sort()).toEqual([httpPort.name])
      }
      // Whatever routes the http Service reaches the main listener, where /metrics is 404 (probe test above).
      expect(loadConfig({ ...envFrom(configMap, undefined), ...generatedSecrets() }).metricsListen).toEqual({ host: '0.0.0.0', port: 9464 })
    },
  )

  it.skipIf(!hasKubectl)('production: a NetworkPolicy admits the http port, and the metrics port only from the scraper selector', () => {
    const objects = render('production')
    const { deployment, container } = checkDeployment(objects, 'production')
    const podLabels = deployment.spec.template.metadata.labels ?? {}
    const policies = objects.filter((o) => o.kind === 'NetworkPolicy') as unknown as NetworkPolicy[]
    expect(policies).toHaveLength(1)
    const policy = policies[0]!
    expect(podLabels, 'the NetworkPolicy selects the pods').toMatchObject(policy.spec.podSelector.matchLabels ?? {})
    expect(Object.keys(policy.spec.podSelector.matchLabels ?? {}).length).toBeGreaterThan(0)
    expect(policy.spec.policyTypes).toContain('Ingress')

    const metricsPort = container.ports!.find((p) => p.name === 'metrics')!
    const httpPort = container.ports!.find((p) => p.name === 'http')!
    const admits = (rule: NonNullable<NetworkPolicy['spec']['ingress']>[number], p: { name?: string; containerPort: number }) =>
      // A rule without ports admits every port.
      rule.ports === undefined || rule.ports.length === 0 || rule.ports.some((rp) => rp.port === p.name || rp.port === p.containerPort)
    const rules = policy.spec.ingress ?? []
    expect(
      rules.some((r) => admits(r, httpPort)),
      'the http port is admitted',
    ).toBe(true)
    const metricsRules = rules.filter((r) => admits(r, metricsPort))
    expect(metricsRules.length, 'the metrics port is admitted to the scraper').toBeGreaterThan(0)
    for (const rule of metricsRules) {
      // Only the metrics port, and only from peers that name the scraper's pods (and namespace).
      expect(rule.ports!.map((p) => p.port)).toEqual(['metrics'])
      expect(rule.from?.length, 'a rule without `from` admits every source').toBeGreaterThan(0)
      for (const peer of rule.from!) {
        expect(peer.ipBlock, 'no address block').toBeUndefined()
        expect(Object.keys(peer.podSelector?.matchLabels ?? {}).length, 'a podSelector for the scraper').toBeGreaterThan(0)
        expect(peer.podSelector!.matchLabels).toMatchObject({ 'app.kubernetes.io/name': 'prometheus' })
        expect(Object.keys(peer.namespaceSelector?.matchLabels ?? {}).length, "the scraper's namespace").toBeGreaterThan(0)
      }
    }
  })

  describe('overlay multi-frontend (kubectl kustomize)', () => {
    const dir = 'deploy/k8s/overlays/multi-frontend'
    /** The rendered overlay: the Deployment, its main ConfigMap, the frontends file's ConfigMap, the mount and the file. */
    const renderFrontends = (objects: K8sObject[], where: string) => {
      const { configMap, container, deployment } = checkDeployment(objects, where)
      const mount = container.volumeMounts?.find((m) => m.mountPath === configMap.data?.[CONFIG_FILE_VARIABLE])
      const volume = deployment.spec.template.spec.volumes?.find((v) => v.name === mount?.name)
      const fileMap = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === volume?.configMap?.name)
      return { configMap, container, deployment, mount, volume, fileMap }
    }

    it.skipIf(!hasKubectl)(
      'the file in a generated ConfigMap, mounted read-only at BFF_CONFIG_FILE; its secrets from the Secret the operator creates',
      () => {
        const objects = kustomize(dir)
        const { configMap, container, mount, fileMap } = renderFrontends(objects, 'multi-frontend')
        expect(configMap.data?.[CONFIG_FILE_VARIABLE]).toBe(FRONTENDS_PATH)
        // The single frontend's settings give way to the file; the rest is process-wide or an inherited default.
        for (const name of ['BFF_PUBLIC_URL', 'BFF_ISSUER', 'BFF_CLIENT_ID', 'BFF_ROUTES']) expect(configMap.data).not.toHaveProperty(name)
        const processEnv = envFrom(configMap, undefined)
        expect(unknownVariableProblems(Object.fromEntries(Object.entries(processEnv).filter(([k]) => k !== CONFIG_FILE_VARIABLE)))).toEqual(
          [],
        )

        expect(mount, 'a mount at BFF_CONFIG_FILE').toMatchObject({ mountPath: FRONTENDS_PATH, subPath: 'frontends.yaml', readOnly: true })
        expect(fileMap, 'the mounted ConfigMap').toBeDefined()
        // Generated with a content hash: a changed file is a new name in the pod template (test below).
        expect(fileMap!.metadata.name).toMatch(/^tokenward-frontends-[a-z0-9]+$/)
        expect(Object.keys(fileMap!.data ?? {})).toEqual(['frontends.yaml'])
        const frontends = checkFrontendsFile(String(fileMap!.data!['frontends.yaml']), 'multi-frontend')
        expect(frontends.map((f) => [f.name, f.publicUrl])).toEqual([
          ['shop', 'https://shop.example.com'],
          ['admin', 'https://admin.example.com'],
        ])
        expect(frontends).toEqual((parse(read(`${dir}/frontends.yaml`)) as { frontends: Frontend[] }).frontends)

        // No Secret rendered; the ${...} references read the one the base reads, which the operator creates.
        expect(objects.filter((o) => o.kind === 'Secret')).toEqual([])
        expect(container.envFrom!.filter((e) => e.secretRef).map((e) => e.secretRef!.name)).toEqual([realSecretName])
        // The docs' `kubectl create secret` provides every variable the file references.
        const referenced = frontends.flatMap((f) => SECRET_KEYS.filter((k) => k in f).map((k) => String(f[k]).slice(2, -1)))
        expect(referenced.length).toBeGreaterThan(0)
        for (const name of referenced) expect(read('docs/deployment.md'), name).toContain(`--from-literal=${name}=`)

        // Each frontend's environment (the format's rule) is a valid production configuration.
        for (const f of frontends) {
          const config = loadConfig(frontendEnv(f, processEnv))
          expect(config.publicUrl.host, f.name).toBe(new URL(f.publicUrl).host)
          expect(config.allowHttp, `${f.name}: production never allows plain http`).toBe(false)
          expect(config.routes.map((r) => r.prefix)).toEqual(f.routes!.map((r) => r.prefix))
        }
      },
    )

    it.skipIf(!hasKubectl)("one Ingress rule per frontend host, all to the http Service's http port, none to metrics", () => {
      const objects = kustomize(dir)
      const { fileMap } = renderFrontends(objects, 'multi-frontend')
      const frontends = checkFrontendsFile(String(fileMap!.data!['frontends.yaml']), 'multi-frontend')
      const ingress = ingressOf(objects)
      const hosts = frontends.map((f) => new URL(f.publicUrl).hostname)
      expect(ingress.hosts).toEqual(hosts)
      expect(ingress.tlsHosts).toEqual(hosts)
      const http = servicesOf(objects).find((svc) => svc.spec.ports.every((p) => p.targetPort === 'http'))!
      for (const backend of ingress.backends) expect(backend).toEqual({ service: { name: http.metadata.name, port: { name: 'http' } } })
      expect(ingress.text).not.toMatch(/metrics/)
    })

    it.skipIf(!hasKubectl)('a changed file is a new ConfigMap name in the pod template, so applying it rolls the pods', () => {
      const original = renderFrontends(kustomize(dir), 'multi-frontend')
      // An overlay of the overlay, as an operator would change the file.
      const changedDir = join(tmp, 'multi-frontend-changed')
      mkdirSync(changedDir, { recursive: true })
      const up = changedDir
        .slice(root.length + 1)
        .split(/[\\/]/)
        .map(() => '..')
      const file = (parse(read(`${dir}/frontends.yaml`)) as { frontends: Frontend[] }).frontends
      writeFileSync(join(changedDir, 'frontends.yaml'), JSON.stringify({ frontends: [file[0], { ...file[1], sessionIdleTimeout: 600 }] }))
      writeFileSync(
        join(changedDir, 'kustomization.yaml'),
        JSON.stringify({
          apiVersion: 'kustomize.config.k8s.io/v1beta1',
          kind: 'Kustomization',
          resources: [posix.join(...up, dir)],
          configMapGenerator: [{ name: 'tokenward-frontends', behavior: 'replace', files: ['frontends.yaml'] }],
        }),
      )
      const changed = renderFrontends(kustomize(changedDir.slice(root.length + 1)), 'multi-frontend (changed)')
      expect(changed.volume?.configMap?.name).not.toBe(original.volume?.configMap?.name)
      expect(changed.fileMap, 'the pods mount the changed file').toBeDefined()
      const frontends = checkFrontendsFile(String(changed.fileMap!.data!['frontends.yaml']), 'multi-frontend (changed)')
      expect(frontends[1]).toMatchObject({ name: 'admin', sessionIdleTimeout: 600 })
    })
  })

  it.skipIf(!hasKubectl)('the ServiceMonitor is opt-in (a component) and scrapes the metrics Service on /metrics', () => {
    expect(
      render('production').filter((o) => o.kind === 'ServiceMonitor'),
      'not rendered unless asked for',
    ).toEqual([])
    // An overlay of the production overlay with the component, as an operator would write it.
    const dir = join(tmp, 'with-servicemonitor')
    mkdirSync(dir, { recursive: true })
    const rel = (p: string) =>
      posix.join(
        ...dir
          .slice(root.length + 1)
          .split(/[\\/]/)
          .map(() => '..'),
        p,
      )
    writeFileSync(
      join(dir, 'kustomization.yaml'),
      JSON.stringify({
        apiVersion: 'kustomize.config.k8s.io/v1beta1',
        kind: 'Kustomization',
        resources: [rel('deploy/k8s/overlays/production')],
        components: [rel('deploy/k8s/components/servicemonitor')],
      }),
    )
    const objects = kustomize(dir.slice(root.length + 1))
    const monitors = objects.filter((o) => o.kind === 'ServiceMonitor')
    expect(monitors).toHaveLength(1)
    expect(monitors[0]!.apiVersion).toBe('monitoring.coreos.com/v1')
    const spec = monitors[0]!.spec as {
      selector: { matchLabels: Record<string, string> }
      endpoints: Array<{ port: string; path?: string }>
    }
    const selected = servicesOf(objects).filter((svc) =>
      Object.entries(spec.selector.matchLabels).every(([k, v]) => svc.metadata.labels?.[k] === v),
    )
    expect(selected.map((svc) => svc.spec.ports.map((p) => p.name))).toEqual([['metrics']])
    expect(spec.endpoints).toEqual([expect.objectContaining({ port: 'metrics', path: '/metrics' })])
  })
})

// ---------------------------------------------------------------------------

interface ComposeService {
  image?: string
  build?: { context?: string; dockerfile?: string; target?: string }
  command?: string[] | string
  environment?: Record<string, string | number | boolean | null> | string[]
  ports?: Array<string | { target: number; published: string | number; host_ip?: string }>
  volumes?: string[]
  network_mode?: string
  read_only?: boolean
  healthcheck?: { test: string[] | string }
}

function serviceEnv(service: ComposeService): Record<string, string> {
  const env: Record<string, string> = {}
  if (Array.isArray(service.environment)) {
    for (const entry of service.environment) {
      const i = entry.indexOf('=')
      env[i < 0 ? entry : entry.slice(0, i)] = i < 0 ? '' : entry.slice(i + 1)
    }
  } else {
    for (const [k, v] of Object.entries(service.environment ?? {})) env[k] = v === null ? '' : String(v)
  }
  return env
}

/** Compose's ${VAR}, ${VAR:?msg}, ${VAR:-default} interpolation, from `vars`. */
function interpolate(value: string, vars: Record<string, string>): string {
  return value.replace(
    /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?([?-])([^}]*))?\}/g,
    (_m, name: string, op: string | undefined, arg: string | undefined) => {
      const v = vars[name]
      if (v) return v
      if (op === '-') return arg ?? ''
      throw new Error(`${name} is not set${op === '?' ? `: ${arg}` : ''}`)
    },
  )
}

/** Host port published for a container port, on a service's `ports`. */
function published(service: ComposeService, containerPort: number): { host: string | undefined; port: number } | undefined {
  for (const p of service.ports ?? []) {
    if (typeof p === 'string') {
      const parts = p.split(':')
      const target = Number(parts.at(-1))
      if (target !== containerPort) continue
      return { host: parts.length === 3 ? parts[0] : undefined, port: Number(parts.at(-2) ?? target) }
    }
    if (p.target === containerPort) return { host: p.host_ip, port: Number(p.published) }
  }
  return undefined
}

const portOf = (url: URL): number => Number(url.port || (url.protocol === 'https:' ? 443 : 80))

describe('docker compose demo (docker-compose.yml)', () => {
  const text = read('docker-compose.yml')
  const compose = parse(text) as { services: Record<string, ComposeService>; volumes?: Record<string, unknown> }
  const { redis, idp, api, tokenward } = compose.services
  const stageNames = parseDockerfile(read('deploy/Dockerfile')).map((s) => s.name)
  const secrets = generatedSecrets()

  it('has redis, idp, api and tokenward', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['api', 'idp', 'redis', 'tokenward'])
  })

  it('redis: 7-alpine, append-only persistence on a volume, healthchecked with redis-cli ping', () => {
    expect(redis!.image).toMatch(/^redis:7(\.\d+)*-alpine$/)
    const command = Array.isArray(redis!.command) ? redis!.command : (redis!.command ?? '').split(/\s+/)
    expect(command[command.indexOf('--appendonly') + 1]).toBe('yes')
    const volume = redis!.volumes?.find((v) => v.split(':')[1] === '/data')
    expect(volume, 'a volume on /data').toBeDefined()
    expect(compose.volumes ?? {}, 'a named volume').toHaveProperty(volume!.split(':')[0]!)
    const test = [redis!.healthcheck?.test].flat().join(' ')
    expect(test).toContain('redis-cli')
    expect(test).toContain('ping')
  })

  it("tokenward runs the production image read-only; idp and api run the dev image's entry scripts", () => {
    expect(tokenward!.build?.dockerfile).toBe('deploy/Dockerfile')
    expect(tokenward!.build?.target).toBe('runtime')
    expect(tokenward!.read_only).toBe(true)
    expect(tokenward!.command, "the image's CMD runs").toBeUndefined()
    for (const [service, script] of [
      [idp!, 'demo/idp-main.ts'],
      [api!, 'demo/api-main.ts'],
    ] as const) {
      expect(service.build?.dockerfile).toBe('deploy/Dockerfile')
      expect(stageNames).toContain(service.build?.target)
      expect(service.build?.target).toBe('dev')
      expect([service.command].flat()).toContain(script)
      expect(existsSync(join(root, script))).toBe(true)
    }
  })

  it('every BFF_* name in the compose file is one src/config.ts reads', () => {
    for (const name of bffNames(text)) expect(configVars, `${name} in docker-compose.yml`).toContain(name)
  })

  it('commits no secret: the secrets are required interpolations from .env', () => {
    const env = serviceEnv(tokenward!)
    for (const name of ['BFF_CLIENT_SECRET', 'BFF_COOKIE_SECRET', 'BFF_ENCRYPTION_KEYS']) {
      expect(env[name], name).toMatch(new RegExp(`^\\$\\{${name}:\\?[^}]+\\}$`))
    }
    // The dev IdP registers the client with the very same secret.
    expect(serviceEnv(idp!).DEMO_CLIENT_SECRET).toBe(env.BFF_CLIENT_SECRET)
  })

  it("tokenward's environment has every required variable and passes loadConfig", () => {
    const env = serviceEnv(tokenward!)
    for (const name of REQUIRED) expect(env[name], name).toBeTruthy()
    const resolved = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, interpolate(v, secrets)]))
    const config = loadConfig(resolved)
    expect(config.routes.length).toBeGreaterThan(0)
  })

  it('one shared network namespace: the browser and every container reach the issuer, API and tokenward by the same URLs', () => {
    const env = Object.fromEntries(Object.entries(serviceEnv(tokenward!)).map(([k, v]) => [k, interpolate(v, secrets)]))
    const config = loadConfig(env)
    const idpEnv = serviceEnv(idp!)
    const apiEnv = serviceEnv(api!)

    // api and tokenward live in idp's network namespace, so localhost means the same everywhere.
    expect(tokenward!.network_mode).toBe('service:idp')
    expect(api!.network_mode).toBe('service:idp')
    expect(idp!.network_mode).toBeUndefined()

    // The issuer: the same string for tokenward, the dev IdP and the demo API.
    expect(idpEnv.DEMO_IDP_ISSUER).toBe(config.issuer)
    expect(apiEnv.DEMO_IDP_ISSUER).toBe(config.issuer)
    const issuer = new URL(config.issuer)
    expect(issuer.hostname).toBe('localhost')
    expect(Number(idpEnv.DEMO_IDP_PORT)).toBe(portOf(issuer))
    // Published ports land on the container's interface, so the IdP binds all of them.
    expect(idpEnv.DEMO_IDP_HOST).toBe('0.0.0.0')
    expect(published(idp!, portOf(issuer))?.port, "the issuer's port is published for the browser").toBe(portOf(issuer))

    // tokenward: the browser opens BFF_PUBLIC_URL, published from the shared namespace.
    expect(config.publicUrl.hostname).toBe('localhost')
    expect(config.port).toBe(portOf(config.publicUrl))
    expect(['0.0.0.0', '::']).toContain(config.host)
    expect(published(idp!, config.port)?.port, "tokenward's port is published for the browser").toBe(portOf(config.publicUrl))
    // The dev IdP's client redirects back to that same origin, and uses tokenward's client id.
    expect(idpEnv.DEMO_PUBLIC_URL).toBe(config.publicOrigin)
    expect(idpEnv.DEMO_CLIENT_ID).toBe(config.clientId)

    // The demo API: the route's upstream, and the audience the IdP issues tokens for.
    const upstream = config.routes[0]!.upstream
    expect(apiEnv.DEMO_API_AUDIENCE).toBe(upstream.origin)
    expect(idpEnv.DEMO_API_AUDIENCE).toBe(upstream.origin)
    expect(Number(apiEnv.DEMO_API_PORT)).toBe(portOf(upstream))
    expect(config.scopes).toContain('api')

    // Redis by service name, on the project network the namespace is attached to.
    expect(new URL(config.redis.url).hostname).toBe('redis')
  })

  it('serves the demo SPA from a read-only mount of demo/spa', () => {
    const env = serviceEnv(tokenward!)
    const mount = tokenward!.volumes?.map((v) => v.split(':')).find((parts) => parts[1] === env.BFF_STATIC_DIR)
    expect(mount, 'a volume at BFF_STATIC_DIR').toBeDefined()
    expect(mount![2]).toBe('ro')
    expect(existsSync(join(root, mount![0]!, 'index.html'))).toBe(true)
  })

  it('`docker compose config` accepts the file', (ctx) => {
    const version = spawnSync('docker', ['compose', 'version'], { encoding: 'utf8' })
    if (version.status !== 0) {
      ctx.skip('no working `docker compose` here (the docker CLI has no compose plugin); the static checks above still ran')
    }
    const r = spawnSync('docker', ['compose', '-f', 'docker-compose.yml', 'config', '--quiet'], {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, ...secrets },
    })
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
  })
})

// ---------------------------------------------------------------------------

describe('deploy/env.example', () => {
  const text = read('deploy/env.example')

  it('names only variables src/config.ts reads, and documents every one of them', () => {
    const names = bffNames(text)
    for (const name of names) expect(configVars, `${name} in deploy/env.example`).toContain(name)
    for (const name of configVars) expect(names, `${name} documented in deploy/env.example`).toContain(name)
    expect(text).toMatch(/^# PORT=/m)
  })

  it('holds no value for any secret', () => {
    const assigned = text.split('\n').filter((l) => /^[A-Z_][A-Z0-9_]*=/.test(l))
    expect(assigned.map((l) => l.split('=')[0]).sort()).toEqual(['BFF_CLIENT_SECRET', 'BFF_COOKIE_SECRET', 'BFF_ENCRYPTION_KEYS'])
    for (const line of assigned) expect(line, 'empty until the user fills it in').toMatch(/=$/)
    expect(text).toContain('keys generate')
  })
})

// ---------------------------------------------------------------------------

/** An override file from test/fixtures/helm/. */
function helmFixture(name: string): Record<string, unknown> {
  return parse(read(`test/fixtures/helm/${name}.yaml`)) as Record<string, unknown>
}

/** Values as Helm merges them: maps deeply, anything else (lists, scalars) replaced by the override. */
function helmValues(base: Record<string, unknown>, override: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base }
  const isMap = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)
  for (const [k, v] of Object.entries(override)) {
    const b = out[k]
    out[k] = isMap(b) && isMap(v) ? helmValues(b, v) : v
  }
  return out
}

describe('Helm chart (deploy/helm/tokenward)', () => {
  const chartDir = 'deploy/helm/tokenward'
  const chart = parse(read(`${chartDir}/Chart.yaml`)) as Record<string, unknown>
  const values = parse(read(`${chartDir}/values.yaml`)) as Record<string, unknown>
  const templateFiles = readdirSync(join(root, chartDir, 'templates'))

  it('is a v2 chart with the expected templates', () => {
    expect(chart).toMatchObject({ apiVersion: 'v2', name: 'tokenward', type: 'application' })
    expect(chart.version).toBeTypeOf('string')
    expect(chart.appVersion).toBeTypeOf('string')
    for (const f of ['deployment.yaml', 'service.yaml', 'configmap.yaml', 'secret.yaml', 'pdb.yaml', '_helpers.tpl', 'NOTES.txt']) {
      expect(templateFiles).toContain(f)
    }
  })

  it('every .Values path the templates use exists in values.yaml', () => {
    const missing: string[] = []
    for (const f of templateFiles) {
      const source = read(`${chartDir}/templates/${f}`)
      for (const m of source.matchAll(/\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)/g)) {
        let node: unknown = values
        for (const key of m[1]!.slice(1).split('.')) {
          if (node === null || typeof node !== 'object' || !Object.hasOwn(node, key)) {
            missing.push(`${f}: .Values${m[1]}`)
            break
          }
          node = (node as Record<string, unknown>)[key]
        }
      }
    }
    expect(missing).toEqual([])
  })

  it('templates name only variables src/config.ts reads, and provide every required one', () => {
    const all = templateFiles.map((f) => read(`${chartDir}/templates/${f}`)).join('\n')
    for (const name of bffNames(all)) expect(deployVars, `${name} in the chart`).toContain(name)
    const provided = bffNames(read(`${chartDir}/templates/configmap.yaml`) + read(`${chartDir}/templates/secret.yaml`))
    for (const name of REQUIRED) expect(provided, name).toContain(name)
    // Every Redis mode's settings can be rendered.
    for (const name of ['BFF_REDIS_MODE', 'BFF_REDIS_NODES', 'BFF_REDIS_SENTINEL_NAME']) expect(provided).toContain(name)
    // Routes are a YAML list rendered to the BFF_ROUTES JSON.
    expect(read(`${chartDir}/templates/configmap.yaml`)).toMatch(/BFF_ROUTES: \{\{ \.Values\.routes \| toJson \| quote \}\}/)
  })

  it('the default values describe a valid, replicated deployment', () => {
    const v = values as {
      replicaCount: number
      publicUrl: string
      oidc: { issuer: string; clientId: string }
      routes: unknown[]
      redis: { mode: string; url: string }
      podDisruptionBudget: { enabled: boolean; minAvailable: number }
      existingSecret: string
      secrets: Record<string, string>
    }
    expect(v.replicaCount).toBeGreaterThanOrEqual(2)
    expect(v.podDisruptionBudget).toEqual({ enabled: true, minAvailable: 1 })
    expect(['standalone', 'sentinel', 'cluster']).toContain(v.redis.mode)
    expect(v.existingSecret).toBe('')
    for (const [k, s] of Object.entries(v.secrets)) expect(s, `secrets.${k} has no default`).toBe('')
    // No example default for what differs per install: `required` (and the schema) must fire.
    expect(v.publicUrl, 'publicUrl has no default').toBe('')
    expect(v.oidc.issuer, 'oidc.issuer has no default').toBe('')
    const least = helmFixture('valid') as { publicUrl: string; oidc: { issuer: string } }
    const config = loadConfig({
      BFF_PUBLIC_URL: least.publicUrl,
      BFF_ISSUER: least.oidc.issuer,
      BFF_CLIENT_ID: v.oidc.clientId,
      BFF_ROUTES: JSON.stringify(v.routes),
      BFF_REDIS_URL: v.redis.url,
      BFF_REDIS_MODE: v.redis.mode,
      ...generatedSecrets(),
    })
    expect(config.routes.length).toBeGreaterThan(0)
  })

  it('`helm template` renders the same restrictive deployment', (ctx) => {
    const helm = spawnSync('helm', ['version', '--short'], { encoding: 'utf8' })
    if (helm.status !== 0) {
      ctx.skip('no `helm` binary on PATH: the template checks above are static only')
    }
    mkdirSync(tmp, { recursive: true })
    const real = generatedSecrets()
    const chartSecrets = {
      clientSecret: real.BFF_CLIENT_SECRET,
      cookieSecret: real.BFF_COOKIE_SECRET,
      encryptionKeys: real.BFF_ENCRYPTION_KEYS,
    }
    const render = (name: string, extra: Record<string, unknown>): K8sObject[] => {
      const file = join(tmp, `values-${name}.json`)
      // JSON is YAML: no escaping trouble with secrets on the command line.
      writeFileSync(file, JSON.stringify({ ...helmFixture('valid'), secrets: chartSecrets, ...extra }))
      const r = spawnSync('helm', ['template', 'tokenward', join(root, chartDir), '-f', file], { encoding: 'utf8' })
      expect(r.stderr).not.toMatch(/Error/)
      expect(r.status).toBe(0)
      return parseManifests(r.stdout, `helm template (${name})`)
    }
    const objects = render('default', {})
    const { configMap, secret, container } = checkDeployment(objects, 'helm template')
    const config = loadConfig(envFrom(configMap, secret))
    expect(config.port).toBe(container.ports![0]!.containerPort)
    expect(config.routes.map((r) => r.prefix)).toEqual((values.routes as Array<{ prefix: string }>).map((r) => r.prefix))

    const sentinel = render('sentinel', {
      redis: { ...(values.redis as object), mode: 'sentinel', nodes: ['s1:26379', 's2:26379'], sentinelName: 'mymaster' },
    })
    const s = checkDeployment(sentinel, 'helm template (sentinel)')
    const sc = loadConfig(envFrom(s.configMap, s.secret))
    expect(sc.redis).toMatchObject({
      mode: 'sentinel',
      sentinelName: 'mymaster',
      nodes: [
        { host: 's1', port: 26379 },
        { host: 's2', port: 26379 },
      ],
    })

    // One replica: no PodDisruptionBudget (minAvailable 1 of 1 pod blocks every node drain).
    const single = render('single-replica', helmFixture('single-replica'))
    expect(single.filter((o) => o.kind === 'PodDisruptionBudget')).toEqual([])
    expect(single.find((o) => o.kind === 'Deployment')?.spec?.replicas).toBe(1)

    // Numbers rendered exactly, and extraEnv overrides a ConfigMap key (env after envFrom) instead of duplicating it.
    const exact = render('exact', {
      session: { idleTimeout: 3000000, maxAge: 3000000 },
      extraEnv: { BFF_SESSION_MAX_AGE: '3600', BFF_ID_TOKEN_MAX_AGE: '3000000' },
    })
    const e = checkDeployment(exact, 'helm template (exact)')
    expect(e.configMap.data).toMatchObject({ BFF_SESSION_IDLE_TIMEOUT: '3000000' })
    expect(e.container.env).toEqual(
      expect.arrayContaining([
        { name: 'BFF_SESSION_MAX_AGE', value: '3600' },
        { name: 'BFF_ID_TOKEN_MAX_AGE', value: '3000000' },
      ]),
    )
    const podEnv = { ...envFrom(e.configMap, e.secret), ...Object.fromEntries((e.container.env ?? []).map((x) => [x.name, x.value ?? ''])) }
    expect(loadConfig(podEnv)).toMatchObject({ session: { idleTimeout: 3000000, maxAge: 3600 }, idTokenMaxAge: 3000000 })

    // Every opt-in object renders, and the Ingress never routes the metrics port.
    const all = render('all', {
      autoscaling: { enabled: true },
      metrics: { enabled: true, serviceMonitor: { enabled: true } },
      ingress: { enabled: true },
      networkPolicy: { enabled: true },
      serviceAccount: { create: true },
    })
    const kinds = all.map((o) => o.kind)
    for (const kind of ['HorizontalPodAutoscaler', 'ServiceMonitor', 'Ingress', 'NetworkPolicy', 'ServiceAccount', 'PodDisruptionBudget'])
      expect(kinds, kind).toContain(kind)
    expect(JSON.stringify(all.find((o) => o.kind === 'Ingress'))).not.toMatch(/metrics/)
    // The HPA owns the replica count, so the Deployment leaves it unset.
    expect(all.find((o) => o.kind === 'Deployment')?.spec).not.toHaveProperty('replicas')
    expect(all.find((o) => o.kind === 'ConfigMap')?.data).toMatchObject({ BFF_METRICS_LISTEN: '0.0.0.0:9464' })

    // The pod-level knobs reach the pod: the SPA from a read-only volume, labels
    // and annotations, a priority class, and an OpenShift-style security context
    // (no runAsNonRoot forced on top of what the platform assigns).
    const pod = render('pod', {
      extraVolumes: [{ name: 'spa', configMap: { name: 'my-spa' } }],
      extraVolumeMounts: [{ name: 'spa', mountPath: '/srv/spa', readOnly: true }],
      extraEnv: { BFF_STATIC_DIR: '/srv/spa' },
      podLabels: { team: 'web' },
      podAnnotations: { 'example.com/owner': 'web' },
      priorityClassName: 'high',
      podSecurityContext: { runAsNonRoot: true, runAsUser: 1000680000, fsGroup: 1000680000 },
    })
    const p = checkDeployment(pod, 'helm template (pod)')
    const template = pod.find((o) => o.kind === 'Deployment')?.spec?.template as {
      metadata: { labels: Record<string, string>; annotations?: Record<string, string> }
      spec: { priorityClassName?: string; volumes?: unknown[]; securityContext?: Record<string, unknown> }
    }
    expect(template.metadata.labels).toMatchObject({ team: 'web' })
    expect(template.metadata.annotations).toMatchObject({ 'example.com/owner': 'web' })
    expect(template.spec.priorityClassName).toBe('high')
    expect(template.spec.volumes).toEqual(expect.arrayContaining([{ name: 'spa', configMap: { name: 'my-spa' } }]))
    expect(template.spec.securityContext).toMatchObject({ runAsUser: 1000680000, fsGroup: 1000680000 })
    expect(p.container.volumeMounts).toEqual(expect.arrayContaining([{ name: 'spa', mountPath: '/srv/spa', readOnly: true }]))
    const podConfig = loadConfig({
      ...envFrom(p.configMap, p.secret),
      ...Object.fromEntries((p.container.env ?? []).map((x) => [x.name, x.value ?? ''])),
    })
    expect(podConfig.staticDir).toBe('/srv/spa')

    // Mutual TLS (RFC 8705): no client secret in the chart's Secret, the
    // certificate from a mounted kubernetes.io/tls Secret, and routes that say
    // `mtls`. The mount path is pointed at real files made here, so loadConfig
    // checks the pair as the pod would.
    const pki = createPki()
    const issued = pki.client('chart', '/CN=tokenward-chart')
    const mtls = render('mtls', {
      oidc: { ...(helmFixture('valid').oidc as object), clientAuth: 'tls_client_auth' },
      secrets: { cookieSecret: chartSecrets.cookieSecret, encryptionKeys: chartSecrets.encryptionKeys },
      routes: [{ prefix: '/api', upstream: 'https://api.internal', token: 'user', mtls: true }],
      extraVolumes: [{ name: 'client-tls', secret: { secretName: 'tokenward-client-tls' } }],
      extraVolumeMounts: [{ name: 'client-tls', mountPath: '/etc/tokenward/tls', readOnly: true }],
      extraEnv: { BFF_TLS_CLIENT_CERT: issued.certFile, BFF_TLS_CLIENT_KEY: issued.keyFile },
    })
    const t = checkDeployment(mtls, 'helm template (mtls)')
    expect(Object.keys(envFrom(t.configMap, t.secret))).not.toContain('BFF_CLIENT_SECRET')
    expect(envFrom(t.configMap, t.secret)).toMatchObject({ BFF_CLIENT_AUTH: 'tls_client_auth' })
    expect(t.container.volumeMounts).toEqual(
      expect.arrayContaining([{ name: 'client-tls', mountPath: '/etc/tokenward/tls', readOnly: true }]),
    )
    const mtlsConfig = loadConfig({
      ...envFrom(t.configMap, t.secret),
      ...Object.fromEntries((t.container.env ?? []).map((x) => [x.name, x.value ?? ''])),
    })
    expect(mtlsConfig.clientAuth).toBe('tls_client_auth')
    expect(mtlsConfig.routes[0]?.mtls).toBe(true)
    pki.close()

    // `helm lint`: clean with the values `render('default')` used; failing without publicUrl and oidc.issuer.
    const lint = (args: string[]) => spawnSync('helm', ['lint', join(root, chartDir), ...args], { encoding: 'utf8' })
    const good = lint(['-f', join(tmp, 'values-default.json')])
    expect(good.status, good.stdout + good.stderr).toBe(0)
    const bare = lint([])
    expect(bare.status, 'helm lint without publicUrl').not.toBe(0)
    expect(bare.stdout + bare.stderr).toMatch(/publicUrl/)
  })

  it('`helm template` with `frontends`: the file in a ConfigMap mounted read-only at BFF_CONFIG_FILE, one Ingress rule per host', (ctx) => {
    if (spawnSync('helm', ['version', '--short'], { encoding: 'utf8' }).status !== 0) {
      ctx.skip('no `helm` binary on PATH: the template checks above are static only')
    }
    mkdirSync(tmp, { recursive: true })
    const fixture = helmFixture('frontends') as { frontends: Frontend[]; frontendSecrets: string[] }
    const helmTemplate = (name: string, vals: Record<string, unknown>, args: string[] = []) => {
      const file = join(tmp, `values-frontends-${name}.json`)
      writeFileSync(file, JSON.stringify(vals))
      return spawnSync('helm', ['template', 'tokenward', join(root, chartDir), '-f', file, ...args], { encoding: 'utf8' })
    }
    const render = (name: string, vals: Record<string, unknown>): K8sObject[] => {
      const r = helmTemplate(name, vals)
      expect(r.stderr).not.toMatch(/Error/)
      expect(r.status, r.stderr).toBe(0)
      return parseManifests(r.stdout, `helm template (frontends, ${name})`)
    }
    const opts = { ingress: { enabled: true, tlsSecretName: 'tokenward-tls' }, metrics: { enabled: true } }
    const objects = render('default', { ...fixture, ...opts })
    const { configMap, secret, container, deployment } = checkDeployment(objects, 'helm template (frontends)')

    // The main ConfigMap points at the file and no longer carries a single frontend.
    expect(configMap.data?.[CONFIG_FILE_VARIABLE]).toBe(FRONTENDS_PATH)
    for (const name of ['BFF_PUBLIC_URL', 'BFF_ROUTES']) expect(configMap.data).not.toHaveProperty(name)
    const mount = container.volumeMounts?.find((m) => m.mountPath === FRONTENDS_PATH)
    expect(mount, 'a read-only mount at BFF_CONFIG_FILE').toMatchObject({ subPath: 'frontends.yaml', readOnly: true })
    const volume = deployment.spec.template.spec.volumes?.find((v) => v.name === mount!.name)
    const fileMap = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === volume?.configMap?.name)
    expect(fileMap, 'the mounted ConfigMap').toBeDefined()
    expect(fileMap!.metadata.name).not.toBe(configMap.metadata.name)
    expect(Object.keys(fileMap!.data ?? {})).toEqual(['frontends.yaml'])
    const frontends = checkFrontendsFile(String(fileMap!.data!['frontends.yaml']), 'helm template (frontends)')
    // Exactly the values: numbers digit for digit, lists and references as written.
    expect(frontends).toEqual(fixture.frontends)

    // The frontends' secrets come from frontendSecrets; with no `secrets.*` default the chart renders no Secret.
    expect(objects.filter((o) => o.kind === 'Secret')).toEqual([])
    expect(container.envFrom!.filter((e) => e.secretRef).map((e) => e.secretRef!.name)).toEqual(fixture.frontendSecrets)
    // Each frontend's environment (the format's rule) is a valid tokenward configuration.
    for (const f of frontends) {
      const config = loadConfig(frontendEnv(f, envFrom(configMap, secret)))
      expect(config.publicUrl.host, f.name).toBe(new URL(f.publicUrl).host)
      expect(config.routes.map((r) => r.prefix)).toEqual(f.routes!.map((r) => r.prefix))
    }
    expect(loadConfig(frontendEnv(frontends[0]!, envFrom(configMap, secret))).session.maxAge).toBe(3000000)

    // One rule per frontend host (without the port an Ingress host cannot carry), to the http port only.
    const ingress = ingressOf(objects)
    const hosts = frontends.map((f) => new URL(f.publicUrl).hostname)
    expect(ingress.hosts).toEqual(hosts)
    expect(ingress.tlsHosts).toEqual(hosts)
    for (const backend of ingress.backends) expect(backend).toEqual({ service: { name: 'tokenward', port: { name: 'http' } } })
    expect(ingress.text).not.toMatch(/metrics/)

    // A changed file changes checksum/frontends on the pod template, and only that: the pods roll.
    const annotations = (objs: K8sObject[]) => (objs.find((o) => o.kind === 'Deployment') as unknown as Deployment).spec.template.metadata
    const changed = render('changed', {
      ...fixture,
      ...opts,
      frontends: [{ ...fixture.frontends[0], sessionIdleTimeout: 900 }, fixture.frontends[1]],
    })
    const before = annotations(objects).annotations ?? {}
    const after = annotations(changed).annotations ?? {}
    expect(before['checksum/frontends']).toMatch(/^[0-9a-f]{64}$/)
    expect(after['checksum/frontends']).not.toBe(before['checksum/frontends'])
    expect(after['checksum/config']).toBe(before['checksum/config'])

    // Refused: publicUrl next to frontends (the schema), a duplicate host, and an inline secret
    // even past the schema, without echoing the secret.
    const both = helmTemplate('public-url', { ...fixture, publicUrl: 'https://app.example.com' })
    expect(both.status).not.toBe(0)
    expect(both.stderr).toMatch(/publicUrl/)
    const duplicate = helmTemplate('duplicate', {
      ...fixture,
      frontends: [fixture.frontends[0], { ...fixture.frontends[1], publicUrl: fixture.frontends[0]!.publicUrl }],
    })
    expect(duplicate.status).not.toBe(0)
    expect(duplicate.stderr).toMatch(/frontends\[1\] \(admin\): the host shop\.example\.com of publicUrl is another frontend's/)
    const unprovided = helmTemplate('no-secret', { ...fixture, frontendSecrets: [] })
    expect(unprovided.status).not.toBe(0)
    expect(unprovided.stderr).toMatch(/references a variable, but no Secret provides it/)
    const inlineValues = helmFixture('frontends-inline-secret') as { frontends: Array<{ cookieSecret: string }> }
    for (const args of [[], ['--skip-schema-validation']]) {
      const inline = helmTemplate('inline-secret', inlineValues, args)
      expect(inline.status, args.join(' ')).not.toBe(0)
      expect(inline.stderr).toMatch(/cookieSecret/)
      expect(inline.stderr).not.toContain(inlineValues.frontends[0]!.cookieSecret)
      expect(inline.stdout).not.toContain(inlineValues.frontends[0]!.cookieSecret)
    }

    const lint = spawnSync('helm', ['lint', join(root, chartDir), '-f', join(tmp, 'values-frontends-default.json')], { encoding: 'utf8' })
    expect(lint.status, lint.stdout + lint.stderr).toBe(0)
  })
})

describe('Helm values schema (deploy/helm/tokenward/values.schema.json)', () => {
  const chartDir = 'deploy/helm/tokenward'
  const schema = JSON.parse(read(`${chartDir}/values.schema.json`)) as Record<string, unknown>
  const defaults = parse(read(`${chartDir}/values.yaml`)) as Record<string, unknown>
  // Draft-07, which Helm validates values against; strict: the schema itself has no typo'd keyword.
  const validate = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true }).compile(schema)
  /** Helm's view of the errors: each names the field (instance path, or the missing/unknown property). */
  const problems = (values: unknown): string[] =>
    validate(values)
      ? []
      : (validate.errors ?? []).map((e: ErrorObject) => {
          const p = e.params as { missingProperty?: string; additionalProperty?: string }
          const field = [e.instancePath, p.missingProperty ?? p.additionalProperty].filter(Boolean).join('/')
          return `${field.replace(/^\//, '').replace(/\//g, '.')}: ${e.message ?? ''}`
        })

  it('is draft-07 and closed at the top level', () => {
    expect(schema.$schema).toBe('http://json-schema.org/draft-07/schema#')
    expect(schema.additionalProperties).toBe(false)
    // Every top-level key of values.yaml is described.
    expect(Object.keys(schema.properties as object)).toEqual(expect.arrayContaining(Object.keys(defaults)))
  })

  it('accepts values.yaml with the two values that have no default', () => {
    expect(problems(helmValues(defaults, helmFixture('valid')))).toEqual([])
    expect(problems(helmValues(defaults, helmFixture('single-replica')))).toEqual([])
  })

  it('accepts two frontends from one file instead of publicUrl and oidc.issuer', () => {
    expect(problems(helmValues(defaults, helmFixture('frontends')))).toEqual([])
  })

  it.each([
    ['extra-env-number', 'extraEnv.BFF_ID_TOKEN_MAX_AGE', /must be string/],
    ['idle-timeout-duration', 'session.idleTimeout', /must be integer/],
    ['required-unset', 'publicUrl', /must NOT have fewer than 1 characters/],
    ['required-unset', 'oidc.issuer', /must NOT have fewer than 1 characters/],
    ['unknown-key', 'replicas', /must NOT have additional properties/],
    ['frontends-inline-secret', 'frontends.0.cookieSecret', /must match pattern/],
    ['frontends-bad-name', 'frontends.0.name', /must match pattern/],
  ])('rejects test/fixtures/helm/%s.yaml, naming %s', (fixture, field, message) => {
    const found = problems(helmValues(defaults, helmFixture(fixture)))
    expect(
      found.filter((p) => p.startsWith(`${field}: `) && message.test(p)),
      found.join('; '),
    ).not.toEqual([])
  })

  it('with frontends: refuses every inline secret, a missing publicUrl, a process-wide key, and the single-frontend publicUrl', () => {
    const two = helmFixture('frontends') as { frontends: Array<Record<string, unknown>> }
    const withFrontend = (change: Record<string, unknown>, top: Record<string, unknown> = {}) =>
      problems(helmValues(defaults, { ...two, ...top, frontends: [{ ...two.frontends[0], ...change }, two.frontends[1]] }))
    for (const key of ['clientSecret', 'clientPrivateKey', 'cookieSecret', 'encryptionKeys', 'dpopKey']) {
      const inline = 'c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA'
      for (const value of [inline, '${SHOP_SECRET}' + inline, inline + '${SHOP_SECRET}', '$SHOP_SECRET']) {
        const found = withFrontend({ [key]: value })
        expect(found, `${key}: ${value}`).toEqual([expect.stringMatching(new RegExp(`^frontends\\.0\\.${key}: must match pattern`))])
        // Helm prints these messages: they never echo the value.
        expect(found.join('\n')).not.toContain(inline)
      }
    }
    expect(withFrontend({ publicUrl: undefined })).toEqual([expect.stringMatching(/^frontends\.0\.publicUrl: must have required property/)])
    expect(withFrontend({ redisUrl: 'redis://other:6379' })).toContainEqual(expect.stringMatching(/^frontends\.0\.redisUrl: /))
    expect(withFrontend({ port: 8080 })).toContainEqual(expect.stringMatching(/^frontends\.0\.port: /))
    // The schema refuses exactly what tokenward refuses in a frontend: every
    // process-wide variable it knows, under its file key.
    for (const variable of KNOWN_VARIABLES.filter((v) => v.startsWith('BFF_') && isProcessWide(v))) {
      expect(withFrontend({ [keyOf(variable)]: 'x' }), variable).toContainEqual(
        expect.stringMatching(new RegExp(`^frontends\\.0\\.${keyOf(variable)}: `)),
      )
    }
    expect(withFrontend({}, { publicUrl: 'https://app.example.com' })).toContainEqual(
      expect.stringMatching(/^publicUrl: must NOT have more than 0 characters/),
    )
    // Without frontends, publicUrl and oidc.issuer are required as before.
    expect(problems(helmValues(defaults, { frontends: [] }))).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^publicUrl: must NOT have fewer/),
        expect.stringMatching(/^oidc\.issuer: must NOT have fewer/),
      ]),
    )
  })

  it('rejects an example URL that is not a URL, and a route list that is empty', () => {
    expect(problems(helmValues(defaults, { ...helmFixture('valid'), publicUrl: 'app.example.com' }))).toEqual([
      expect.stringMatching(/^publicUrl: must match pattern/),
    ])
    expect(problems(helmValues(defaults, { ...helmFixture('valid'), routes: [] }))).toEqual([expect.stringMatching(/^routes: /)])
  })
})
