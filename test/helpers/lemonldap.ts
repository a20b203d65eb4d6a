// A private LemonLDAP::NG (Debian's packages, 2.16) as an OpenID Provider for
// the interop lane: its own configuration in a temp directory, its FastCGI
// server and an nginx of its own on a free port. Nothing is written under /etc
// or /var; stop() ends both processes and removes the directory.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import {
  accessSync,
  chmodSync,
  chownSync,
  constants,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { generateKeyPairSync, randomUUID } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { nginxBinary } from './nginx.js'
import { freePort } from './ports.js'

/** The packages this helper needs, named in its failure message. */
export const LEMONLDAP_PACKAGES = 'lemonldap-ng lemonldap-ng-fastcgi-server nginx'
const FASTCGI_SERVER = '/usr/sbin/llng-fastcgi-server'
/** The configuration the lemonldap-ng package installs (Demo authentication, demo users dwho/dwho, rtyler/rtyler, msmith/msmith). */
const PACKAGED_CONF = '/var/lib/lemonldap-ng/conf/lmConf-1.json'
const PORTAL_TEMPLATES = '/usr/share/lemonldap-ng/portal/templates'
const PORTAL_STATIC = '/usr/share/lemonldap-ng/portal/htdocs/static/'
const FASTCGI_PARAMS = '/etc/nginx/fastcgi_params'

export interface LemonLdapOptions {
  clientId: string
  clientSecret: string
  redirectUris: readonly string[]
  postLogoutRedirectUris: readonly string[]
  /** The RP may get offline refresh tokens (`offline_access`); default true. */
  allowOffline?: boolean
  /** Access-token lifetime in seconds; default 4, so refreshes happen within a test. */
  accessTokenTtl?: number
  /** PKCE required (RFC 7636); default true. */
  requirePkce?: boolean
  /** No consent page for this RP; default true. */
  bypassConsent?: boolean
  /**
   * No "do you want to log out?" page at the end-session endpoint; default
   * false. LLNG 2.16 applies it only when the request carries an
   * `id_token_hint` (it finds the RP through the hint's `azp`).
   */
  logoutBypassConfirm?: boolean
  /** OpenID Connect Front-Channel Logout: the RP's logout URL, loaded in an iframe of LLNG's logout page. */
  frontChannelLogout?: { url: string; sessionRequired: boolean }
}

/** One request to LLNG's token endpoint, as LLNG's own nginx logged it. */
export interface TokenRequest {
  /** `grant_type` of the form body ('-' when absent); nothing else of the body is logged. */
  grant: string
  status: number
}

export interface LemonLdap {
  /** Where the portal listens: http://127.0.0.1:<port> (also the OIDC issuer). */
  readonly url: string
  readonly issuer: string
  /** Every token-endpoint request so far, oldest first. */
  tokenRequests(): TokenRequest[]
  /** What the FastCGI server and nginx wrote, for failure messages. */
  readonly log: string[]
  stop(): Promise<void>
}

/** Why LLNG cannot run here, or undefined when it can. */
export function lemonLdapMissing(): string | undefined {
  const missing: string[] = []
  if (!existsSync(FASTCGI_SERVER)) missing.push(FASTCGI_SERVER)
  if (!existsSync(PACKAGED_CONF)) missing.push(PACKAGED_CONF)
  if (!existsSync(PORTAL_TEMPLATES)) missing.push(PORTAL_TEMPLATES)
  if (!nginxBinary()) missing.push('nginx')
  if (missing.length === 0) {
    try {
      accessSync(PACKAGED_CONF, constants.R_OK)
    } catch {
      return `${PACKAGED_CONF} is not readable by this user (the package makes it root:www-data 0640)`
    }
    return undefined
  }
  return `missing ${missing.join(', ')}: install Debian's packages (apt-get install ${LEMONLDAP_PACKAGES}); .ci/run does this on CI`
}

/** The uid and gid of `nobody`: llng-fastcgi-server refuses to run as root. */
function nobody(): { uid: number; gid: number; group: string } {
  const uid = Number(spawnSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).stdout.trim())
  const gid = Number(spawnSync('id', ['-g', 'nobody'], { encoding: 'utf8' }).stdout.trim())
  const group = spawnSync('id', ['-gn', 'nobody'], { encoding: 'utf8' }).stdout.trim()
  if (!Number.isInteger(uid) || !group) throw new Error('no user nobody to run llng-fastcgi-server as (it refuses root)')
  return { uid, gid, group }
}

function chownTree(path: string, uid: number, gid: number): void {
  chownSync(path, uid, gid)
  if (statSync(path).isDirectory()) for (const entry of readdirSync(path)) chownTree(join(path, entry), uid, gid)
}

type Json = Record<string, unknown>

