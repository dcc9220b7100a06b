// What the agent's main thread allocates per pass at scale, in-process: `node
// dist/bench/pass-allocation.js [peers] [--profile FILE]` (default 5000; root: it runs in a network
// namespace of its own, veil-pa-<pid>, with a TUN device as the tunnel, so the routes are real).
// A real etcd on loopback holds the peers as the scale bench writes them; the agent's main-thread
// layers run as the agent chains them each pass: the node source (with the Peer objects), the
// underlay screen, the IPsec mode's desired state, the tunnel's apply (its datapath worker a stub
// that answers at once) and the health report. Per kind of work, the bytes it allocates on the V8
// heap (heapUsed before and after, with a young generation large enough that no collection runs
// between them; a run where one did is retried): a resync pass with nothing changed, a whole pass,
// one peer's event (a new boot id) and its pass, a relist, the health report of the probes. Beside
// it the process CPU each takes (µs, median; an event's: its pass only, the wait for the watch left out).
// `--profile FILE`: a sampling heap profile (objects collected since included) over the same work,
// with a summary of its top allocation sites by self size.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { spawnSync } from 'node:child_process';
import { Session } from 'node:inspector/promises';
import { PerformanceObserver } from 'node:perf_hooks';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { EtcdCluster } from '../src/lab/etcd-cluster.js';
import { EtcdRegistry } from '../src/control/etcd/etcd-registry.js';
import { RegistryNodeSource } from '../src/agent/registry-node-source.js';
import { RegistryPeerObjects, WithExternalPeers } from '../src/agent/external-peers.js';
import { IpsecMode, IPSEC_DEVICE } from '../src/agent/ipsec-mode.js';
import { registrySecrets } from '../src/agent/agent-inputs.js';
import { defaultSettings } from '../src/agent/settings.js';
import { Health } from '../src/agent/health.js';
import { HealthProber } from '../src/agent/health-prober.js';
import { UnderlayScreen } from '../src/agent/peer-admission.js';
import { readUnderlayFacts } from '../src/agent/underlay-routes.js';
import { TUNNEL_DEVICES } from '../src/agent/installer.js';
import { Tunnel, type DesiredState } from '../src/agent/tunnel.js';
import type { PeerNode } from '../src/agent/node-source.js';
import { createLogger } from '../src/util/log.js';
import { SyntheticNodes, syntheticName } from './scale/synthetic-nodes.js';

const CLUSTER = 'pa';
const SPI = 3;
const KEYS = '3+ rfc4106(gcm(aes)) 0123456789abcdef0123456789abcdef01234567 128';
const BOOT = 'f0f0f0f0-1111-2222-3333-444455556666';
const ROUNDS = 8;

async function until(what: string, cond: () => boolean, timeoutMs = 180_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The synthetic nodes' writer in a thread of its own (its heap is not the agent's). */
function writerThread(endpoints: string[]): { ask: (m: { type: string; count?: number; name?: string }) => Promise<number>; stop: () => Promise<number> } {
  const w = new Worker(new URL(import.meta.url), { workerData: { endpoints } });
  let answer: ((n: number) => void) | undefined;
  let ready = new Promise<number>((r) => { answer = r; });
  w.on('message', (n: number) => { const a = answer; answer = undefined; a?.(n); });
  const ask = (m: { type: string; count?: number; name?: string }) => (ready = ready.then(() => new Promise<number>((r) => { answer = r; w.postMessage(m); })));
  return { ask, stop: () => w.terminate() };
}

async function writer(endpoints: string[]): Promise<void> {
  const sim = await SyntheticNodes.connect(CLUSTER, { endpoints }, SPI);
  parentPort!.on('message', (m: { type: string; count?: number; name?: string }) => {
    void (async () => {
      if (m.type === 'add') { await sim.add(sim.size, sim.size + m.count!); return sim.size; }
      if (m.type === 'boot') { await sim.setBootID(m.name!); return 0; }
      await sim.removeAll(); await sim.close(); return 0;
    })().then((r) => parentPort!.postMessage(r));
  });
  parentPort!.postMessage(0);
}

