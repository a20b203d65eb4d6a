import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { freePort } from './ports.js'

export interface Nginx {
  /** Where nginx listens: http://127.0.0.1:<port>. */
  readonly url: string
  readonly port: number
  /** What nginx wrote to stderr (its error log), for failure messages. */
  readonly log: string[]
  close(): Promise<void>
}

/** The nginx binary: on PATH, or Debian's /usr/sbin/nginx (not on a normal user's PATH). */
export function nginxBinary(): string | undefined {
  return ['nginx', '/usr/sbin/nginx'].find((bin) => spawnSync(bin, ['-v'], { stdio: 'ignore' }).status === 0)
}

function waitForListen(port: number, child: ChildProcess, log: string[], timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (child.exitCode !== null) return reject(new Error(`nginx exited with ${child.exitCode}: ${log.join('')}`))
      const s = connect(port, '127.0.0.1')
      s.once('connect', () => {
        s.destroy()
        resolve()
      })
      s.once('error', () => {
        s.destroy()
        if (Date.now() > deadline) reject(new Error(`nginx did not listen on ${port} within ${timeoutMs} ms: ${log.join('')}`))
        else setTimeout(attempt, 50)
      })
    }
    attempt()
  })
}

/**
 * The server block a deployment would use in front of tokenward (see
 * docs/deployment.md), minus TLS: the proxy appends the peer it saw to
 * X-Forwarded-For, which is what tokenward's trusted-proxy parsing reads.
 */
function config(dir: string, port: number, upstream: string): string {
  // Master running as root: workers would switch to nobody/www-data and could
  // not write the private temp directory, so keep them as the current user.
  const user = process.getuid?.() === 0 ? `user ${userInfo().username};\n` : ''
  return `${user}worker_processes 1;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${join(dir, 'client_body')};
  proxy_temp_path ${join(dir, 'proxy')};
  fastcgi_temp_path ${join(dir, 'fastcgi')};
  uwsgi_temp_path ${join(dir, 'uwsgi')};
  scgi_temp_path ${join(dir, 'scgi')};
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass ${upstream};
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
    }
  }
}
`
}

/**
 * Starts nginx from the distribution as a child process on a free port, as a
 * reverse proxy to `upstream` (e.g. tokenward's URL), with its config, pid and
 * temp files in a private temp directory (nothing under /etc or /var).
 */
export async function startNginx(upstream: string): Promise<Nginx> {
  const bin = nginxBinary()
  if (!bin) {
    throw new Error('nginx is not installed: install it (apt-get install nginx); .ci/run does this on CI')
  }
  const dir = mkdtempSync(join(tmpdir(), 'tokenward-nginx-'))
  const port = await freePort()
  writeFileSync(join(dir, 'nginx.conf'), config(dir, port, upstream.replace(/\/$/, '')))
  const log: string[] = []
  // -e stderr: otherwise nginx opens its compiled-in error log under /var/log before reading the config.
  const child = spawn(
    bin,
    ['-p', dir, '-e', 'stderr', '-c', join(dir, 'nginx.conf'), '-g', `daemon off; pid ${join(dir, 'nginx.pid')}; error_log stderr;`],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  )
  child.stderr?.on('data', (d: Buffer) => log.push(d.toString()))
  try {
    await waitForListen(port, child, log)
  } catch (err) {
    child.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    log,
    async close() {
      if (child.exitCode === null) {
        const exited = once(child, 'exit')
        // SIGQUIT: graceful shutdown, the workers finish and exit with the master.
        child.kill('SIGQUIT')
        await exited
      }
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
