// What a complete relist costs the agent's main thread at scale, in-process: `node
// dist/bench/scale/complete-relist-cost.js [nodes]` (default 5000). A real etcd on loopback holds the
// synthetic nodes and their leases as the scale bench writes them; per round, the registry lists every
// Node and Lease name and version (what the node source's complete relist asks, every ~5 min): CPU
// of the process, bytes promoted to the old generation (what a later full collection pays for) and
// the collections it caused. The writer runs in a child process, so its heap is not measured.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getHeapSpaceStatistics } from 'node:v8';
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { EtcdCluster } from '../../src/lab/etcd-cluster.js';
import { EtcdRegistry } from '../../src/control/etcd/etcd-registry.js';
import { SyntheticNodes } from './synthetic-nodes.js';

const CLUSTER = 'crc';
const ROUNDS = 10;

const oldBytes = () => getHeapSpaceStatistics().filter((s) => s.space_name !== 'new_space').reduce((a, s) => a + s.space_used_size, 0);

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 5000);
  const dir = mkdtempSync(join(tmpdir(), 'veil-crc-'));
  const etcd = await EtcdCluster.start({ members: 1, parentDir: dir });
  const reg = new EtcdRegistry({ cluster: CLUSTER, endpoints: etcd.endpoints });
  const sim = await SyntheticNodes.connect(CLUSTER, { endpoints: etcd.endpoints }, 3);
  const gcs = { minor: 0, major: 0, majorMs: 0 };
  const obs = new PerformanceObserver((l) => {
    for (const e of l.getEntries()) {
      const kind = (e as unknown as { detail?: { kind: number } }).detail?.kind;
      if (kind === constants.NODE_PERFORMANCE_GC_MAJOR || kind === constants.NODE_PERFORMANCE_GC_INCREMENTAL) { gcs.major++; gcs.majorMs += e.duration; } else gcs.minor++;
    }
  });
  obs.observe({ entryTypes: ['gc'] });
  try {
    await sim.add(0, n);
    const rows: string[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      await new Promise((res) => setTimeout(res, 200));
      const g0 = { ...gcs }, old0 = oldBytes(), cpu0 = process.cpuUsage(), t0 = performance.now();
      const nodes = await reg.changedSince('Node', undefined);
      const leases = await reg.changedSince('Lease', undefined);
      const ms = performance.now() - t0, cpu = process.cpuUsage(cpu0);
      await new Promise((res) => setTimeout(res, 50)); // the observer's entries
      if (nodes.versions.size !== n || leases.versions.size !== n) throw new Error(`listed ${nodes.versions.size} nodes, ${leases.versions.size} leases, want ${n}`);
      rows.push(`round ${r}: ${ms.toFixed(1)} ms, CPU ${((cpu.user + cpu.system) / 1000).toFixed(1)} ms, old generation ${((oldBytes() - old0) / 1e6).toFixed(2)} MB, ` +
        `collections: ${gcs.minor - g0.minor} minor, ${gcs.major - g0.major} major (${(gcs.majorMs - g0.majorMs).toFixed(1)} ms)`);
    }
    console.log(`complete relist (Node and Lease names and versions) at ${n} nodes:\n${rows.join('\n')}`);
  } finally {
    await sim.removeAll().catch(() => undefined);
    await sim.close().catch(() => undefined);
    reg.close();
    await etcd.stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
