// Redis Cluster and Sentinel topologies for tests, built from Debian's plain
// redis-server (Debian's package, nothing more needed): every process is a child of the test run, on
// free ports, with its files in a temp dir that close() removes. Nothing is
// persisted (no RDB, no AOF), so no state leaks between runs.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { freePort } from './ports.js'
import { hasRedisServer } from './redis-server.js'

export interface HostPort {
  readonly host: string
  readonly port: number
}

export interface RedisClusterTopology {
  /** The seed nodes, as BFF_REDIS_NODES wants them: `127.0.0.1:p1,127.0.0.1:p2,...`. */
  readonly nodesEnv: string
  readonly nodes: readonly HostPort[]
  /** A valid redis:// URL for BFF_REDIS_URL (cluster mode reads the nodes instead). */
  readonly url: string
  /** Keys matching `pattern` on each master, scanned node by node (independent of tokenward). */
  keysByNode(pattern: string): Promise<Array<{ node: HostPort; keys: string[] }>>
  close(): Promise<void>
}

export interface FailoverResult {
  readonly from: HostPort
  readonly to: HostPort
  /** From the trigger until every sentinel finished the failover and the new master answered as one. */
  readonly tookMs: number
}

export interface FailoverOptions {
  /**
   * `command` (default): `SENTINEL FAILOVER <name>`, an orderly switch; the
   * old master keeps running and is demoted later. `kill`: SIGKILL the master,
   * so the sentinels must notice it is down first; it never comes back.
   */
  readonly how?: 'command' | 'kill'
  readonly timeoutMs?: number
}

export interface RedisSentinelTopology {
  readonly name: string
  /** The sentinels, as BFF_REDIS_NODES wants them in sentinel mode. */
  readonly nodesEnv: string
  readonly sentinels: readonly HostPort[]
  /** A valid redis:// URL for BFF_REDIS_URL (sentinel mode asks the sentinels for the master). */
  readonly url: string
  /** The master as the first sentinel reports it now. */
  master(): Promise<HostPort>
  /** Waits until every replica has acknowledged every write made on the master so far. */
  waitForReplication(timeoutMs?: number): Promise<void>
  /**
   * Triggers a failover (see FailoverOptions), then waits until every
   * sentinel has finished it (switched its configuration and published
   * +switch-master) and the new master answers as a master.
   */
  failover(options?: FailoverOptions): Promise<FailoverResult>
  /**
   * Waits until `old` (a master before an orderly failover) has been demoted
   * by the sentinels and is a connected replica of the current master.
   * Sentinel waits about 8 s after the switch before it reconfigures it.
   */
  waitForDemotion(old: HostPort, timeoutMs?: number): Promise<number>
  close(): Promise<void>
}

interface Proc {
  readonly child: ChildProcess
  /** Recent output, for error messages when a process fails to come up. */
  readonly output: () => string
}

const LOCAL = '127.0.0.1'

function requireRedis(): void {
  if (!hasRedisServer())
    throw new Error('redis-server is not installed: install it (apt-get install redis-server) to run the cluster and sentinel tests')
}

// Every child still running and temp dir still present, cleaned up when this
// process exits without close() (a test that threw in beforeAll, a worker that
// process.exit()s), so no redis-server or file outlives the run.
const running = new Set<ChildProcess>()
const dirs = new Set<string>()
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL')
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

function tempDir(kind: string): string {
  const dir = mkdtempSync(join(tmpdir(), `tokenward-${kind}-`))
  dirs.add(dir)
  return dir
}

async function cleanUp(procs: readonly Proc[], dir: string): Promise<void> {
  await killAll(procs)
  rmSync(dir, { recursive: true, force: true })
  dirs.delete(dir)
}

