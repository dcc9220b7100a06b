// The real kubectl for the tests (Debian's kubernetes-client, which scripts/setup.sh installs when
// no kubectl is present), and the certificates and kubeconfig that point it (and veil) at a test
// API server over TLS with a bearer token, as at a real cluster.
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { makeCa, signCert, type CertPair } from '../../src/lab/etcd-certs.js';
import type { UserInfo } from './admission-policy.js';

// kubectl caches discovery per server address under ~/.kube/cache; a test API server that gets a
// port an earlier one had would be read from that stale cache (kubectl then skips discovery: other
// errors, unknown resource types). Every kubectl a test process starts (they inherit the
// environment) caches in the process's own directory instead, removed when the process ends.
if (!process.env['KUBECACHEDIR']) {
  const cacheDir = mkdtempSync(join(tmpdir(), 'veil-kubectl-cache-'));
  process.env['KUBECACHEDIR'] = cacheDir;
  process.on('exit', () => rmSync(cacheDir, { recursive: true, force: true }));
}

export function kubectlPath(): string {
  const r = spawnSync('sh', ['-c', 'command -v kubectl'], { encoding: 'utf8' });
  const path = r.stdout.trim();
  if (r.status !== 0 || !path) throw new Error("kubectl is not installed: run scripts/setup.sh (it installs Debian's kubernetes-client)");
  return path;
}

export const TEST_TOKEN = 'veil-test-token';

/** Who a pod's bound ServiceAccount token is on kube-apiserver 1.30+: the ServiceAccount, with its pod and node in the user extra. */
export function podTokenIdentity(namespace: string, serviceAccount: string, node: string): UserInfo {
  return {
    username: `system:serviceaccount:${namespace}:${serviceAccount}`, uid: `${namespace}-${serviceAccount}-uid`,
    groups: ['system:serviceaccounts', `system:serviceaccounts:${namespace}`, 'system:authenticated'],
    extra: {
      'authentication.kubernetes.io/node-name': [node], 'authentication.kubernetes.io/pod-name': [`${serviceAccount}-${node}`],
      'authentication.kubernetes.io/credential-id': [`JTI=${namespace}-${serviceAccount}-${node}`],
    },
  };
}

/** A CA and a serving certificate for the given IPs (and 127.0.0.1), in dir. */
export function makeApiServerCerts(dir: string, ips: string[] = []): { ca: string; server: CertPair } {
  const ca = makeCa(dir, 'veil-kube-ca');
  const sans = ['IP:127.0.0.1', 'DNS:localhost', ...ips.map((ip) => `IP:${ip}`)];
  const server = signCert(dir, 'veil-kube-apiserver', 'kube-apiserver', ca, [
    `subjectAltName=${sans.join(',')}`, 'keyUsage=critical,digitalSignature,keyEncipherment', 'extendedKeyUsage=serverAuth']);
  return { ca: ca.cert, server };
}

/** A kubeconfig with one cluster (the server's URL and CA), one token user, one context: 'veil-test'. */
export function writeKubeconfig(path: string, server: string, ca: string, token = TEST_TOKEN): string {
  writeFileSync(path, toYaml({
    apiVersion: 'v1', kind: 'Config', 'current-context': 'veil-test',
    clusters: [{ name: 'veil-test', cluster: { server, 'certificate-authority': ca } }],
    users: [{ name: 'veil-test', user: { token } }],
    contexts: [{ name: 'veil-test', context: { cluster: 'veil-test', user: 'veil-test', namespace: 'veil' } }],
  }), { mode: 0o600 });
  return path;
}

export interface Run { status: number | null; stdout: string; stderr: string }

/**
 * A command run without blocking (a test API server in the same process must go on serving it),
 * its exit status (1 when it could not run), output and errors.
 */
export function runAsync(cmd: string, args: string[], env?: NodeJS.ProcessEnv, timeoutMs = 60_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: timeoutMs, env }, (err, stdout, stderr) => {
      resolve({ status: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

/** kubectl with this kubeconfig, without blocking. */
export function kubectlAsync(kubeconfig: string, args: string[]): Promise<Run> {
  return runAsync(kubectlPath(), ['--kubeconfig', kubeconfig, ...args], undefined, 30_000);
}
