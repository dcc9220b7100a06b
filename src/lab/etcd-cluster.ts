// A real etcd (Debian's etcd-server) run as child processes: 1 or 3 members, optionally with TLS
// (--client-cert-auth) and with auth (users root and veil). For the tests (on loopback, in a temp
// dir) and as the lab's control plane (each member in a network namespace of its own, listening on
// its lab address for agents and on a unix socket in the cluster's state dir for the CLI, detached
// so that it outlives `lab up`; `lab down` stops it by PID). Every process is ours.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, closeSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { VeilError } from '../util/errors.js';
import { ensurePrivateDir } from '../util/private-files.js';
import { makeEtcdCerts, type EtcdCerts } from './etcd-certs.js';

export interface EtcdClusterOptions {
  /** 1 or 3 members (default 1). */
  members?: number;
  /** Serve clients over TLS and require a client certificate. */
  tls?: boolean;
  /** Enable auth: user root (all) and user veil (read/write under veil/); root.password and
   *  veil.password in the cluster's dir (0600). */
  auth?: boolean;
  /** Parent of the cluster's temp dir (default the OS temp dir). */
  parentDir?: string;
  /** How long to wait for the cluster to become healthy (ms, default 30 s). */
  startTimeoutMs?: number;
  /** The lab's placement: member i runs in netns(i), listens on address(i) (ports 2379/2380) and on
   *  a unix socket in `dir`, detached; spawned(i, pid) records each process. */
  lab?: {
    dir: string;
    netns: (index: number) => string;
    address: (index: number) => string;
    spawned: (member: EtcdMember, pid: number) => void;
  };
}

export interface EtcdMember {
  readonly name: string;
  /** Where this process reaches the member: loopback, or the lab's unix socket. */
  readonly clientUrl: string;
  /** Where other hosts reach it (the lab's agents: its lab address); clientUrl on loopback. */
  readonly networkUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  readonly logFile: string;
  process: ChildProcess | undefined;
}

export interface EtcdAuth {
  rootPassword: string;
  username: string;
  password: string;
  /** A file holding `password` (what a cluster config points at). */
  passwordFile: string;
  /** A file holding rootPassword (the lab's CLI is the cluster's admin). */
  rootPasswordFile: string;
}

/** Every etcd this process started, so that an abrupt exit still takes them down. */
const LIVE = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of LIVE) if (p.pid !== undefined && p.exitCode === null) try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
});

export class EtcdCluster {
  readonly dir: string;
  readonly members: EtcdMember[];
  readonly certs: EtcdCerts | undefined;
  readonly auth: EtcdAuth | undefined;
  private readonly args: Map<EtcdMember, string[]>;
  private readonly lab: EtcdClusterOptions['lab'];

  private constructor(dir: string, members: EtcdMember[], args: Map<EtcdMember, string[]>, certs: EtcdCerts | undefined, auth: EtcdAuth | undefined, lab?: EtcdClusterOptions['lab']) {
    this.lab = lab;
    this.dir = dir;
    this.members = members;
    this.args = args;
    this.certs = certs;
    this.auth = auth;
  }