async function inner(n: number, profileFile?: string): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'veil-pa-'));
  const etcd = await EtcdCluster.start({ members: 1, parentDir: dir });
  const reg = new EtcdRegistry({ cluster: CLUSTER, endpoints: etcd.endpoints });
  const sim = writerThread(etcd.endpoints);
  const quiet = createLogger({}, new Writable({ write(_c, _e, cb) { cb(); } }));
  let close = () => reg.close(); // once the source and mode run: theirs (the source closes the registry)
  let gcs = 0;
  const obs = new PerformanceObserver((l) => { gcs += l.getEntries().length; });
  obs.observe({ entryTypes: ['gc'] });
  try {
    await reg.create({ kind: 'Secret', metadata: { name: 'ipsec-keys' }, type: 'Opaque', data: { keys: Buffer.from(KEYS).toString('base64') } });
    await reg.create({ kind: 'Node', metadata: { name: 'self' }, spec: { internalIP: '172.18.0.2', podCIDR: '10.244.1.0/24', underlayInterface: 'eth0', mtu: 1500 }, status: {} });
    const nodeSource = new RegistryNodeSource(reg, 'self', '/proc/sys/kernel/random/boot_id');
    const source = new WithExternalPeers(nodeSource, new RegistryPeerObjects(reg));
    close = () => source.close();
    const self = await source.self();
    let changes = 0;
    await source.watchPeers(() => { changes++; });
    const health = new Health();
    const mode = new IpsecMode({ node: { ...self, bootID: BOOT }, stateDir: dir, settings: defaultSettings(), secrets: registrySecrets(reg), log: quiet, health, requestReconcile: () => undefined });
    close = () => { mode.stop(); source.close(); };
    await mode.prepare();
    // The datapath worker: answers at once (its digest never matches, so a whole pass sends the table, as after drift).
    const host = { init: { kind: 'esp' }, request: async (m: { type: string }) => (m.type === 'digest' ? { digest: '-' } : undefined) };
    const prober = new HealthProber('self', '10.244.1.1', 2000);
    (prober as unknown as { startedAt: number }).startedAt = 0; // past its grace: every peer that never answered is reported
    const TunnelCtor = Tunnel as unknown as new (...a: unknown[]) => Tunnel<'esp'>;
    const tunnel = new TunnelCtor(IPSEC_DEVICE, {}, {}, host, prober);
    const screen = new UnderlayScreen<PeerNode>();
    let applied: DesiredState | undefined;
    let passCpuUs = 0; // the last pass's CPU (an event's figure: not its wait for the watch)
    // Read once, as the agent reads them only when a link or route moved (UnderlayFactsReader): an
    // `ip` process per pass here was most of a pass's CPU, which the agent does not spend.
    const facts = readUnderlayFacts(TUNNEL_DEVICES);
    const pass = async () => {
      const cpu0 = process.cpuUsage();
      const screened = screen.screen(source.peers(), facts);
      const d = mode.desired(screened.admitted, SPI);
      await tunnel.apply(d);
      applied = { ...d, routes: [], probes: [] };
      health.replaceGroup('peer ', new Map([...source.refusedPeers(), ...screened.refused, ...d.problems]));
      const cpu = process.cpuUsage(cpu0);
      passCpuUs = cpu.user + cpu.system;
    };

    await sim.ask({ type: 'add', count: n });
    await until(`${n} peers`, () => source.peers().length === n);
    await pass();
    if (applied!.datapathPeers.length !== n) throw new Error(`${applied!.datapathPeers.length} specs for ${n} peers`);
    const names = Array.from({ length: n }, (_, i) => syntheticName(i));
    let next = 0;
    const work: Record<string, () => Promise<void>> = {
      resync: () => pass(),
      whole: () => { tunnel.wholeNext(); return pass(); },
      event: async () => {
        const before = changes;
        await sim.ask({ type: 'boot', name: names[next++ % n]! });
        await until('the event', () => changes > before);
        await pass();
      },
      relist: () => (nodeSource as unknown as { relist(): Promise<void> }).relist(),
      report: async () => { tunnel.reportProbes(health); },
    };
    for (const f of Object.values(work)) await f(); // warm: code and hidden classes
    const session = profileFile ? new Session() : undefined;
    if (session) {
      session.connect();
      await session.post('HeapProfiler.startSampling', { samplingInterval: 512, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true } as never);
    }
    const out: Record<string, number[]> = {};
    const cpuUs: Record<string, number[]> = {};
    for (const [kind, f] of Object.entries(work)) {
      out[kind] = [];
      cpuUs[kind] = [];
      for (let r = 0, tries = 0; r < ROUNDS && tries < ROUNDS * 4; tries++) {
        await new Promise((res) => setTimeout(res, 50));
        const g = gcs, h0 = process.memoryUsage().heapUsed, cpu0 = process.cpuUsage();
        await f();
        const h1 = process.memoryUsage().heapUsed, cpu = process.cpuUsage(cpu0);
        cpuUs[kind]!.push(kind === 'event' ? passCpuUs : cpu.user + cpu.system);
        await new Promise((res) => setImmediate(res)); // gc entries are delivered asynchronously
        if (gcs !== g) continue;
        out[kind]!.push(h1 - h0);
        r++;
      }
    }
    const kb = (xs: number[]) => xs.map((x) => Math.round(x / 1024));
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? NaN;
    console.log(JSON.stringify({ peers: n, allocatedKB: Object.fromEntries(Object.entries(out).map(([k, v]) => [k, { median: Math.round(median(v) / 1024), runs: kb(v) }])) }));
    console.log(JSON.stringify({ peers: n, cpuUs: Object.fromEntries(Object.entries(cpuUs).map(([k, v]) => [k, { median: median(v), runs: v }])) }));
    if (session) {
      const { profile } = await session.post('HeapProfiler.stopSampling') as unknown as { profile: ProfileNode & { head: ProfileNode } };
      writeFileSync(profileFile!, JSON.stringify(profile));
      summarize(profile.head);
      session.disconnect();
    }
  } finally {
    obs.disconnect();
    close();
    await sim.ask({ type: 'remove' }).catch(() => undefined);
    await sim.stop();
    await etcd.stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

interface ProfileNode { callFrame: { functionName: string; url: string; lineNumber: number }; selfSize: number; children: ProfileNode[] }

/** The top allocation sites by self size (function, file:line), and by the site's caller. */
function summarize(head: ProfileNode): void {
  const sites = new Map<string, number>();
  const walk = (node: ProfileNode, parent: string) => {
    const f = node.callFrame;
    const here = `${f.functionName || '(anon)'} ${f.url.replace(/.*\/dist\//, '')}:${f.lineNumber + 1}`;
    if (node.selfSize) sites.set(`${here}  <- ${parent}`, (sites.get(`${here}  <- ${parent}`) ?? 0) + node.selfSize);
    for (const c of node.children) walk(c, here);
  };
  walk(head, '');
  const total = [...sites.values()].reduce((a, b) => a + b, 0);
  console.log(`sampled ${Math.round(total / 1024)} KB allocated; top sites:`);
  for (const [k, v] of [...sites].sort((a, b) => b[1] - a[1]).slice(0, 40)) console.log(`${String(Math.round(v / 1024)).padStart(8)} KB  ${k}`);
}

/** Runs `inner` in a network namespace of its own with the tunnel device (a TUN device nobody reads), then removes it. */
function outer(args: string[]): number {
  const ns = `veil-pa-${process.pid}`;
  const ip = (...a: string[]) => spawnSync('ip', a, { stdio: 'inherit' });
  ip('netns', 'add', ns);
  try {
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    ip('-n', ns, 'tuntap', 'add', 'dev', IPSEC_DEVICE, 'mode', 'tun');
    ip('-n', ns, 'link', 'set', IPSEC_DEVICE, 'up');
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, '--max-semi-space-size=64', ...process.execArgv, new URL(import.meta.url).pathname, '--inner', ...args], { stdio: 'inherit' });
    return r.status ?? 1;
  } finally {
    ip('netns', 'del', ns);
  }
}

if (!isMainThread) await writer((workerData as { endpoints: string[] }).endpoints);
else {
  const args = process.argv.slice(2);
  const at = args.indexOf('--profile');
  const profile = at >= 0 ? args[at + 1] : undefined;
  const n = Number(args.find((a, i) => /^\d+$/.test(a) && args[i - 1] !== '--profile') ?? 5000);
  if (args.includes('--inner')) await inner(n, profile);
  else process.exitCode = outer(args.filter((a) => a !== '--inner'));
}
