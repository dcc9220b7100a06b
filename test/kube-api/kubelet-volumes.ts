// What the kubelet does for a pod's ConfigMap and Secret volumes, for the lab's "pods": it reads
// the objects from the API server and projects each into a directory the way the kubelet's
// AtomicWriter does: the files live in a timestamped ..<ts> directory, ..data is a symlink to it,
// and each key is a symlink through ..data; an update writes a new directory and swaps ..data with
// one rename, so a reader sees the old content or the new, never a mix. Polls, as the kubelet's
// sync loop does (every 300 ms here, about a minute there).
import { request } from 'node:http';
import { mkdirSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

// Every request on a connection of its own (agent: false): the test process blocks its event loop
// in spawnSync for seconds, so a kept-alive connection the server closed meanwhile would be reused
// unnoticed and fail with EPIPE.

/** GET path on the API server's unix socket; undefined on 404. */
export function apiGet(socketPath: string, path: string): Promise<Record<string, unknown> | undefined> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'GET', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => {
        if (res.statusCode === 404) resolve(undefined);
        else if (res.statusCode !== 200) reject(new Error(`GET ${path}: ${res.statusCode} ${body}`));
        else resolve(JSON.parse(body) as Record<string, unknown>);
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** POST a test control (/veil-test/NAME) on the unix socket. */
export function apiControl(socketPath: string, name: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: `/veil-test/${name}`, method: 'POST', agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(body)) : reject(new Error(`${name}: ${res.statusCode} ${body}`))));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Writes files (name -> content) into dir atomically, the AtomicWriter way. */
export function atomicWrite(dir: string, files: Record<string, Buffer>): void {
  mkdirSync(dir, { recursive: true });
  const ts = `..${new Date().toISOString().replace(/[-:.]/g, '_')}.${process.hrtime.bigint()}`;
  mkdirSync(join(dir, ts));
  for (const [k, v] of Object.entries(files)) writeFileSync(join(dir, ts, k), v, { mode: 0o644 });
  let old: string | undefined;
  try { old = readlinkSync(join(dir, '..data')); } catch { /* first write */ }
  symlinkSync(ts, join(dir, '..data_tmp'));
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
  for (const k of Object.keys(files)) {
    try { symlinkSync(join('..data', k), join(dir, k)); } catch { /* already linked */ }
  }
  for (const f of readdirSync(dir)) if (!f.startsWith('.') && !(f in files)) rmSync(join(dir, f), { force: true });
  if (old) rmSync(join(dir, old), { recursive: true, force: true });
}

export interface Projection {
  kind: 'Secret' | 'ConfigMap';
  namespace: string;
  name: string;
  dir: string;
}

/** Keeps the directories in step with the objects until stop(). */
export class KubeletVolumes {
  private timer?: NodeJS.Timeout;
  private readonly last = new Map<string, string>();
  private busy = false;

  constructor(private readonly socketPath: string, private readonly projections: Projection[]) {}

  async syncOnce(): Promise<void> {
    for (const p of this.projections) {
      const path = `/api/v1/namespaces/${p.namespace}/${p.kind === 'Secret' ? 'secrets' : 'configmaps'}/${p.name}`;
      const obj = await apiGet(this.socketPath, path);
      const data = (obj?.['data'] ?? {}) as Record<string, string>;
      const text = JSON.stringify(data);
      if (this.last.get(p.dir) === text) continue;
      this.last.set(p.dir, text);
      atomicWrite(p.dir, Object.fromEntries(Object.entries(data).map(([k, v]) => [k, p.kind === 'Secret' ? Buffer.from(v, 'base64') : Buffer.from(v)])));
    }
  }

  start(): void {
    this.timer = setInterval(() => {
      if (this.busy) return;
      this.busy = true;
      void this.syncOnce().catch(() => undefined).finally(() => { this.busy = false; });
    }, 300);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
