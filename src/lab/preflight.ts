// What the lab needs before it touches anything: root and iproute2 (and etcd, for `lab up`).
import { VeilError } from '../util/errors.js';
import { debianPackageOf, run } from '../util/exec.js';

export function requireRoot(what = 'veil lab'): void {
  if (process.getuid?.() !== 0) {
    throw new VeilError('NOT_ROOT', `${what} needs root (it creates network namespaces)`, 'run it as root, e.g. with sudo');
  }
}

/** Throws MISSING_TOOL (with the Debian package to install) if `ip` is not there. */
export function requireIp(): void {
  const r = run(['ip', '-V']);
  if (r.status !== 0) throw new VeilError('MISSING_TOOL', `'ip -V' failed: ${r.stderr.trim()}`, 'install iproute2 (apt-get install iproute2)');
}

export function preflight(what?: string): void {
  requireRoot(what);
  requireIp();
}

/** `lab up` runs a real etcd as the control plane, and waits for it with etcdctl (MISSING_TOOL names the package). */
export function requireEtcd(): void {
  for (const argv of [['etcd', '--version'], ['etcdctl', 'version']]) {
    const r = run(argv);
    if (r.status !== 0) throw new VeilError('MISSING_TOOL', `'${argv.join(' ')}' failed: ${r.stderr.trim()}`, `reinstall it (Debian: apt-get install ${debianPackageOf(argv[0]!)})`);
  }
}