/** The packaged configuration with its storage moved into `dir`, and the OIDC provider and RP added. */
function configuration(dir: string, url: string, o: LemonLdapOptions): Json {
  const conf = JSON.parse(readFileSync(PACKAGED_CONF, 'utf8')) as Json
  const { privateKey, publicKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    // PKCS#1 for the private key: what Crypt::OpenSSL::RSA reads in every version.
    privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  })
  const storage = (name: string): Json => ({ Directory: join(dir, name), LockDirectory: join(dir, name, 'lock') })
  const rp: Json = {
    oidcRPMetaDataOptionsClientID: o.clientId,
    oidcRPMetaDataOptionsClientSecret: o.clientSecret,
    oidcRPMetaDataOptionsRedirectUris: o.redirectUris.join(' '),
    oidcRPMetaDataOptionsPostLogoutRedirectUris: o.postLogoutRedirectUris.join(' '),
    oidcRPMetaDataOptionsBypassConsent: o.bypassConsent === false ? 0 : 1,
    oidcRPMetaDataOptionsRequirePKCE: o.requirePkce === false ? 0 : 1,
    oidcRPMetaDataOptionsAllowOffline: o.allowOffline === false ? 0 : 1,
    oidcRPMetaDataOptionsRefreshToken: 1,
    // RFC 9068 JWT access tokens, so an upstream (and a test) can see who issued them.
    oidcRPMetaDataOptionsAccessTokenJWT: 1,
    oidcRPMetaDataOptionsAccessTokenExpiration: o.accessTokenTtl ?? 4,
    oidcRPMetaDataOptionsIDTokenSignAlg: 'RS256',
    oidcRPMetaDataOptionsLogoutBypassConfirm: o.logoutBypassConfirm ? 1 : 0,
    ...(o.frontChannelLogout
      ? {
          oidcRPMetaDataOptionsLogoutUrl: o.frontChannelLogout.url,
          oidcRPMetaDataOptionsLogoutType: 'front',
          oidcRPMetaDataOptionsLogoutSessionRequired: o.frontChannelLogout.sessionRequired ? 1 : 0,
        }
      : {}),
  }
  return {
    ...conf,
    portal: `${url}/`,
    // The cookie's Domain: the portal's own host (the packaged example.com would be refused by the browser).
    domain: '127.0.0.1',
    globalStorageOptions: { ...(conf.globalStorageOptions as Json), ...storage('sessions') },
    persistentStorageOptions: storage('psessions'),
    localSessionStorageOptions: { ...(conf.localSessionStorageOptions as Json), cache_root: join(dir, 'cache') },
    notificationStorageOptions: { dirName: join(dir, 'notifications') },
    issuerDBOpenIDConnectActivation: 1,
    oidcServiceMetaDataIssuer: url,
    oidcServicePrivateKeySig: privateKey,
    oidcServicePublicKeySig: publicKey,
    oidcServiceKeyIdSig: `interop-${randomUUID().slice(0, 8)}`,
    oidcRPMetaDataOptions: { [o.clientId]: rp },
    oidcRPMetaDataExportedVars: { [o.clientId]: { email: 'mail', name: 'cn', family_name: 'sn' } },
  }
}

function ini(dir: string): string {
  return `[all]
logLevel = warn
checkTime = 1
[configuration]
type = File
dirName = ${join(dir, 'conf')}
localStorage = Cache::FileCache
localStorageOptions = { 'namespace' => 'lemonldap-ng-config', 'default_expires_in' => 600, 'cache_root' => '${join(dir, 'cache')}', 'cache_depth' => 3 }
[portal]
staticPrefix = /static
templateDir = ${PORTAL_TEMPLATES}
languages = en
[handler]
status = 0
`
}

/**
 * The portal's nginx: static files from the package, everything else to the
 * FastCGI server as the portal (LLTYPE). The access log has one JSON line per
 * request with the token endpoint's grant_type picked out of the form body by
 * a map, so no other body field (client secret, code, refresh token) is logged.
 */
function nginxConfig(dir: string, port: number, socket: string, root: boolean): string {
  const n = join(dir, 'nginx')
  return `${root ? 'user root;\n' : ''}worker_processes 1;
events { worker_connections 512; }
http {
  map $request_body $grant_type { "~(^|&)grant_type=([a-z_]+)" $2; default "-"; }
  log_format interop escape=json '{"method":"$request_method","path":"$uri","status":$status,"grant":"$grant_type"}';
  access_log ${join(n, 'access.log')} interop;
  client_body_temp_path ${join(n, 'client_body')};
  proxy_temp_path ${join(n, 'proxy')};
  fastcgi_temp_path ${join(n, 'fastcgi')};
  uwsgi_temp_path ${join(n, 'uwsgi')};
  scgi_temp_path ${join(n, 'scgi')};
  types { text/css css; application/javascript js; image/png png; image/jpeg jpg; image/svg+xml svg; font/woff2 woff2; }
  server {
    listen 127.0.0.1:${port};
    location /static/ { alias ${PORTAL_STATIC}; }
    location /javascript/ { alias /usr/share/javascript/; }
    location / {
      include ${FASTCGI_PARAMS};
      fastcgi_pass unix:${socket};
      fastcgi_param LLTYPE portal;
      fastcgi_param SCRIPT_NAME "";
      fastcgi_param PATH_INFO $uri;
    }
  }
}
`
}

