// The WireGuard mode's main-thread cost a peer, in-process (no namespace, no etcd):
// `node dist/bench/wireguard-mode-memory.js [peers] [--node-encryption] [--heap-snapshots DIR]`
// (default 5000). Peers as the registry node source hands them (one address, one pod CIDR, a public
// key annotation); the mode's desired state and what the tunnel keeps of it (AppliedPeers), pass
// after pass. Prints the live heap the mode and the tunnel's table add a peer (after full
// collections; the peers themselves are the node source's, made before), and what a pass allocates
// on the V8 heap (median of 8, young generation large enough that no collection runs within a pass:
// a round where one did is retried) with nothing changed and after one peer's event (a new key).
// `--heap-snapshots DIR`: wg-<peers>.heapsnapshot after WARM peers and after WARM + peers;
// `node dist/bench/heap-diff.js DIR/wg-100.heapsnapshot DIR/wg-<100+peers>.heapsnapshot <peers> PeerHolder,WireGuardMode,AppliedPeers`
// charges the difference (PeerHolder: the bench's peers, charged first).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { PerformanceObserver } from 'node:perf_hooks';
import { setFlagsFromString, writeHeapSnapshot } from 'node:v8';
import { WG_PUBKEY_ANNOTATION, WireGuardMode } from '../src/agent/wireguard-mode.js';
import { AppliedPeers } from '../src/agent/applied-peers.js';
import { defaultSettings } from '../src/agent/settings.js';
import { Health } from '../src/agent/health.js';
import { createLogger } from '../src/util/log.js';
import { generatePrivateKey } from '../src/crypto/index.js';
import type { SecretSource } from '../src/agent/agent-inputs.js';
import type { PeerNode } from '../src/agent/node-source.js';
import type { WireGuardPeerSpec } from '../src/datapath/messages.js';
import { gc, liveHeapBytes as heap } from './live-heap.js';
import { median } from './stats.js';

setFlagsFromString('--max-semi-space-size=256'); // no scavenge inside a measured pass (set before the young generation grows)

const args = process.argv.slice(2);
const snapshotsAt = args.indexOf('--heap-snapshots');
const SNAPSHOTS = snapshotsAt >= 0 ? args.splice(snapshotsAt, 2)[1] : undefined;
const NODE_ENCRYPTION = args.includes('--node-encryption');
const N = Number(args.find((a) => !a.startsWith('--')) ?? 5000);
const WARM = 100; // first-use costs (code, hidden classes, tables grown from empty) are not per peer
if (!(Number.isInteger(N) && N > 0)) {
  console.error('usage: node dist/bench/wireguard-mode-memory.js [peers] [--node-encryption] [--heap-snapshots DIR]');
  process.exit(2);
}

/** The peers, as the node source holds them: charged first by heap-diff (they are not the mode's). */
class PeerHolder {
  readonly peers: PeerNode[] = [];
}

let collections = 0;
new PerformanceObserver((l) => { collections += l.getEntries().length; }).observe({ entryTypes: ['gc'] });

const key = (): string => Buffer.from(generatePrivateKey().publicKey).toString('base64');
function peerOf(i: number, publicKey: string): PeerNode {
  const ip = `172.18.${i >> 8}.${i & 255}`;
  return { name: `node-${i}`, slot: i, internalIP: ip, internalIPs: ip, podCIDRs: `10.${(i >> 8) & 255}.${i & 255}.0/24`, podGateway: `10.${(i >> 8) & 255}.${i & 255}.1`, annotations: { [WG_PUBKEY_ANNOTATION]: publicKey } };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'veil-wgm-'));
  const mode = new WireGuardMode({
    node: { name: 'self', internalIPs: ['172.18.0.2'], podCIDRs: ['10.244.1.0/24'], podGateway: '10.244.1.1', underlayInterface: 'eth0', underlayMtu: 1500, bootID: 'x' },
    stateDir: dir, settings: { ...defaultSettings(), 'encryption.enabled': true, 'encryption.type': 'wireguard', 'encryption.nodeEncryption': NODE_ENCRYPTION },
    secrets: undefined as unknown as SecretSource, // the rotation reads secrets only once attached to a tunnel
    log: createLogger({}, new Writable({ write(_c, _e, cb) { cb(); } })), health: new Health(), requestReconcile: () => undefined,
  });
  try {
    await mode.prepare();
    const holder = new PeerHolder();
    const applied = new AppliedPeers<WireGuardPeerSpec>((s) => s.publicKey); // the tunnel's table (tunnel.ts)
    let passes = 0;
    const pass = () => {
      const d = mode.desired(holder.peers);
      return applied.update(d.datapathPeers, d.slotOf, d.messageOf ?? ((s) => s), ++passes);
    };
    const add = (count: number) => {
      for (let k = 0; k < count; k++) holder.peers.push(peerOf(holder.peers.length + 3, key()));
      pass();
      pass(); // a second pass over the same peers, as the agent's go: kept objects marked, not made
    };
    add(WARM);
    if (SNAPSHOTS) writeHeapSnapshot(join(SNAPSHOTS, `wg-${WARM}.heapsnapshot`));
    const keys = Array.from({ length: 2 * N + 64 }, key); // the peers' keys and the events' made before the measure
    const h0 = heap();
    for (let k = 0; k < N; k++) holder.peers.push(peerOf(holder.peers.length + 3, keys.pop()!));
    const h1 = heap();
    pass();
    pass();
    const h2 = heap();
    if (SNAPSHOTS) writeHeapSnapshot(join(SNAPSHOTS, `wg-${WARM + N}.heapsnapshot`));

    const measure = (event: boolean): { bytes: number; us: number } => {
      for (let attempt = 0; attempt < 5; attempt++) {
        const j = 1 + Math.floor(Math.random() * (holder.peers.length - 2));
        const fresh = event ? peerOf(j + 3, keys.pop()!) : undefined; // the node source's object, made before the pass
        gc();
        const g0 = collections, b0 = process.memoryUsage().heapUsed, c0 = process.cpuUsage();
        if (fresh) holder.peers[j] = fresh;
        pass();
        const c = process.cpuUsage(c0), b1 = process.memoryUsage().heapUsed;
        if (collections === g0) return { bytes: b1 - b0, us: c.user + c.system };
      }
      return { bytes: NaN, us: NaN };
    };
    const resync: { bytes: number; us: number }[] = [], event: { bytes: number; us: number }[] = [];
    for (let r = 0; r < 8; r++) { resync.push(measure(false)); event.push(measure(true)); }
    console.log(JSON.stringify({
      peers: N, nodeEncryption: NODE_ENCRYPTION,
      peersBytesPerPeer: Math.round((h1 - h0) / N), modeBytesPerPeer: Math.round((h2 - h1) / N),
      passAllocKB: { resync: +(median(resync.map((x) => x.bytes)) / 1024).toFixed(1), event: +(median(event.map((x) => x.bytes)) / 1024).toFixed(1) },
      passCpuUs: { resync: median(resync.map((x) => x.us)), event: median(event.map((x) => x.us)) },
    }));
  } finally {
    mode.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
