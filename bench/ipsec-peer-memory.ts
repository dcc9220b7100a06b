// Agent memory per additional IPsec peer, in-process, layer by layer:
// `node dist/bench/ipsec-peer-memory.js [peers]` (default 2000).
// A real etcd on loopback holds the peers as the scale bench writes them (Node objects and leases, as
// real agents publish themselves); the agent's own objects follow them: the registry's watches and
// the node source (main thread), the IPsec mode's desired state and what the tunnel keeps of it
// (main thread), and the ESP engine
// in a worker thread, given that state's specs by postMessage as the datapath worker receives them.
// After full collections, the live heap each layer adds per peer (V8 heap, external and array
// buffers; the engine's in its own thread).
// The real agent's figure is the scale bench's slope (README "Scale"); this says where it goes.
// `--heap-snapshots DIR`: V8 heap snapshots of the main thread and of the engine's thread after each
// step (main-<peers>.heapsnapshot, engine-<peers>.heapsnapshot); bench/heap-diff.ts charges their
// difference to the structures that hold it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { writeHeapSnapshot } from 'node:v8';
import { EtcdCluster } from '../src/lab/etcd-cluster.js';
import { EtcdRegistry } from '../src/control/etcd/etcd-registry.js';
import { RegistryNodeSource } from '../src/agent/registry-node-source.js';
import { IpsecMode } from '../src/agent/ipsec-mode.js';
import { AppliedPeers } from '../src/agent/applied-peers.js';
import { registrySecrets } from '../src/agent/agent-inputs.js';
import { defaultSettings } from '../src/agent/settings.js';
import { Health } from '../src/agent/health.js';
import { createLogger } from '../src/util/log.js';
import { EspEngine } from '../src/datapath/esp-engine.js';
import type { EspPeerSpec } from '../src/datapath/messages.js';
import type { TunDevice } from '../src/datapath/tun-device.js';
import type { UdpSocket } from '../src/datapath/udp-socket.js';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { SyntheticNodes } from './scale/synthetic-nodes.js';
import { liveHeapBytes as heap } from './live-heap.js';

const args = process.argv.slice(2);
const snapshotsAt = args.indexOf('--heap-snapshots');
const SNAPSHOTS = snapshotsAt >= 0 ? args.splice(snapshotsAt, 2)[1] : undefined;
const N = Number(args[0] ?? 2000);
const WARM = 100; // first-use costs (code, hidden classes, map growth from empty) are not per peer
const CLUSTER = 'pm';
const SPI = 3;
const KEYS = '3+ rfc4106(gcm(aes)) 0123456789abcdef0123456789abcdef01234567 128';
const BOOT = 'f0f0f0f0-1111-2222-3333-444455556666';