function startProcess(args: string[], cwd: string): Proc {
  const child = spawn('redis-server', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  running.add(child)
  child.once('exit', () => running.delete(child))
  let out = ''
  const keep = (d: Buffer) => {
    out = (out + d.toString()).slice(-4000)
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  return { child, output: () => out }
}

async function killAll(procs: readonly Proc[]): Promise<void> {
  await Promise.all(
    procs.map(({ child }) => {
      if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
      // SIGKILL: nothing to flush, and a sentinel or cluster node must not get
      // the chance to rewrite its config on the way out.
      child.kill('SIGKILL')
      return exited
    }),
  )
}

/** A short-lived client that never retries, so a dead node fails the call at once. */
function client(port: number): Redis {
  const r = new Redis({
    host: LOCAL,
    port,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 1000,
    enableOfflineQueue: true,
  })
  r.on('error', () => {})
  return r
}

/** Sends one command to 127.0.0.1:port on a fresh connection. */
export async function redisCall(port: number, ...args: Array<string | number>): Promise<unknown> {
  const r = client(port)
  try {
    return await r.call(String(args[0]), ...args.slice(1))
  } finally {
    r.disconnect()
  }
}

async function poll<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number, procs: readonly Proc[] = []): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const v = await check()
      if (v !== undefined) return v
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) {
      const dead = procs.filter((p) => p.child.exitCode !== null || p.child.signalCode !== null).map((p) => p.output())
      throw new Error(
        `${what} within ${timeoutMs} ms${last ? ` (last error: ${(last as Error).message})` : ''}${dead.length ? `\nexited: ${dead.join('\n')}` : ''}`,
      )
    }
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** Every key matching `pattern` on the node at 127.0.0.1:port. */
export async function scanKeys(port: number, pattern: string): Promise<string[]> {
  const keys: string[] = []
  let cursor = '0'
  do {
    const [next, batch] = (await redisCall(port, 'SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000)) as [string, string[]]
    cursor = next
    keys.push(...batch)
  } while (cursor !== '0')
  return keys
}

/** Runs redis-cli without blocking the test process's event loop. */
function redisCli(args: string[], timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const cli = spawn('redis-cli', args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs })
    let out = ''
    cli.stdout.on('data', (d: Buffer) => (out += d.toString()))
    cli.stderr.on('data', (d: Buffer) => (out += d.toString()))
    cli.on('error', reject)
    cli.on('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`redis-cli ${args.slice(0, 2).join(' ')} failed (${code}): ${out}`)),
    )
  })
}

const pingable = (port: number, procs: readonly Proc[]) =>
  poll(`redis on ${port} did not answer`, async () => ((await redisCall(port, 'PING')) === 'PONG' ? true : undefined), 10_000, procs)

/**
 * Starts a Redis Cluster of `masters` masters and no replicas (enough for
 * slot routing, cross-slot rules and multi-master scans; failover is covered
 * with Sentinel). Each node gets an explicit bus port, as port+10000 may be
 * taken or out of range.
 */