  /** Starts the members and waits until every one is healthy (and auth is set up, if asked). */
  static async start(opts: EtcdClusterOptions = {}): Promise<EtcdCluster> {
    const n = opts.members ?? 1;
    if (n !== 1 && n !== 3) throw new VeilError('BAD_ETCD_MEMBERS', `an etcd cluster of ${n} members`, 'use 1 or 3 members');
    const lab = opts.lab;
    if (lab && opts.tls) throw new VeilError('BAD_ETCD_OPTIONS', 'the lab etcd runs without TLS (its agents reach it over the lab fabric)', 'leave tls off for the lab');
    let dir: string;
    if (lab) { dir = lab.dir; ensurePrivateDir(dir); } else dir = mkdtempSync(join(opts.parentDir ?? tmpdir(), 'veil-etcd-'));
    let cluster: EtcdCluster | undefined;
    try {
      const certs = opts.tls ? makeEtcdCerts(join(dir, 'pki')) : undefined;
      const scheme = certs ? 'https' : 'http';
      const ports = lab ? [] : await freePorts(2 * n);
      const members: EtcdMember[] = Array.from({ length: n }, (_, i) => {
        const name = `veil-etcd-${i}`;
        const net = lab ? `http://${lab.address(i)}:2379` : `${scheme}://127.0.0.1:${ports[2 * i]}`;
        return {
          name, clientUrl: lab ? `unix://${join(dir, unixSocketName(name))}` : net, networkUrl: net,
          peerUrl: lab ? `http://${lab.address(i)}:2380` : `http://127.0.0.1:${ports[2 * i + 1]}`,
          dataDir: join(dir, `${name}.data`), logFile: join(dir, `${name}.log`), process: undefined,
        };
      });
      const initialCluster = members.map((m) => `${m.name}=${m.peerUrl}`).join(',');
      const token = `veil-etcd-${randomBytes(4).toString('hex')}`;
      const args = new Map<EtcdMember, string[]>();
      for (const m of members) {
        args.set(m, [
          '--name', m.name, '--data-dir', m.dataDir,
          // etcd creates a unix://NAME:PORT socket as the file NAME:PORT in its working directory
          '--listen-client-urls', lab ? `${m.networkUrl},unix://${unixSocketName(m.name)}` : m.clientUrl, '--advertise-client-urls', m.networkUrl,
          '--listen-peer-urls', m.peerUrl, '--initial-advertise-peer-urls', m.peerUrl,
          '--initial-cluster', initialCluster, '--initial-cluster-state', 'new', '--initial-cluster-token', token,
          '--logger', 'zap', '--log-level', 'warn',
          ...(certs ? ['--cert-file', certs.server.cert, '--key-file', certs.server.key, '--trusted-ca-file', certs.ca, '--client-cert-auth'] : []),
          // bcrypt's lowest cost: every password here is 96 or more random bits, which no work factor
          // makes stronger, and at the default (10) every CLI call's login cost tens of ms of CPU
          ...(opts.auth ? ['--bcrypt-cost', '4'] : []),
        ]);
      }
      let auth: EtcdAuth | undefined;
      if (opts.auth) {
        const password = randomBytes(12).toString('hex');
        const passwordFile = join(dir, 'veil.password');
        writeFileSync(passwordFile, password + '\n', { mode: 0o600 });
        const rootPassword = randomBytes(12).toString('hex');
        const rootPasswordFile = join(dir, 'root.password');
        writeFileSync(rootPasswordFile, rootPassword + '\n', { mode: 0o600 });
        auth = { rootPassword, username: 'veil', password, passwordFile, rootPasswordFile };
      }
      cluster = new EtcdCluster(dir, members, args, certs, undefined, lab);
      for (const m of members) cluster.launch(m);
      const deadline = Date.now() + (opts.startTimeoutMs ?? 30_000);
      for (const m of members) await cluster.waitHealthy(m, deadline);
      if (auth) {
        await cluster.enableAuth(auth);
        cluster = new EtcdCluster(dir, members, args, certs, auth, lab);
      }
      return cluster;
    } catch (e) {
      if (cluster) await cluster.stopAll();
      else rmSync(dir, { recursive: true, force: true });
      throw e;
    }
  }

  /** The client URLs of all members, as this process reaches them. */
  get endpoints(): string[] {
    return this.members.map((m) => m.clientUrl);
  }

  /** The client URLs of all members, as other hosts (the lab's agents) reach them. */
  get networkEndpoints(): string[] {
    return this.members.map((m) => m.networkUrl);
  }

  /** Runs etcdctl against the given members (default all) with the cluster's credentials. */
  async etcdctl(args: string[], members: EtcdMember[] = this.members, user = this.auth ? `root:${this.auth.rootPassword}` : undefined): Promise<string> {
    const creds = [
      ...(this.certs ? ['--cacert', this.certs.ca, '--cert', this.certs.client.cert, '--key', this.certs.client.key] : []),
      ...(user ? ['--user', user] : []),
    ];
    const argv = ['--endpoints', members.map((m) => m.clientUrl).join(','), '--dial-timeout', '3s', '--command-timeout', '5s', ...creds, ...args];
    return new Promise((resolve, reject) => {
      execFile('etcdctl', argv, { env: { ...process.env, ETCDCTL_API: '3' } }, (err, stdout, stderr) => {
        if ((err as NodeJS.ErrnoException | null)?.code === 'ENOENT') {
          reject(new VeilError('MISSING_TOOL', "'etcdctl' is not installed", 'install it (Debian: apt-get install etcd-client)'));
        } else if (err) {
          reject(new VeilError('ETCDCTL_FAILED', `etcdctl ${args.join(' ')} failed: ${(stderr || stdout || err.message).trim()}`));
        } else resolve(stdout);
      });
    });
  }

