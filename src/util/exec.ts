// Running the system tools veil drives (ip, tcpdump, ...), with errors that name the command.
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { VeilError } from './errors.js';

export interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs argv, returns its result whatever the exit status. A missing program is a VeilError. */
export function run(argv: string[], opts: SpawnSyncOptions & { input?: string } = {}): RunResult {
  const [cmd, ...args] = argv;
  if (!cmd) throw new VeilError('EXEC_EMPTY', 'internal: empty command');
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...opts });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new VeilError('MISSING_TOOL', `'${cmd}' is not installed`, `install it (Debian: apt-get install ${debianPackageOf(cmd)})`);
    }
    throw new VeilError('EXEC_FAILED', `running '${argv.join(' ')}' failed: ${r.error.message}`);
  }
  return { status: r.status ?? 1, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') };
}

/** Runs argv and throws a VeilError carrying stderr if it fails. */
export function mustRun(argv: string[], opts: SpawnSyncOptions & { input?: string } = {}): string {
  const r = run(argv, opts);
  if (r.status !== 0) {
    throw new VeilError('EXEC_FAILED', `'${argv.join(' ')}' failed (exit ${r.status}): ${r.stderr.trim() || r.stdout.trim()}`);
  }
  return r.stdout;
}

/** argv prefixed so that it runs inside network namespace ns. */
export function inNetns(ns: string, argv: string[]): string[] {
  return ['ip', 'netns', 'exec', ns, ...argv];
}

const PACKAGES: Record<string, string> = {
  ip: 'iproute2', ping: 'iputils-ping', tcpdump: 'tcpdump', tshark: 'tshark', iperf3: 'iperf3',
  'wireguard-go': 'wireguard-go', wg: 'wireguard-tools', ethtool: 'ethtool', etcd: 'etcd-server', etcdctl: 'etcd-client',
};

export function debianPackageOf(cmd: string): string {
  return PACKAGES[cmd] ?? cmd;
}
