// Shared by the etcd tests: a child process with an EtcdRegistry, and waiting for a condition.
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, after } from 'node:test';
import { EtcdRegistry, type EtcdRegistryOptions } from '../../src/control/etcd/etcd-registry.js';
import { EtcdCluster, type EtcdClusterOptions } from '../../src/lab/etcd-cluster.js';
import { waitFor as poll } from '../wait-for.js';

const MODULE = resolve(fileURLToPath(import.meta.url), '../../../src/control/etcd/etcd-registry.js');

export interface ChildResult { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** A node process running `body` with `reg` (an EtcdRegistry with opts) in scope. */
export function etcdChild(opts: EtcdRegistryOptions, body: string): Promise<ChildResult> & { pid: number; stdout: () => string } {
  const src = `import { EtcdRegistry } from ${JSON.stringify(MODULE)};
const reg = new EtcdRegistry(${JSON.stringify(opts)});
${body}
reg.close();`;
  const p = spawn(process.execPath, ['--no-deprecation', '--input-type=module', '-e', src], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (d) => { stdout += d; });
  p.stderr.on('data', (d) => { stderr += d; });
  const done = new Promise<ChildResult>((res) => p.on('close', (code, signal) => res({ code, signal, stdout, stderr })));
  return Object.assign(done, { pid: p.pid!, stdout: () => stdout });
}

/** Resolves when cond() is true; fails with what() (asked then, to tell the state reached) after timeoutMs. */
export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: () => string): Promise<void> {
  await poll(what, cond, timeoutMs, { everyMs: 20 });
}

/** Registry options for a cluster name on this etcd, with the cluster's credentials. */
export function regOptions(etcd: EtcdCluster, cluster: string, endpoints = etcd.endpoints): EtcdRegistryOptions {
  return {
    cluster, endpoints,
    ...(etcd.certs ? { ca: etcd.certs.ca, cert: etcd.certs.client.cert, key: etcd.certs.client.key } : {}),
    ...(etcd.auth ? { username: etcd.auth.username, passwordFile: etcd.auth.passwordFile } : {}),
  };
}

/**
 * An etcd started before the file's tests and stopped after them (also when they fail), and
 * registries on it that are closed then too.
 */
export function etcdForTests(opts: EtcdClusterOptions): { readonly etcd: EtcdCluster; registry: (cluster: string, extra?: Partial<EtcdRegistryOptions>) => EtcdRegistry } {
  let etcd: EtcdCluster | undefined;
  const regs: EtcdRegistry[] = [];
  before(async () => { etcd = await EtcdCluster.start(opts); });
  after(async () => {
    for (const r of regs) r.close();
    await etcd?.stopAll();
  });
  return {
    get etcd() { return etcd!; },
    registry: (cluster, extra = {}) => {
      const r = new EtcdRegistry({ ...regOptions(etcd!, cluster), ...extra });
      regs.push(r);
      return r;
    },
  };
}