async function waitFor(
  what: string,
  ready: () => Promise<boolean> | boolean,
  children: ChildProcess[],
  log: string[],
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const dead = children.find((c) => c.exitCode !== null)
    if (dead) throw new Error(`${what}: a process exited with ${dead.exitCode}: ${log.join('').slice(-3000)}`)
    if (await ready()) return
    if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs} ms: ${log.join('').slice(-3000)}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill(signal)
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
  await exited
  clearTimeout(timer)
}

/** Starts LemonLDAP::NG on a free port; throws, naming the packages, when they are missing. */
export async function startLemonLdap(o: LemonLdapOptions): Promise<LemonLdap> {
  const missing = lemonLdapMissing()
  if (missing) throw new Error(`LemonLDAP::NG cannot run: ${missing}`)
  const nginx = nginxBinary()!
  const root = process.getuid?.() === 0
  const dir = mkdtempSync(join(tmpdir(), 'tokenward-llng-'))
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const socket = join(dir, 'llng.sock')
  for (const sub of ['conf', 'sessions/lock', 'psessions/lock', 'cache', 'notifications', 'nginx'])
    mkdirSync(join(dir, sub), { recursive: true })
  writeFileSync(join(dir, 'conf', 'lmConf-1.json'), JSON.stringify(configuration(dir, url, o), null, 1))
  writeFileSync(join(dir, 'lemonldap-ng.ini'), ini(dir))
  writeFileSync(join(dir, 'nginx', 'nginx.conf'), nginxConfig(dir, port, socket, root))
  const asUser = root ? nobody() : undefined
  if (asUser) {
    chmodSync(dir, 0o755)
    chownTree(dir, asUser.uid, asUser.gid)
  }
  const log: string[] = []
  const children: ChildProcess[] = []
  const stop = async () => {
    await Promise.allSettled(children.map((c) => stopChild(c, c === children[0] ? 'SIGTERM' : 'SIGQUIT')))
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    // The manager forks the workers (-n) and ends them on SIGTERM.
    const fcgi = spawn(
      FASTCGI_SERVER,
      ['--foreground', '-s', socket, '-p', join(dir, 'llng.pid'), '-n', '4', ...(asUser ? ['-u', 'nobody', '-g', asUser.group] : [])],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: {
          PATH: process.env.PATH,
          LLNG_DEFAULTCONFFILE: join(dir, 'lemonldap-ng.ini'),
          // stderr instead of the packaged default, syslog.
          LLNG_DEFAULTLOGGER: 'Lemonldap::NG::Common::Logger::Std',
        },
      },
    )
    children.push(fcgi)
    fcgi.stdout?.on('data', (d: Buffer) => log.push(d.toString()))
    fcgi.stderr?.on('data', (d: Buffer) => log.push(d.toString()))
    await waitFor('llng-fastcgi-server did not create its socket', () => existsSync(socket), children, log)
    // -e stderr: otherwise nginx opens its compiled-in error log under /var/log before reading the config.
    const web = spawn(
      nginx,
      [
        '-p',
        join(dir, 'nginx'),
        '-e',
        'stderr',
        '-c',
        join(dir, 'nginx', 'nginx.conf'),
        '-g',
        `daemon off; pid ${join(dir, 'nginx', 'nginx.pid')}; error_log stderr;`,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    )
    children.push(web)
    web.stderr?.on('data', (d: Buffer) => log.push(d.toString()))
    // The first request compiles the portal: wait for the discovery document.
    await waitFor(
      'LemonLDAP::NG did not serve its discovery document',
      () =>
        fetch(`${url}/.well-known/openid-configuration`).then(
          (r) => r.ok,
          () => false,
        ),
      children,
      log,
      30_000,
    )
  } catch (err) {
    await stop()
    throw err
  }
  return {
    url,
    issuer: url,
    log,
    tokenRequests() {
      const file = join(dir, 'nginx', 'access.log')
      if (!existsSync(file)) return []
      return readFileSync(file, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as { method: string; path: string; status: number; grant: string })
        .filter((r) => r.method === 'POST' && r.path === '/oauth2/token')
        .map((r) => ({ grant: r.grant, status: r.status }))
    },
    stop,
  }
}