export async function startRedisCluster(options: { masters?: number } = {}): Promise<RedisClusterTopology> {
  requireRedis()
  const count = options.masters ?? 3
  const dir = tempDir('cluster')
  const procs: Proc[] = []
  const nodes: HostPort[] = []
  try {
    for (let i = 0; i < count; i++) {
      const port = await freePort()
      const bus = await freePort()
      nodes.push({ host: LOCAL, port })
      procs.push(
        startProcess(
          [
            '--port',
            String(port),
            '--bind',
            LOCAL,
            '--cluster-enabled',
            'yes',
            '--cluster-port',
            String(bus),
            '--cluster-config-file',
            `nodes-${port}.conf`,
            '--cluster-node-timeout',
            '2000',
            '--dir',
            dir,
            '--save',
            '',
            '--appendonly',
            'no',
            '--loglevel',
            'warning',
          ],
          dir,
        ),
      )
    }
    await Promise.all(nodes.map((n) => pingable(n.port, procs)))
    await redisCli(['--cluster', 'create', ...nodes.map((n) => `${n.host}:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], 30_000)
    // `create` returns once the slots are assigned; every node must also agree
    // the cluster is ok, or the first commands get CLUSTERDOWN.
    await poll(
      'the cluster did not reach cluster_state:ok',
      async () => {
        const infos = await Promise.all(nodes.map((n) => redisCall(n.port, 'CLUSTER', 'INFO')))
        return infos.every((i) => String(i).includes('cluster_state:ok')) ? true : undefined
      },
      15_000,
      procs,
    )
  } catch (err) {
    await cleanUp(procs, dir)
    throw err
  }
  return {
    nodes,
    nodesEnv: nodes.map((n) => `${n.host}:${n.port}`).join(','),
    url: `redis://${LOCAL}:${nodes[0]!.port}`,
    keysByNode: (pattern) => Promise.all(nodes.map(async (node) => ({ node, keys: await scanKeys(node.port, pattern) }))),
    close: () => cleanUp(procs, dir),
  }
}

/**
 * Starts one master, `replicas` replicas and `sentinels` sentinels
 * monitoring the master as `name` (quorum 1, so a single sentinel may act).
 * Resolves once the sentinels know every replica and the replicas are in
 * sync, so a failover can be triggered at once.
 */
export async function startRedisSentinel(
  options: { name?: string; replicas?: number; sentinels?: number } = {},
): Promise<RedisSentinelTopology> {
  requireRedis()
  const name = options.name ?? 'tokenward-test'
  const replicaCount = options.replicas ?? 1
  const sentinelCount = options.sentinels ?? 1
  const dir = tempDir('sentinel')
  const procs: Proc[] = []
  // repl-diskless-sync-delay 0: a master (and a promoted replica) starts a full
  // sync at once instead of waiting 5 s for more replicas to join it.
  const data = (port: number) => [
    '--port',
    String(port),
    '--bind',
    LOCAL,
    '--dir',
    dir,
    '--save',
    '',
    '--appendonly',
    'no',
    '--repl-diskless-sync-delay',
    '0',
    '--loglevel',
    'warning',
  ]
  const sentinelPorts: number[] = []
  const dataProcs = new Map<number, Proc>()
  try {
    const masterPort = await freePort()
    dataProcs.set(masterPort, startProcess(data(masterPort), dir))
    procs.push(dataProcs.get(masterPort)!)
    await pingable(masterPort, procs)
    const replicaPorts: number[] = []
    for (let i = 0; i < replicaCount; i++) {
      const port = await freePort()
      replicaPorts.push(port)
      dataProcs.set(port, startProcess([...data(port), '--replicaof', LOCAL, String(masterPort)], dir))
      procs.push(dataProcs.get(port)!)
    }
    await Promise.all(replicaPorts.map((p) => pingable(p, procs)))
    await poll(
      'the replicas did not finish their initial sync',
      async () => {
        const infos = await Promise.all(replicaPorts.map((p) => redisCall(p, 'INFO', 'replication')))
        return infos.every((i) => String(i).includes('master_link_status:up')) ? true : undefined
      },
      15_000,
      procs,
    )

    for (let i = 0; i < sentinelCount; i++) {
      const port = await freePort()
      sentinelPorts.push(port)
      // A sentinel rewrites its own config file, so each gets a writable one.
      const file = join(dir, `sentinel-${port}.conf`)
      writeFileSync(
        file,
        [
          `port ${port}`,
          `bind ${LOCAL}`,
          `dir ${dir}`,
          `sentinel monitor ${name} ${LOCAL} ${masterPort} 1`,
          // Short timings keep failover tests fast; production keeps the defaults.
          `sentinel down-after-milliseconds ${name} 1000`,
          `sentinel failover-timeout ${name} 10000`,
          `sentinel parallel-syncs ${name} 1`,
          '',
        ].join('\n'),
      )
      procs.push(startProcess([file, '--sentinel', '--loglevel', 'warning'], dir))
    }
    await Promise.all(sentinelPorts.map((p) => pingable(p, procs)))
    await goodReplicas(name, sentinelPorts, replicaCount, procs)
  } catch (err) {
    await cleanUp(procs, dir)
    throw err
  }

  const sentinels: HostPort[] = sentinelPorts.map((port) => ({ host: LOCAL, port }))
  const firstSentinel = sentinels[0]!
  const masterOf = async (sentinelPort: number): Promise<HostPort> => {
    const [host, port] = (await redisCall(sentinelPort, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name)) as [string, string]
    return { host, port: Number(port) }
  }

  return {
    name,
    sentinels,
    nodesEnv: sentinels.map((s) => `${s.host}:${s.port}`).join(','),
    // Any valid URL: sentinel mode takes only credentials and TLS from it.
    url: `redis://${LOCAL}:${firstSentinel.port}`,
    master: () => masterOf(firstSentinel.port),
    async waitForReplication(timeoutMs = 5000) {
      const master = await masterOf(firstSentinel.port)
      const info = String(await redisCall(master.port, 'INFO', 'replication'))
      const expected = Number(/connected_slaves:(\d+)/.exec(info)?.[1] ?? 0)
      // WAIT blocks until that many replicas acknowledged every write so far.
      const acked = Number(await redisCall(master.port, 'WAIT', expected, timeoutMs))
      if (acked < expected) throw new Error(`only ${acked} of ${expected} replicas acknowledged the writes within ${timeoutMs} ms`)
    },
    async failover({ how = 'command', timeoutMs = 20_000 }: FailoverOptions = {}) {
      const from = await masterOf(firstSentinel.port)
      // Both ways need a replica the sentinels consider good (seen, in sync).
      await goodReplicas(name, sentinelPorts, 1, procs)
      const started = Date.now()
      if (how === 'kill') {
        const proc = dataProcs.get(from.port)
        if (!proc) throw new Error(`no process for the master on ${from.port}`)
        await killAll([proc])
      } else {
        const ok = await redisCall(firstSentinel.port, 'SENTINEL', 'FAILOVER', name)
        if (ok !== 'OK') throw new Error(`SENTINEL FAILOVER answered ${String(ok)}`)
      }
      const to = await poll(
        `the sentinels did not finish a failover of ${name}`,
        async () => {
          // GET-MASTER-ADDR-BY-NAME already names the promoted replica while
          // the others are still being reconfigured; the failover is over (and
          // +switch-master published) once SENTINEL MASTER drops
          // failover_in_progress and carries the new address.
          const seen = await Promise.all(
            sentinels.map(async (s) => parseSentinelEntry(await redisCall(s.port, 'SENTINEL', 'MASTER', name))),
          )
          const first = seen[0]!
          const done = seen.every((m) => Number(m.port) !== from.port && m.port === first.port && !m.flags?.includes('failover'))
          if (!done) return undefined
          // Reported is not enough: the promoted replica must accept writes.
          const role = (await redisCall(Number(first.port), 'ROLE')) as [string]
          return role[0] === 'master' ? { host: first.ip ?? LOCAL, port: Number(first.port) } : undefined
        },
        timeoutMs,
        procs,
      )
      return { from, to, tookMs: Date.now() - started }
    },
    async waitForDemotion(old, timeoutMs = 20_000) {
      const started = Date.now()
      await poll(
        `${old.host}:${old.port} was not demoted to a connected replica`,
        async () => {
          const master = await masterOf(firstSentinel.port)
          const role = (await redisCall(old.port, 'ROLE')) as [string, string, number, string]
          return role[0] === 'slave' && Number(role[2]) === master.port && role[3] === 'connected' ? true : undefined
        },
        timeoutMs,
        procs,
      )
      return Date.now() - started
    },
    close: () => cleanUp(procs, dir),
  }
}

/** Waits until every sentinel knows at least `count` replicas that answer and have a live link to the master. */
async function goodReplicas(name: string, sentinelPorts: readonly number[], count: number, procs: readonly Proc[]): Promise<void> {
  // SENTINEL FAILOVER refuses (NOGOODSLAVE), and an automatic failover
  // stalls, until a sentinel has seen a replica answer with a live link.
  await poll(
    'the sentinels know no good replica',
    async () => {
      for (const s of sentinelPorts) {
        const replicas = parseSentinelList(await redisCall(s, 'SENTINEL', 'REPLICAS', name))
        const good = replicas.filter((r) => r.flags === 'slave' && r['master-link-status'] === 'ok')
        if (good.length < count) return undefined
      }
      return true
    },
    15_000,
    procs,
  )
}

/** SENTINEL MASTER answers a flat [key, value, ...] array. */
function parseSentinelEntry(reply: unknown): Record<string, string> {
  const o: Record<string, string> = {}
  const a = Array.isArray(reply) ? (reply as string[]) : []
  for (let i = 0; i + 1 < a.length; i += 2) o[a[i]!] = a[i + 1]!
  return o
}

/** SENTINEL REPLICAS answers a list of flat [key, value, ...] arrays. */
function parseSentinelList(reply: unknown): Array<Record<string, string>> {
  return Array.isArray(reply) ? reply.map(parseSentinelEntry) : []
}