  /** SIGKILL one member (a crash: no clean shutdown). */
  async kill(index: number): Promise<void> {
    await this.signal(this.member(index), 'SIGKILL');
  }

  /** SIGTERM one member and wait for it to exit (SIGKILL after 10 s). */
  async stop(index: number): Promise<void> {
    await this.signal(this.member(index), 'SIGTERM');
  }

  /** Starts a stopped or killed member again on its data dir and ports, and waits until healthy. */
  async restart(index: number, timeoutMs = 30_000): Promise<void> {
    const m = this.member(index);
    if (m.process && m.process.exitCode === null && m.process.signalCode === null) await this.signal(m, 'SIGTERM');
    this.launch(m);
    await this.waitHealthy(m, Date.now() + timeoutMs);
  }

  /** Stops every member by PID and removes the temp dir. Safe to call twice. */
  async stopAll(): Promise<void> {
    // Its data goes with it, so no member needs long to hand leadership over: 1 s, then SIGKILL.
    await Promise.all(this.members.map((m) => this.signal(m, 'SIGTERM', 1000)));
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The last lines of a member's log, for failure messages. */
  logTail(index: number, lines = 20): string {
    try { return readFileSync(this.member(index).logFile, 'utf8').trim().split('\n').slice(-lines).join('\n'); } catch { return ''; }
  }

  private member(index: number): EtcdMember {
    const m = this.members[index];
    if (!m) throw new VeilError('BAD_ETCD_MEMBER', `no etcd member ${index}`, `use 0..${this.members.length - 1}`);
    return m;
  }

  private launch(m: EtcdMember): void {
    mkdirSync(this.dir, { recursive: true });
    const log = openSync(m.logFile, 'a');
    try {
      const lab = this.lab;
      const index = this.members.indexOf(m);
      // `ip netns exec` execs etcd in place: the pid is etcd's
      const p = lab
        ? spawn('ip', ['netns', 'exec', lab.netns(index), 'etcd', ...this.args.get(m)!], { stdio: ['ignore', log, log], cwd: this.dir, detached: true })
        : spawn('etcd', this.args.get(m)!, { stdio: ['ignore', log, log] });
      p.on('error', () => { /* reported by waitHealthy: the member never answers */ });
      if (lab) {
        p.unref();
        if (p.pid !== undefined) lab.spawned(m, p.pid);
      } else {
        LIVE.add(p);
        p.once('exit', () => LIVE.delete(p));
      }
      m.process = p;
    } finally {
      closeSync(log);
    }
  }

  private async signal(m: EtcdMember, sig: NodeJS.Signals, graceMs = 10_000): Promise<void> {
    const p = m.process;
    if (!p || p.pid === undefined || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill(sig);
    const timer = setTimeout(() => p.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }

  private async waitHealthy(m: EtcdMember, deadline: number): Promise<void> {
    let last = '';
    for (;;) {
      if (m.process?.exitCode !== null || m.process?.signalCode !== null) {
        throw new VeilError('ETCD_START_FAILED', `etcd member ${m.name} exited (${m.process?.exitCode ?? m.process?.signalCode})`, `see its log ${m.logFile}: ${this.logTail(this.members.indexOf(m), 5)}`);
      }
      try {
        await this.etcdctl(['endpoint', 'health'], [m]);
        return;
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() > deadline) {
        throw new VeilError('ETCD_START_TIMEOUT', `etcd member ${m.name} did not become healthy: ${last}`, `see its log ${m.logFile}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  private async enableAuth(auth: EtcdAuth): Promise<void> {
    const ctl = (args: string[]) => this.etcdctl(args, this.members, undefined);
    await ctl(['user', 'add', `root:${auth.rootPassword}`, '--interactive=false']);
    await ctl(['user', 'add', `${auth.username}:${auth.password}`, '--interactive=false']);
    await ctl(['role', 'add', 'veil']);
    await ctl(['role', 'grant-permission', 'veil', '--prefix=true', 'readwrite', 'veil/']);
    await ctl(['user', 'grant-role', auth.username, 'veil']);
    await ctl(['auth', 'enable']);
  }
}

/** The unix socket etcd makes for unix://NAME:2379 (its file name is NAME:2379). */
export function unixSocketName(member: string): string {
  return `${member}:2379`;
}

/** count distinct loopback ports that were free a moment ago. */
async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: count }, () => new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => resolve(s));
  })));
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}