async function until(what: string, cond: () => boolean, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

type ThreadRequest =
  | { type: 'add'; count: number } | { type: 'removeAll' }
  | { type: 'init'; init: unknown } | { type: 'updatePeers'; upsert: EspPeerSpec[] } | { type: 'heap' } | { type: 'snapshot'; file: string };

/**
 * The bench's two threads. 'writer': the synthetic nodes' writer, in a heap of its own (what it
 * keeps of the nodes is not the agent's); answers the total written. 'engine': the ESP engine as
 * the datapath worker runs it, given the specs by postMessage as the agent gives them (the
 * structured clone is part of the cost on both sides); answers its live heap.
 */
async function thread(role: 'writer' | 'engine', endpoints: string[]): Promise<void> {
  const port = parentPort!;
  const sim = role === 'writer' ? await SyntheticNodes.connect(CLUSTER, { endpoints }, SPI) : undefined;
  let engine: EspEngine | undefined;
  port.on('message', (m: ThreadRequest) => {
    void (async () => {
      switch (m.type) {
        case 'add': await sim!.add(sim!.size, sim!.size + m.count); return sim!.size;
        case 'removeAll': await sim!.removeAll(); await sim!.close(); return 0;
        case 'init': {
          const udp = { describe: () => ({}), gro: false } as unknown as UdpSocket; // no packet I/O: only the peer state is measured
          engine = new EspEngine(m.init as never, {} as TunDevice, udp);
          return 0;
        }
        case 'updatePeers': engine!.control({ type: 'updatePeers', upsert: m.upsert, remove: [] }); return 0;
        case 'heap': return heap();
        case 'snapshot': heap(); writeHeapSnapshot(m.file); return 0;
      }
    })().then((r) => port.postMessage(r));
  });
  port.postMessage(0);
}

/** A bench thread and its one-question-at-a-time channel. */
function startThread(role: 'writer' | 'engine', endpoints: string[]): { ask: (m: ThreadRequest) => Promise<number>; stop: () => Promise<number> } {
  const w = new Worker(new URL(import.meta.url), { workerData: { role, endpoints } });
  let answer: ((n: number) => void) | undefined;
  let ready = new Promise<number>((r) => { answer = r; });
  w.on('message', (n: number) => { const a = answer; answer = undefined; a?.(n); });
  w.on('error', (e) => { throw e; });
  const ask = (m: ThreadRequest) => (ready = ready.then(() => new Promise<number>((r) => { answer = r; w.postMessage(m); })));
  return { ask, stop: () => w.terminate() };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'veil-pm-'));
  const etcd = await EtcdCluster.start({ members: 1, parentDir: dir });
  const conn = { endpoints: etcd.endpoints };
  const reg = new EtcdRegistry({ cluster: CLUSTER, ...conn });
  const sim = startThread('writer', etcd.endpoints);
  const engine = startThread('engine', []);
  let written = 0;
  let source: RegistryNodeSource | undefined;
  let mode: IpsecMode | undefined;
  try {
    await reg.create({ kind: 'Secret', metadata: { name: 'ipsec-keys' }, type: 'Opaque', data: { keys: Buffer.from(KEYS).toString('base64') } });
    await reg.create({ kind: 'Node', metadata: { name: 'self' }, spec: { internalIP: '172.18.0.2', podCIDR: '10.244.1.0/24', underlayInterface: 'eth0', mtu: 1500 }, status: {} });
    source = new RegistryNodeSource(reg, 'self', '/proc/sys/kernel/random/boot_id');
    const self = await source.self();
    await source.watchPeers(() => undefined);
    mode = new IpsecMode({
      node: { ...self, bootID: BOOT }, stateDir: dir, settings: defaultSettings(), secrets: registrySecrets(reg),
      log: createLogger({}, new Writable({ write(_c, _e, cb) { cb(); } })), health: new Health(), requestReconcile: () => undefined,
    });
    const params = await mode.prepare();
    await engine.ask({ type: 'init', init: { ...params.engine, mtu: params.mtu } });
    const applied = new Map<string, unknown>(); // what the agent keeps of a pass: its desired state
    // What the tunnel keeps of what it applied (tunnel.ts): the specs by the mode's slots.
    const tunnelApplied = new AppliedPeers<EspPeerSpec>((s) => s.ip);
    let passes = 0;
    const applyToTunnel = (d: ReturnType<IpsecMode['desired']>, message: (s: EspPeerSpec) => EspPeerSpec) => void tunnelApplied.update(d.datapathPeers, d.slotOf, message, ++passes);

    // Every layer gets WARM peers first, then N more; the per-peer figure is the second step's.
    const layers = { nodeSource: 0, mode: 0, tunnel: 0, engine: 0 };
    const step = async (count: number, measure: boolean) => {
      const h0 = heap();
      written = await sim.ask({ type: 'add', count });
      await until(`${written} peers`, () => source!.peers().length === written);
      const h1 = heap();
      const d = mode!.desired(source!.peers(), SPI);
      applied.set('last', d);
      const e0 = await engine.ask({ type: 'heap' });
      const fresh = d.datapathPeers.slice(-count);
      const message = d.messageOf ?? ((s: EspPeerSpec) => s); // as the tunnel sends them (made when sent, not kept)
      for (let i = 0; i < fresh.length; i += 500) await engine.ask({ type: 'updatePeers', upsert: fresh.slice(i, i + 500).map(message) });
      const e1 = await engine.ask({ type: 'heap' });
      const h2 = heap(); // after the specs were sent: a message takes typed arrays off the heap (their own buffers)
      applyToTunnel(d, message);
      const h3 = heap();
      if (SNAPSHOTS) {
        writeHeapSnapshot(join(SNAPSHOTS, `main-${written}.heapsnapshot`));
        await engine.ask({ type: 'snapshot', file: join(SNAPSHOTS, `engine-${written}.heapsnapshot`) });
      }
      if (!measure) return;
      layers.nodeSource = (h1 - h0) / count;
      layers.mode = (h2 - h1) / count;
      layers.tunnel = (h3 - h2) / count;
      layers.engine = (e1 - e0) / count;
    };
    await step(WARM, false);
    await step(N, true);
    const total = layers.nodeSource + layers.mode + layers.tunnel + layers.engine;
    console.log(JSON.stringify({
      peers: N, heapBytesPerPeer: Math.round(total),
      nodeSourceBytes: Math.round(layers.nodeSource), modeBytes: Math.round(layers.mode), tunnelBytes: Math.round(layers.tunnel), engineBytes: Math.round(layers.engine),
      rssMB: Number((process.memoryUsage().rss / (1 << 20)).toFixed(1)),
    }));
  } finally {
    await engine.stop();
    mode?.stop();
    source?.close(); // closes reg
    await sim.ask({ type: 'removeAll' }).catch(() => undefined);
    await sim.stop();
    await etcd.stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (isMainThread) await main();
else await thread((workerData as { role: 'writer' | 'engine' }).role, (workerData as { endpoints: string[] }).endpoints);
