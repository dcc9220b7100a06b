// The scale bench (issue #13): the real agents of a 2-node lab (IPsec) against 100 / 1,000 / 5,000
// synthetic nodes written to the lab's real etcd as real agents publish themselves. Per size:
// convergence after the last node is written, a node's key change (a reboot: new boot id, new
// derived keys) reaching the real agent's datapath, agent CPU per peer event, steady-state CPU and
// resident memory; at the rotation size an IPsec key rotation with a ping between the real pair
// (zero loss) and the rotation rule checked from published key ids and installed SAs. With
// --encryption wireguard the lab runs WireGuard: the synthetic nodes publish X25519 public keys, a
// key change is a new public key, and the rotation (IPsec's SPI rule) is skipped; the synthetic
// peers answer as live peers do (handshakes and health probes: scale/wireguard-responder.ts, in a
// process of its own), unless --silent-peers; in IPsec mode they answer health probes with keys
// derived as agents derive them (scale/esp-responder.ts). In both modes the synthetic addresses
// belong to a namespace of their own that the real nodes route them through
// (scale/synthetic-underlay.ts). Correctness
// failures make it exit 1 (the CI smoke run at 200 nodes asserts them); timings are only reported.
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchFlags } from './bench-flags.js';
import { randomUUID } from 'node:crypto';
import { run } from '../src/util/exec.js';
import { openRegistry } from '../src/control/cluster.js';
import { IpsecKeyLoader } from '../src/keys/ipsec-key-loader.js';
import { deriveTunnelTransforms } from '../src/keys/ipsec-derive.js';
import { DEFAULT_IPSEC_SECRET, IPSEC_SECRET_DATA_KEY } from '../src/keys/ipsec-key-secret.js';
import { keyHex } from '../src/datapath/esp-engine.js';
import type { AgentMemory } from '../src/agent/api.js';
import type { HeapFigures } from '../src/util/heap-figures.js';
import { exec, liveChildren, mustExec, sleep } from './proc.js';
import { AgentView } from './scale/agent-view.js';
import { agentLogPath } from '../src/lab/agents.js';
import { SyntheticNodes, type SyntheticEncryption } from './scale/synthetic-nodes.js';
import { ResponderHost } from './scale/responder-host.js';
import { SyntheticUnderlay } from './scale/synthetic-underlay.js';
import { generatePrivateKey } from '../src/crypto/x25519.js';
import type { WireGuardEncryptStatus } from '../src/agent/api.js';
import { WIREGUARD_ENGINE_DROPS } from '../src/datapath/messages.js';
import { WG_DEVICE, WG_ENCRYPTION_KEY, WG_PORT } from '../src/agent/wireguard-mode.js';

const HELP = `Usage: node dist/bench/scale.js [--sizes 100,1000,5000] [--changes N] [--events N] [--steady S] [--rotation-size N] [--encryption ipsec|wireguard] [--silent-peers] [--smoke] [--out FILE] [--name CLUSTER]

  --sizes        synthetic node counts, ascending (default 100,1000,5000); nodes are added between sizes
  --changes N    key changes timed per size (default 100; the p99 needs 100)
  --events N     peer events for the CPU-per-event figure (default 1000)
  --steady S     seconds of steady-state CPU per size (default and least 60 but with --smoke: a whole cycle of
                 the periodic work, two resync passes, one of them whole, and the relists); it starts once
                 the agent has settled after the burst before (no heap compaction pending, 90 s at most)
  --rotation-size N
                 the size at which the IPsec rotation runs (default 1000)
  --encryption M ipsec (default) or wireguard: the lab's mode, and what the synthetic nodes publish; with
                 wireguard a key change is a new public key, and the IPsec rotation is skipped (rotation: null);
                 the synthetic peers answer (WireGuard: handshakes and health probes with their own keys; IPsec:
                 health probes, keys derived as agents derive them), as live peers do (a responder process in
                 veil-<cluster>_synthetic: its CPU is reported, not counted as the agent's)
  --silent-peers the synthetic peers never answer (the responder only counts what reaches them)
  --cycle S      WireGuard: at the largest size, after the steady window and its memory reads, a second
                 window of S seconds (0: none, the default), preceded by its own settling. Give it one whole
                 rekey cycle (each session is renewed at its first probe past REKEY_AFTER_TIME, 120 s; at
                 5,000 peers a peer is probed every 50 s, so every 150 s): it then holds each peer's rekey
                 once, where the steady window holds the part of a wave its phase gives it (cycleWindow)
  --smoke        CI: 200 nodes, 10 changes, 100 events, 5 s steady, rotation at 200; asserts correctness only
  --out FILE     JSON results (default bench/results/scale-<date>.json; --smoke: none unless given)
  --name CLUSTER lab cluster name (default vs<pid>)
  --heap-snapshots DIR
                 after each size, a V8 heap snapshot of the first agent's main thread in DIR (where the memory goes)
  --agent-logs DIR
                 the agents' logs copied to DIR before the lab goes (with NODE_OPTIONS=--trace-gc: what ran in a costly second)
Exit status: 0 when every correctness check passed, 1 otherwise, 130 when interrupted.`;

/** The agent's periodic work repeats every 60 s (two resync passes, the second one whole): a shorter window misses or double-counts it. */
const MIN_STEADY_S = 60;
/** keyRotationDuration of the bench's install: long past the rotation's last move (a few seconds). */
const RETIRED_KEY_S = 30;
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const MAIN_JS = join(ROOT, 'dist/src/cli/main.js');

interface SizeFigures {
  size: number;
  /** What a timed key change was: a reboot (new boot id: IPsec's derived keys) or a new WireGuard public key. */
  keyChange: 'bootID' | 'publicKey';
  convergenceMs: number;
  /**
   * CPU each real agent spent from the first write of the size's nodes until the first agent had
   * converged (ms, by thread; `children`: its `ip` processes): on this 2-vCPU lab both agents
   * converge at once beside etcd and the bench, so the wall time above is about their CPU over two
   * cores; this is the work itself, which a node with a core of its own would spend.
   */
  convergenceCpuMs: { main: number; worker: number; helpers: number; children: number }[];
  keyChangeP50Ms: number;
  keyChangeP99Ms: number;
  keyChangeMaxMs: number;
  cpuUsPerEvent: number;
  /** From the end of the event burst until no heap compaction was pending (the burst's aftermath). */
  settle: Settling;
  steadySeconds: number;
  /** The agent's threads over the steady window, % of one core: the target's figure. */
  steadyCpuPercent: number;
  /** Of it by thread; `children`: its `ip` processes, on top (not in steadyCpuPercent). */
  steadyByThread: { main: number; worker: number; helpers: number; children: number };
  /** Compactions that ran inside the steady window (a heap grown again by the periodic work). */
  steadyCompactions: Compactions;
  /** CPU of the agent's threads in each second of the window (ms): the periodic passes show as peaks. */
  steadyTimelineMs: number[];
  /** WireGuard: the first agent's handshakes and probes over the steady window (wireGuardTraffic()). */
  wireGuard?: WireGuardTraffic;
  /** IPsec: what the synthetic peers' responder saw of the first agent over the steady window (ipsecPeersTraffic()). */
  ipsecPeers?: IpsecPeersTraffic;
  /** When the steady window began (to place its costly seconds in the agents' logs). */
  steadyStartedAt: string;
  /** Initiations from the first agent that reached the synthetic peers in each 5 s of the steady window (WireGuard). */
  steadyInitiationsEvery5s?: number[];
  /** WireGuard, --cycle at the largest size: the second window, over one rekey cycle (cycleWindow()). */
  cycle?: CycleWindow;
  /** RSS over the steady window, sampled every second: median and peak. */
  rssMB: number;
  rssPeakMB: number;
  /**
   * Those samples in order (MB, one a second): where in the window RSS steps down (a compaction, a
   * malloc trim) decides the median, so a run's figure can be read against its timeline.
   */
  rssTimelineMB: number[];
  /** After a full collection on both threads (the agent's /memory?collect=1): RSS, and the live heaps. */
  rssCollectedMB: number;
  liveHeapMainMB: number;
  liveHeapWorkerMB: number;
  /** Heap pages V8 held just before that collection (both threads), and their young generations. */
  heapTotalMB: number;
  /** Of heapTotalMB, the main thread's and the worker's. */
  heapTotalMainMB: number;
  heapTotalWorkerMB: number;
  youngMB: number;
  /** The agent's heap compactions so far (src/util/heap-compaction.ts): main thread and worker, count and ms. */
  compactions: Compactions;
  /** RSS by mapping after the collection (MB): see AgentView.rssByMapping. */
  rssByMapping: ReturnType<AgentView['rssByMapping']>;
  /** The main thread's heap pages every 5 s of the steady window (MB). */
  heldMainMB: number[];
  /** The datapath worker's heap pages at the same moments (MB). */
  heldWorkerMB: number[];
  /**
   * RSS by mapping over the steady window (MB, sampled with heldMainMB), each category's median: the
   * judged figure's own parts, where rssByMapping is after the collection. Which part carries the
   * run-to-run spread (session 27, mem34): compare these across runs of one build.
   */
  rssByMappingSteady: ReturnType<AgentView['rssByMapping']>;
  /** Each V8 space at the window's end (heldSpaces) and after the full collection (liveSpaces), per thread. */
  spacesHeld: { main?: HeapFigures['spaces']; worker?: HeapFigures['spaces'] };
  spacesLive: { main?: HeapFigures['spaces']; worker?: HeapFigures['spaces'] };
  /**
   * After the collection, off the V8 heap (MB): each thread's external memory (ArrayBuffers'
   * backing stores, malloc'd) and V8's own malloc'd memory; the malloc arenas' live and free bytes,
   * the main thread's (arena 0) and the other threads' (the agent's /memory malloc), and each arena's size.
   */
  /** Native AES-GCM contexts the ESP engine kept then (a context is made only for SAs that carry traffic). */
  aeadContexts?: number;
  native?: {
    externalMainMB: number; externalWorkerMB: number; v8MallocMainMB: number; v8MallocWorkerMB: number;
    arenaMainLiveMB: number; arenaMainFreeMB: number; arenasLiveMB: number; arenasFreeMB: number; arenaSizesMB: number[]; mmappedMB: number;
  };
  routes: number;
}

interface Compactions { main: number; mainMs: number; worker: number; workerMs: number }

interface Settling {
  ms: number;
  /** The agent's threads meanwhile, % of one core. */
  cpuPercent: number;
  compactions: Compactions;
  /** A compaction was still pending at the deadline. */
  timedOut: boolean;
}

interface RotationFigures {
  peers: number;
  /** The new key's SPI. */
  spi: number;
  pingsSent: number;
  pingsLost: number;
  samples: number;
  ruleViolations: string[];
  completedMs: number;
}

const failures: string[] = [];
function check(ok: boolean, what: string): void {
  if (!ok) { failures.push(what); console.error(`FAILED: ${what}`); }
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]! : NaN;
}

async function waitUntil<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs: number, everyMs = 10): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

function compactionsOf(m: AgentMemory): Compactions {
  return { main: m.main.compactions ?? 0, mainMs: m.main.compactionMs ?? 0, worker: m.datapath?.compactions ?? 0, workerMs: m.datapath?.compactionMs ?? 0 };
}

function compactionsSince(before: AgentMemory, after: AgentMemory): Compactions {
  const a = compactionsOf(before), b = compactionsOf(after);
  return { main: b.main - a.main, mainMs: b.mainMs - a.mainMs, worker: b.worker - a.worker, workerMs: b.workerMs - a.workerMs };
}

/** Settled: no compaction pending on either thread this long (a compaction waits for 3 quiet checks 2 s apart). */
const SETTLE_QUIET_MS = 6_000;
/** A burst's aftermath is over within this (else the steady window starts anyway, and says so). */
const SETTLE_DEADLINE_MS = 90_000;

/** Waits until the agent has nothing of the burst before left to do (heap compactions), with a deadline. */
async function settleAfterBurst(agent: AgentView): Promise<Settling> {
  const cpu0 = agent.cpuMicros(), t0 = performance.now();
  const first = await agent.memory(false);
  let quietSince: number | undefined;
  let latest = first;
  for (;;) {
    const now = performance.now();
    const pending = !!(latest.main.compactionPending || latest.datapath?.compactionPending);
    if (pending) quietSince = undefined;
    else quietSince ??= now;
    if (quietSince !== undefined && now - quietSince >= SETTLE_QUIET_MS) break;
    if (now - t0 > SETTLE_DEADLINE_MS) {
      const ms = Math.round(now - t0);
      return { ms, cpuPercent: ((agent.cpuMicros() - cpu0) / (ms * 1000)) * 100, compactions: compactionsSince(first, latest), timedOut: true };
    }
    await sleep(1000);
    latest = await agent.memory(false);
  }
  const ms = Math.round(performance.now() - t0);
  return { ms, cpuPercent: ((agent.cpuMicros() - cpu0) / (ms * 1000)) * 100, compactions: compactionsSince(first, latest), timedOut: false };
}

class ScaleLab {
  agents: AgentView[] = [];
  nodes: { name: string; netns: string; internalIP: string }[] = [];
  /** The synthetic nodes' namespace, which owns their addresses (both modes). */
  underlay?: SyntheticUnderlay;
  /** The synthetic peers' responder in it, either mode (answering, or counting only). */
  responder?: ResponderHost;
  private up = false;
  constructor(readonly cluster: string, readonly home: string, readonly encryption: SyntheticEncryption) {}

  get device(): string {
    return this.encryption === 'wireguard' ? WG_DEVICE : 'veil_ipsec0';
  }

  /** Peers in the first agent's datapath (IPsec: the ESP engine's count; WireGuard: its peer list). */
  async datapathPeers(): Promise<number> {
    const agent = this.agents[0]!;
    return this.encryption === 'wireguard' ? (await agent.wireGuardPeers()).length : agent.datapathPeers();
  }

  /** A WireGuard peer's public key in the first agent's datapath (one GET /encrypt: every peer listed). */
  async wireGuardKey(name: string): Promise<string | undefined> {
    return (await this.agents[0]!.wireGuardPeers()).find((p) => p.node === name)?.publicKey;
  }

  veil(args: string[], timeoutMs = 180_000): Promise<string> {
    return mustExec([process.execPath, MAIN_JS, ...args, '--cluster', this.cluster], timeoutMs, { ...process.env, VEIL_HOME: this.home });
  }

  async create(): Promise<void> {
    this.up = true;
    await mustExec([process.execPath, MAIN_JS, 'lab', 'up', '--name', this.cluster, '--nodes', '2'], 180_000, { ...process.env, VEIL_HOME: this.home });
    // Retired keys go RETIRED_KEY_S after a rotation (default 5 min): the sizes after it then
    // measure one key's SAs, as a cluster holds them between rotations, not two.
    await this.veil(this.encryption === 'wireguard' ? ['install', '--encryption', 'wireguard']
      : ['install', '--encryption', 'ipsec', '--generate-key', '--set', `encryption.ipsec.keyRotationDuration=${RETIRED_KEY_S}s`]);
    const nodes = JSON.parse(await this.veil(['lab', 'get', 'nodes', '-o', 'json'])) as { items: { metadata: { name: string }; spec: Record<string, string> }[] };
    this.nodes = nodes.items.map((n) => ({ name: n.metadata.name, netns: n.spec['netns']!, internalIP: n.spec['internalIP']! }));
    for (const n of this.nodes) {
      const pid = Number((await this.veil(['agent', 'pid', n.name])).trim());
      this.agents.push(new AgentView(n.name, pid, join(this.home, 'clusters', this.cluster, 'nodes', n.name, 'agent.sock')));
    }
  }

  async destroy(): Promise<void> {
    if (!this.up) return;
    this.up = false;
    this.responder?.stop();
    this.underlay?.destroy();
    await this.veil(['uninstall']).catch(() => undefined);
    await mustExec([process.execPath, MAIN_JS, 'lab', 'down', '--name', this.cluster], 120_000, { ...process.env, VEIL_HOME: this.home })
      .catch((e) => console.error(`lab down failed: ${String(e)}`));
  }

  /** Routes into the tunnel on a node. */
  routes(node: { netns: string }): number {
    const out = run(['ip', '-n', node.netns, 'route', 'show', 'dev', this.device]).stdout.trim();
    return out ? out.split('\n').length : 0;
  }
}

/** The key (hex) a real agent must hold for inbound traffic from a synthetic node: derived the way every agent derives it. */
async function expectedInboundKey(lab: ScaleLab, agent: AgentView, peerIP: string, peerBoot: string): Promise<string> {
  const reg = openRegistry(lab.cluster);
  try {
    const raw = (await reg.get('Secret', DEFAULT_IPSEC_SECRET))?.data?.[IPSEC_SECRET_DATA_KEY] ?? '';
    const loaded = new IpsecKeyLoader().load(Buffer.from(raw, 'base64').toString('utf8'), Date.now());
    if (!loaded.ok) throw new Error(`cannot read the cluster's IPsec key: ${loaded.error.message}`);
    const node = (await reg.get('Node', agent.node))!;
    const bootId = (node.status?.['agent'] as { bootID: string }).bootID;
    const t = deriveTunnelTransforms(loaded.value.current, { ip: String(node.spec!['internalIP']), bootId }, { ip: peerIP, bootId: peerBoot });
    return keyHex(t.in).encryption;
  } finally {
    reg.close();
  }
}

async function measureSize(lab: ScaleLab, sim: SyntheticNodes, size: number, o: { changes: number; events: number; steadyS: number; cycleS: number; largest: number }): Promise<SizeFigures> {
  const agent = lab.agents[0]!;
  const realPeers = lab.agents.length - 1;
  console.log(`\n== ${size} synthetic nodes`);
  // Convergence: every new node written as fast as etcd takes them; the clock starts at the last write.
  const wg = lab.encryption === 'wireguard';
  const cpuBefore = lab.agents.map((a) => agentCpu(a));
  const lastWrite = await sim.add(sim.size, size);
  // WireGuard's peer count is a whole peer list (GET /encrypt): asked every 50 ms, not 20.
  await waitUntil(`${size + realPeers} peers in ${agent.node}'s datapath`, async () => (await lab.datapathPeers()) === size + realPeers || undefined, 120_000, wg ? 50 : 20);
  await waitUntil(`${size + realPeers} routes on ${agent.node}`, () => lab.routes(lab.nodes[0]!) === size + realPeers || undefined, 60_000, 20);
  const convergenceMs = Date.now() - lastWrite;
  const convergenceCpuMs = lab.agents.map((a, i) => {
    const used = cpuSince(agentCpu(a), cpuBefore[i]!);
    return { main: Math.round(used.main / 1000), worker: Math.round(used.worker / 1000), helpers: Math.round(used.helpers / 1000), children: Math.round(used.children / 1000) };
  });
  const routes = lab.routes(lab.nodes[0]!);
  check(routes === size + realPeers, `${size}: ${routes} routes into the tunnel, want ${size + realPeers}`);
  console.log(`converged ${convergenceMs} ms after the last node was written (${routes} routes); agents' CPU from the first write: ` +
    convergenceCpuMs.map((c, i) => `${lab.agents[i]!.node} ${(c.main + c.worker + c.helpers)} ms (main ${c.main}, worker ${c.worker}, V8/libuv helpers ${c.helpers}; ip ${c.children} more)`).join(', '));
  await sleep(2000);

  // A node's key change (reboot: a new boot id) until the real agent's datapath holds the new inbound key.
  // WireGuard: a new public key until the datapath's peer holds it (each check lists every peer: the
  // latency includes up to one such answer).
  const names = sim.names();
  const latencies: number[] = [];
  /** A key change of one synthetic node in the lab's mode: what it publishes, and whether the real agent's datapath holds it yet. */
  const keyChange = async (name: string): Promise<{ what: string; publish: () => Promise<unknown>; arrived: () => Promise<boolean> } | undefined> => {
    if (wg) {
      const key = generatePrivateKey();
      const want = Buffer.from(key.publicKey).toString('base64');
      return { what: 'public key', publish: () => sim.setPublicKey(name, key), arrived: async () => (await lab.wireGuardKey(name)) === want };
    }
    const boot = randomUUID();
    const ip = (await agent.sas(name)).peers[0]?.ip;
    check(ip !== undefined, `${size}: ${name} is a peer of ${agent.node}`);
    if (!ip) return undefined;
    const want = await expectedInboundKey(lab, agent, ip, boot);
    return {
      what: 'key', publish: () => sim.setBootID(name, boot),
      arrived: async () => (await agent.sas(name, true)).sas.some((s) => s.direction === 'in' && s.key?.encryption === want),
    };
  };
  for (let c = 0; c < o.changes; c++) {
    const name = names[Math.floor(Math.random() * names.length)]!;
    const change = await keyChange(name);
    if (!change) continue;
    const t0 = Date.now();
    await change.publish();
    try {
      await waitUntil(`${name}'s new ${change.what} in ${agent.node}'s datapath`, async () => (await change.arrived()) || undefined, 30_000, 2);
      latencies.push(Date.now() - t0);
    } catch (e) {
      check(false, `${size}: ${String(e)}`);
    }
  }
  const p50 = percentile(latencies, 50), p99 = percentile(latencies, 99);
  console.log(`key change to datapath: p50 ${p50} ms, p99 ${p99} ms, max ${Math.max(...latencies)} ms over ${latencies.length}`);

  // CPU per peer event: key changes at 200/s, against the idle rate just before. WireGuard: the
  // checks for the last event list every peer; their CPU (one measured here) is taken off too.
  await sleep(1000);
  let pollUs = 0;
  if (wg) {
    const c0 = agent.cpuMicros();
    await agent.wireGuardPeers();
    pollUs = agent.cpuMicros() - c0;
    await sleep(500);
  }
  let polls = 0;
  const idle0 = agent.cpuMicros(), idleT0 = performance.now();
  await sleep(5000);
  const idleRate = (agent.cpuMicros() - idle0) / (performance.now() - idleT0); // µs of CPU per ms
  const burst = names.slice(0, Math.min(o.events, names.length));
  while (burst.length < o.events) burst.push(names[burst.length % names.length]!);
  const cpu0 = agent.cpuMicros(), t0 = performance.now();
  let lastPublished = '';
  for (let i = 0; i < burst.length; i++) {
    lastPublished = wg ? await sim.setPublicKey(burst[i]!) : await sim.setBootID(burst[i]!);
    const due = t0 + (i + 1) * 5;
    if (performance.now() < due) await sleep(due - performance.now());
  }
  const lastName = burst.at(-1)!;
  if (wg) {
    await waitUntil('the last event in the datapath', async () => { polls++; return (await lab.wireGuardKey(lastName)) === lastPublished || undefined; }, 60_000, 250);
  } else {
    const lastIp = (await agent.sas(lastName)).peers[0]!.ip;
    const want = await expectedInboundKey(lab, agent, lastIp, lastPublished);
    await waitUntil('the last event in the datapath', async () => (await agent.sas(lastName, true)).sas.some((s) => s.key?.encryption === want) || undefined, 60_000, 20);
  }
  await sleep(1000); // the tail of the watch
  const busy = agent.cpuMicros() - cpu0 - idleRate * (performance.now() - t0) - polls * pollUs;
  const cpuUsPerEvent = Math.max(0, busy) / burst.length;
  console.log(`agent CPU per peer event: ${cpuUsPerEvent.toFixed(0)} µs (${burst.length} ${wg ? 'public key' : 'boot id'} changes; idle rate subtracted` +
    (wg ? `; and ${polls} peer lists of ${(pollUs / 1000).toFixed(1)} ms each` : '') + ')');

  // The burst's aftermath first: each thread compacts its heap once a burst is over
  // (heap-compaction.ts), which is the burst's cost, not the steady state's. Settled: no compaction
  // pending on either thread for SETTLE_QUIET_MS (or the deadline passed); what settling cost is
  // reported beside the steady figure.
  // WireGuard: the first agent's own counts (a status: every peer listed) are read before the
  // settling, so that the collections the read's garbage brings are the settling's too. Read just
  // before the window, at 5,000 peers it pushed both threads' heaps over their compaction threshold
  // in 27 of 31 windows (docs/performance-log.md, session 34, wgh44), where IPsec's reads nothing.
  const traffic0 = wg ? await trafficNow(lab) : undefined;
  const settle = await settleAfterBurst(agent);
  console.log(`settled ${settle.ms} ms after the burst${settle.timedOut ? ' (deadline: a compaction still pending)' : ''}: ` +
    `${settle.cpuPercent.toFixed(2)} % of a core meanwhile; compactions then: main ${settle.compactions.main} (${settle.compactions.mainMs} ms), worker ${settle.compactions.worker} (${settle.compactions.workerMs} ms)`);

  // Steady state: only leases (keepalives) and the agent's own timers, over a window that holds
  // whole cycles of the periodic work (resync passes every 30 s, one whole pass every 60 s, the
  // relist every 24-36 s). RSS read from /proc once a second (costs the agent nothing), the heaps
  // once at the end; CPU per thread, of the agent's child processes (`ip`), and per second.
  const responder0 = lab.responder ? await responderNow(lab.responder) : undefined; // its own process: costs the agent nothing
  const esp0 = !wg ? responder0 : undefined;
  const steadyCpu0 = agentCpu(agent), heap0 = await agent.memory(false), st0 = performance.now();
  const steadyStartedAt = new Date().toISOString();
  console.log(`steady window from ${steadyStartedAt}`);
  const rss: number[] = [];
  const heldMainMB: number[] = []; // every 5 s: the main thread's heap pages (the slack above its live heap moves with its collections)
  const heldWorkerMB: number[] = []; // and the worker's
  const mappings: ReturnType<AgentView['rssByMapping']>[] = []; // and RSS by mapping (smaps: read by this process, not the agent)
  const sampler = new WindowSampler(agent, wg ? lab.responder : undefined, responder0, lab.nodes[0]!.internalIP);
  while (performance.now() - st0 < o.steadyS * 1000) {
    rss.push(agent.rssBytes() / 1e6);
    if (rss.length % 5 === 1) {
      const m = await agent.memory(false);
      heldMainMB.push(Math.round(m.main.totalBytes / 1e4) / 100);
      heldWorkerMB.push(Math.round((m.datapath?.totalBytes ?? 0) / 1e4) / 100);
      mappings.push(agent.rssByMapping());
    }
    await sampler.second(st0, o.steadyS);
  }
  const { timelineMs, initiationsEvery5s: initiations5s } = sampler;
  const { byThread: steadyByThread, percent: steadyCpuPercent } = cpuShares(cpuSince(agentCpu(agent), steadyCpu0), performance.now() - st0);
  const rssMB = percentile(rss, 50), rssPeakMB = Math.max(...rss);
  const held = await agent.memory(false);
  const traffic1 = wg ? await trafficNow(lab) : undefined;
  const wireGuard = traffic0 && traffic1 && responder0 ? wireGuardTraffic(traffic0, responder0, traffic1, lab.nodes[0]!.internalIP) : undefined;
  if (wireGuard) console.log(`WireGuard over the window: ${JSON.stringify(wireGuard)}`);
  const ipsecPeers = esp0 ? ipsecPeersTraffic(esp0, await responderNow(lab.responder!), lab.nodes[0]!.internalIP) : undefined;
  if (ipsecPeers) console.log(`IPsec peers over the window: ${JSON.stringify(ipsecPeers)}`);
  const live = await agent.memory(true);
  const mb = (b: number | undefined) => (b ?? 0) / 1e6;
  const mem = {
    rssMB, rssPeakMB, rssTimelineMB: rss.map((x) => Math.round(x * 10) / 10), rssCollectedMB: mb(live.rssBytes), liveHeapMainMB: mb(live.main.usedBytes), liveHeapWorkerMB: mb(live.datapath?.usedBytes),
    heapTotalMB: mb(held.main.totalBytes + (held.datapath?.totalBytes ?? 0)), heapTotalMainMB: mb(held.main.totalBytes), heapTotalWorkerMB: mb(held.datapath?.totalBytes), youngMB: mb(held.main.youngBytes + (held.datapath?.youngBytes ?? 0)),
    compactions: compactionsOf(held),
    rssByMapping: agent.rssByMapping(),
    heldMainMB, heldWorkerMB, rssByMappingSteady: medianByKey(mappings), spacesHeld: { main: held.main.spaces, worker: held.datapath?.spaces }, spacesLive: { main: live.main.spaces, worker: live.datapath?.spaces },
    aeadContexts: wg ? undefined : (await agent.sas('-')).aeadContexts,
    ...(live.malloc && { native: nativeFigures(live) }),
  };
  const steadyCompactions = compactionsSince(heap0, held);
  const cycle = wg && o.cycleS > 0 && size === o.largest ? await cycleWindow(lab, agent, o.cycleS) : undefined;
  const peaks = [...timelineMs].sort((a, b) => b - a).slice(0, 5);
  console.log(`steady state: ${steadyCpuPercent.toFixed(2)} % of a core over ${o.steadyS} s (main ${steadyByThread.main.toFixed(2)}, worker ${steadyByThread.worker.toFixed(2)}, ` +
    `V8/libuv helpers ${steadyByThread.helpers.toFixed(2)}; child processes ${steadyByThread.children.toFixed(2)} more); busiest seconds ${peaks.join(', ')} ms; ` +
    `compactions in the window: main ${steadyCompactions.main} (${steadyCompactions.mainMs} ms), worker ${steadyCompactions.worker} (${steadyCompactions.workerMs} ms)`);
  console.log(`RSS median ${rssMB.toFixed(1)} MB, peak ${rssPeakMB.toFixed(1)} MB; ` +
    `V8 heaps held ${mem.heapTotalMB.toFixed(1)} MB (main ${mem.heapTotalMainMB.toFixed(1)}, worker ${mem.heapTotalWorkerMB.toFixed(1)}; young ${mem.youngMB.toFixed(1)}); after a full collection: RSS ${mem.rssCollectedMB.toFixed(1)} MB, ` +
    `live heap main ${mem.liveHeapMainMB.toFixed(1)} MB, worker ${mem.liveHeapWorkerMB.toFixed(1)} MB; ` +
    `heap compactions so far: main ${mem.compactions.main} (${mem.compactions.mainMs} ms), worker ${mem.compactions.worker} (${mem.compactions.workerMs} ms); ` +
    `RSS by mapping over the window, medians (MB): ${formatMB(mem.rssByMappingSteady)}; RSS by mapping then (MB): ${formatMB(mem.rssByMapping)}` +
    `; native AES-GCM contexts ${mem.aeadContexts ?? '?'}` + (mem.native ? `; off the V8 heap (MB): ${Object.entries(mem.native).map(([k, v]) => `${k} ${Array.isArray(v) ? v.map((x) => x.toFixed(1)).join('/') : v.toFixed(1)}`).join(', ')}` : ''));
  return {
    size, keyChange: wg ? 'publicKey' : 'bootID', convergenceMs, convergenceCpuMs, keyChangeP50Ms: p50, keyChangeP99Ms: p99, keyChangeMaxMs: Math.max(...latencies), cpuUsPerEvent,
    settle, steadySeconds: o.steadyS, steadyStartedAt, steadyCpuPercent, steadyByThread, steadyCompactions, steadyTimelineMs: timelineMs, wireGuard, ipsecPeers, ...mem, routes,
    ...(wg && { steadyInitiationsEvery5s: initiations5s }), ...(cycle && { cycle }),
  };
}

/** The initiations from agentIP that reached the synthetic peers so far. */
function initiationsFrom(t: ResponderSample, agentIP: string): number {
  return t.counts.bySource[agentIP]?.initiations ?? 0;
}

/**
 * A window's samples, one call a second: the agent's CPU in that second, and every 5 s the
 * WireGuard initiations from the agent that reached the synthetic peers (read from the responder's
 * own process: costs the agent nothing; none without a responder, as in IPsec mode).
 */
class WindowSampler {
  readonly timelineMs: number[] = [];
  readonly initiationsEvery5s: number[] = [];
  private last: number;
  private lastInitiations: number;
  private seconds = 0;

  constructor(private readonly agent: AgentView, private readonly responder: ResponderHost | undefined, start: ResponderSample | undefined, private readonly agentIP: string) {
    this.last = agent.cpuMicros();
    this.lastInitiations = start ? initiationsFrom(start, agentIP) : 0;
  }

  /** Sleeps to the next whole second of a window that began at st0 and lasts windowS, then samples. */
  async second(st0: number, windowS: number): Promise<void> {
    await sleep(Math.min(1000, windowS * 1000 - (performance.now() - st0)));
    const now = this.agent.cpuMicros();
    this.timelineMs.push(Math.round((now - this.last) / 100) / 10);
    this.last = now;
    if (++this.seconds % 5 !== 0 || !this.responder) return;
    const n = initiationsFrom(await responderNow(this.responder), this.agentIP);
    this.initiationsEvery5s.push(n - this.lastInitiations);
    this.lastInitiations = n;
  }
}

/** WireGuard's second window (--cycle): the first agent over one rekey cycle, measured as the steady window is. */
interface CycleWindow {
  seconds: number;
  startedAt: string;
  settle: Settling;
  cpuPercent: number;
  byThread: { main: number; worker: number; helpers: number; children: number };
  compactions: Compactions;
  timelineMs: number[];
  initiationsEvery5s: number[];
  wireGuard: WireGuardTraffic;
}

/**
 * A window over one whole rekey cycle. The steady window starts ~30 s after the largest size's new
 * peers were added, while the prober still reaches them for the first time (one 2-s round of ~200
 * peers at a time), so its handshakes are the part of that wave its phase gives it (one round more or
 * less is ~3.3 initiations a second in 60 s). By the end of the steady window every peer has a session;
 * a window of one cycle then holds each session's renewal once, wherever it falls. Its own status read
 * comes before its own settling, as the steady window's does (wgh44, session 34).
 */
async function cycleWindow(lab: ScaleLab, agent: AgentView, seconds: number): Promise<CycleWindow> {
  const traffic0 = await trafficNow(lab);
  const settle = await settleAfterBurst(agent);
  const responder0 = await responderNow(lab.responder!);
  const ip = lab.nodes[0]!.internalIP;
  const cpu0 = agentCpu(agent), heap0 = await agent.memory(false), st0 = performance.now();
  const startedAt = new Date().toISOString();
  console.log(`cycle window (${seconds} s) from ${startedAt}, after ${settle.ms} ms of settling`);
  const sampler = new WindowSampler(agent, lab.responder, responder0, ip);
  while (performance.now() - st0 < seconds * 1000) await sampler.second(st0, seconds);
  const { timelineMs, initiationsEvery5s } = sampler;
  const { byThread, percent: cpuPercent } = cpuShares(cpuSince(agentCpu(agent), cpu0), performance.now() - st0);
  const compactions = compactionsSince(heap0, await agent.memory(false));
  const wireGuard = wireGuardTraffic(traffic0, responder0, await trafficNow(lab), ip);
  console.log(`cycle window: ${cpuPercent.toFixed(2)} % of a core over ${seconds} s (main ${byThread.main.toFixed(2)}, worker ${byThread.worker.toFixed(2)}, ` +
    `V8/libuv helpers ${byThread.helpers.toFixed(2)}); ${wireGuard.initiationsPerS} initiations/s; compactions main ${compactions.main}, worker ${compactions.worker}; ` +
    `initiations every 5 s ${initiationsEvery5s.join(' ')}`);
  return { seconds, startedAt, settle, cpuPercent, byThread, compactions, timelineMs, initiationsEvery5s, wireGuard };
}

/** CPU used over a window of ms, by thread as % of one core; percent: the agent's threads (children on top). */
function cpuShares(used: ReturnType<typeof agentCpu>, ms: number): { byThread: ReturnType<typeof agentCpu>; percent: number } {
  const share = (us: number) => (us / (ms * 1000)) * 100;
  const byThread = { main: share(used.main), worker: share(used.worker), helpers: share(used.helpers), children: share(used.children) };
  return { byThread, percent: byThread.main + byThread.worker + byThread.helpers };
}

/** An agent's CPU so far by thread and in its waited-for child processes (µs). */
function agentCpu(a: AgentView): { main: number; worker: number; helpers: number; children: number } {
  return { ...a.cpuByThread(), children: a.childrenCpuMicros() };
}

/** CPU between two agentCpu readings (µs). */
function cpuSince(now: ReturnType<typeof agentCpu>, before: ReturnType<typeof agentCpu>): ReturnType<typeof agentCpu> {
  return { main: now.main - before.main, worker: now.worker - before.worker, helpers: now.helpers - before.helpers, children: now.children - before.children };
}

/** A rotation with every synthetic node acting as a real agent: it publishes the new key id after its jitter. */
async function rotation(lab: ScaleLab, sim: SyntheticNodes, count: number): Promise<RotationFigures> {
  console.log(`\n== IPsec rotation across ${sim.size} synthetic peers and the real pair`);
  const [a, b] = lab.agents as [AgentView, AgentView];
  for (const [i, n] of lab.nodes.entries()) await lab.veil(['lab', 'pod', 'create', `scale-pod${i}`, '--node', n.name]);
  const pods = (JSON.parse(await lab.veil(['lab', 'get', 'pods', '-o', 'json'])) as { items: { metadata: { name: string }; spec: Record<string, string> }[] }).items;
  const pod0 = pods.find((p) => p.metadata.name === 'scale-pod0')!, pod1 = pods.find((p) => p.metadata.name === 'scale-pod1')!;
  const ping = exec(['ip', 'netns', 'exec', pod0.spec['netns']!, 'ping', '-i', '0.02', '-c', String(count), '-W', '2', pod1.spec['podIP']!], 120_000);
  await sleep(2000);
  const out = await lab.veil(['encryption', 'rotate-key']);
  const spi = Number(/new key SPI: (\d+)/.exec(out)?.[1]);
  check(Number.isInteger(spi), `rotate-key said: ${out}`);
  const rotatedAt = Date.now();
  // The synthetic peers install the new key before any of them publishes it, as agents do.
  if (lab.responder) check((await lab.responder.setKeys(await ipsecKeyFile(lab))).includes(spi), `the responder did not take key ${spi}`);
  // Synthetic agents: each publishes the new key id at a random moment within the jitter real agents use.
  const spread = Math.min(5000, sim.size);
  const schedule = sim.names().map((n) => ({ n, at: rotatedAt + 50 + Math.random() * spread })).sort((x, y) => x.at - y.at);
  sim.defaultSpi = spi;
  const publishing = (async () => {
    for (const s of schedule) {
      if (Date.now() < s.at) await sleep(s.at - Date.now());
      await sim.setSpi(s.n, spi);
    }
  })();
  // The rule, sampled: a sender's active SPI towards a peer is one that peer has published (a
  // synthetic peer publishes only what it installed) or, for the real receiver, one it holds an inbound SA for.
  const violations: string[] = [];
  let samples = 0;
  const realIP = new Map(lab.nodes.map((n) => [n.name, n.internalIP]));
  let doneAt = 0;
  while (Date.now() - rotatedAt < 60_000) {
    for (const [sender, receiver] of [[a, b], [b, a]] as const) {
      const sent = await sender.sas();
      const tReply = Date.now();
      samples++;
      for (const p of sent.peers) {
        if (!p.activeSpi) continue;
        if (p.name === receiver.node) {
          const held = await receiver.sas(sender.node);
          if (!held.sas.some((s) => s.direction === 'in' && s.spi === p.activeSpi && s.src === realIP.get(sender.node))) {
            violations.push(`${sender.node} sends with SPI ${p.activeSpi} to ${receiver.node}, which holds no inbound SA for it`);
          }
          continue;
        }
        const at = sim.spiPublishedAt.get(p.name)?.get(p.activeSpi);
        if (at === undefined || at > tReply) violations.push(`${sender.node} sends with SPI ${p.activeSpi} to ${p.name} before it published that key id`);
      }
      if (sender === a && sent.peers.length === sim.size + 1 && sent.peers.every((p) => p.activeSpi === spi) && !doneAt) doneAt = Date.now();
    }
    if (doneAt) break;
    await sleep(100);
  }
  await publishing;
  check(doneAt > 0, `rotation: ${a.node} did not move every peer to SPI ${spi} within 60 s`);
  const r = await ping;
  const sent = Number(/(\d+) packets transmitted/.exec(r.stdout)?.[1] ?? 0), received = Number(/(\d+) received/.exec(r.stdout)?.[1] ?? 0);
  check(sent === count, `rotation: ping sent ${sent} of ${count}: ${r.stdout.slice(-300)} ${r.stderr}`);
  check(sent - received === 0, `rotation: ${sent - received} of ${sent} pings lost between the real pair`);
  check(violations.length === 0, `rotation rule broken ${violations.length} times: ${violations.slice(0, 3).join('; ')}`);
  console.log(`rotation to SPI ${spi}: every peer moved ${doneAt ? doneAt - rotatedAt : 'never'} ms after the rotation; ${sent - received}/${sent} pings lost; ${samples} samples, ${violations.length} rule violations`);
  return { peers: sim.size, spi, pingsSent: sent, pingsLost: sent - received, samples, ruleViolations: violations.slice(0, 20), completedMs: doneAt ? doneAt - rotatedAt : -1 };
}

/** Waits until the agent holds SAs of the new key only (its retired key's expired): then a size measures one key's state. */
async function retiredKeyGone(agent: AgentView, spi: number): Promise<void> {
  const t0 = Date.now();
  await waitUntil(`${agent.node} to drop the retired key's SAs`, async () => (await agent.sas()).sas.every((s) => s.spi === spi) || undefined, (RETIRED_KEY_S + 60) * 1000, 1000);
  console.log(`the retired key's SAs gone ${Date.now() - t0} ms after the rotation's end`);
}

/** A heap snapshot of the agent's main thread (its NODE_OPTIONS name SIGUSR2), renamed after the size. */
async function heapSnapshot(agent: AgentView, dir: string, size: number): Promise<void> {
  const before = new Set(readdirSync(dir));
  process.kill(agent.pid, 'SIGUSR2');
  const file = await waitUntil('the heap snapshot', () => readdirSync(dir).find((f) => !before.has(f) && f.endsWith('.heapsnapshot')), 120_000, 200);
  let last = -1;
  await waitUntil('the snapshot written', () => { const n = statSync(join(dir, file)).size; const done = n === last && n > 0; last = n; return done || undefined; }, 300_000, 1000);
  renameSync(join(dir, file), join(dir, `agent-${size}.heapsnapshot`));
  console.log(`heap snapshot: ${join(dir, `agent-${size}.heapsnapshot`)} (${(last / 1e6).toFixed(0)} MB); ${agent.memoryDetail()}`);
}

function machine(): Record<string, unknown> {
  const model = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpus()[0]?.model;
  const commit = run(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD']).stdout.trim();
  return { nproc: cpus().length, cpu: model, kernel: release(), node: process.version, commit, load: readFileSync('/proc/loadavg', 'utf8').trim() };
}

/** The synthetic peers' responder, every real agent its peer (WireGuard: their public keys from their datapaths; IPsec: their boot ids and the cluster's key). */
async function startResponder(lab: ScaleLab, answer: boolean): Promise<ResponderHost> {
  if (lab.encryption === 'ipsec') {
    const nodes = JSON.parse(await lab.veil(['lab', 'get', 'nodes', '-o', 'json'])) as { items: { metadata: { name: string }; status?: { agent?: { bootID?: string } } }[] };
    const agents = lab.nodes.map((n) => {
      const bootId = nodes.items.find((o) => o.metadata.name === n.name)?.status?.agent?.bootID;
      check(typeof bootId === 'string', `${n.name} publishes no boot id`);
      return { address: n.internalIP, bootId: bootId! };
    });
    console.log(`IPsec: the synthetic peers ${answer ? 'answer health probes (keys derived from the cluster key and both boot ids)' : 'never answer (--silent-peers)'}`);
    return ResponderHost.start(lab.underlay!, { mode: 'ipsec', agents, keys: await ipsecKeyFile(lab) }, answer);
  }
  const agents = [];
  for (const [i, a] of lab.agents.entries()) agents.push({ publicKey: (await a.encryptStatus()).wireguard.interfaces[0]!['public-key'], address: lab.nodes[i]!.internalIP, port: WG_PORT });
  console.log(`WireGuard: the synthetic peers ${answer ? 'answer handshakes and health probes' : 'never answer (--silent-peers)'}`);
  return ResponderHost.start(lab.underlay!, { mode: 'wireguard', agents }, answer);
}

/** The cluster's IPsec key file, as its secret holds it. */
async function ipsecKeyFile(lab: ScaleLab): Promise<string> {
  const secret = JSON.parse(await lab.veil(['secret', 'get', DEFAULT_IPSEC_SECRET, '-o', 'json'])) as { data?: Record<string, string> };
  const data = secret.data?.[IPSEC_SECRET_DATA_KEY];
  check(typeof data === 'string', `secret ${DEFAULT_IPSEC_SECRET} holds no ${IPSEC_SECRET_DATA_KEY}`);
  return Buffer.from(data!, 'base64').toString('utf8');
}

/** What the first agent and the responder counted so far (one GET /encrypt: every peer listed). */
interface TrafficSample {
  status: WireGuardEncryptStatus;
  responder: ResponderSample;
}

async function trafficNow(lab: ScaleLab): Promise<TrafficSample> {
  const status = await lab.agents[0]!.encryptStatus();
  return { status, responder: await responderNow(lab.responder!) };
}

interface WireGuardTraffic {
  /** The window: what the responder counted (initiations, transport, its answers and CPU) is over it. */
  seconds: number;
  /**
   * What the first agent counted itself (probes, staged packets, drops) is over this: its status is
   * read before the settling that precedes the window, and at the window's end.
   */
  agentSeconds: number;
  /** The first agent's probes sent and acked, a second (its prober: health-prober.ts). */
  probesSentPerS: number;
  probesAckedPerS: number;
  /** Its peers with an ack at the end (of all it probes). */
  peersAcked: number;
  peersProbed: number;
  /** Its packets staged for a handshake, and dropped because one never completed, a second. */
  stagedPerS: number;
  handshakeGaveUpPerS: number;
  /** Initiations from it that reached the synthetic peers, and transport datagrams, a second. */
  initiationsPerS: number;
  transportPerS: number;
  /** The responder: handshake responses sent (to both agents) and probes answered, a second; its own CPU (% of a core, not the agent's). */
  responderResponsesPerS: number;
  responderProbesPerS: number;
  responderCpuPercent: number;
  /** Its engine's and core's drops over agentSeconds, by reason (the non-zero ones). */
  drops: Record<string, number>;
  /** Its engine's native AEAD contexts held at the window's start (the read before the settling) and end. */
  aeadContexts: [number | null, number | null];
}

/**
 * a: before the settling, windowStart: the responder at the window's start, b: at its end.
 * agentIP: the first agent's underlay address (the synthetic peers count by sender).
 */
function wireGuardTraffic(a: TrafficSample, windowStart: ResponderSample, b: TrafficSample, agentIP: string): WireGuardTraffic {
  const w = responderWindow(windowStart, b.responder, agentIP), rate = w.rate;
  const agentS = (b.responder.at - a.responder.at) / 1000;
  const agentRate = (x: number, y: number) => Math.round(((y - x) / agentS) * 10) / 10;
  const sum = (st: WireGuardEncryptStatus, f: 'sent' | 'acked') => (st.probes ?? []).reduce((n, p) => n + p[f], 0);
  const from = (t: ResponderSample) => t.counts.bySource[agentIP] ?? { initiations: 0, transport: 0 };
  return {
    seconds: w.seconds, agentSeconds: Math.round(agentS * 10) / 10,
    probesSentPerS: agentRate(sum(a.status, 'sent'), sum(b.status, 'sent')), probesAckedPerS: agentRate(sum(a.status, 'acked'), sum(b.status, 'acked')),
    peersAcked: (b.status.probes ?? []).filter((p) => p.acked > 0).length, peersProbed: (b.status.probes ?? []).length,
    stagedPerS: agentRate(a.status.counters.staged, b.status.counters.staged), handshakeGaveUpPerS: agentRate(a.status.drops.handshakeGaveUp, b.status.drops.handshakeGaveUp),
    initiationsPerS: rate(from(windowStart).initiations, from(b.responder).initiations), transportPerS: w.transportPerS,
    responderResponsesPerS: rate(windowStart.counts.handshakeResponses, b.responder.counts.handshakeResponses),
    responderProbesPerS: w.responderProbesPerS, responderCpuPercent: w.responderCpuPercent,
    drops: Object.fromEntries([
      ...WIREGUARD_ENGINE_DROPS.map((k) => [k, b.status.counters[k] - a.status.counters[k]] as const),
      ...Object.entries(b.status.drops).map(([k, v]) => [k, v - (a.status.drops[k as keyof typeof a.status.drops] ?? 0)] as const),
    ].filter(([, v]) => v !== 0)),
    aeadContexts: [a.status.aeadContexts ?? null, b.status.aeadContexts ?? null],
  };
}

/** The responder's counts and CPU at one moment. */
interface ResponderSample {
  at: number;
  counts: Awaited<ReturnType<ResponderHost['counts']>>;
  cpuUs: number;
}

async function responderNow(responder: ResponderHost): Promise<ResponderSample> {
  return { at: performance.now(), counts: await responder.counts(), cpuUs: responder.cpuMicros() };
}

interface IpsecPeersTraffic {
  seconds: number;
  /** ESP datagrams from the first agent that reached the synthetic peers, a second (its probes). */
  transportPerS: number;
  /** Probes the responder acked (from both agents), a second; its own CPU (% of a core, not the agent's). */
  responderProbesPerS: number;
  responderCpuPercent: number;
  /** What the responder could not open or answer over the window (by the ESP decoder's reasons, the non-zero ones). */
  drops: number;
  espDrops: Record<string, number>;
}

/** The window between two responder samples: its length, a rate helper, what the responder did for the agent at agentIP. */
function responderWindow(a: ResponderSample, b: ResponderSample, agentIP: string) {
  const s = (b.at - a.at) / 1000;
  const rate = (x: number, y: number) => Math.round(((y - x) / s) * 10) / 10;
  const from = (t: ResponderSample) => t.counts.bySource[agentIP]?.transport ?? 0;
  return {
    seconds: Math.round(s * 10) / 10, rate,
    transportPerS: rate(from(a), from(b)),
    responderProbesPerS: rate(a.counts.probesAnswered, b.counts.probesAnswered),
    responderCpuPercent: Math.round(((b.cpuUs - a.cpuUs) / (s * 1e6)) * 1e4) / 100,
  };
}

function ipsecPeersTraffic(a: ResponderSample, b: ResponderSample, agentIP: string): IpsecPeersTraffic {
  const { seconds, transportPerS, responderProbesPerS, responderCpuPercent } = responderWindow(a, b, agentIP);
  return {
    seconds, transportPerS, responderProbesPerS, responderCpuPercent,
    drops: b.counts.drops - a.counts.drops,
    espDrops: Object.fromEntries(Object.entries(b.counts.espDrops ?? {}).map(([k, v]) => [k, v - (a.counts.espDrops?.[k] ?? 0)] as const).filter(([, v]) => v !== 0)),
  };
}

/** The agents' logs (before the lab and its home go). */
function copyAgentLogs(lab: ScaleLab, dir: string): void {
  mkdirSync(dir, { recursive: true });
  for (const n of lab.nodes) {
    try {
      copyFileSync(agentLogPath(lab.cluster, n.name), join(dir, `${n.name}.log`));
    } catch (e) {
      console.error(`no log of ${n.name}: ${String(e)}`);
    }
  }
}

async function main(): Promise<number> {
  const values = benchFlags({
    sizes: { type: 'string' }, changes: { type: 'string' }, events: { type: 'string' }, steady: { type: 'string' }, 'rotation-size': { type: 'string' },
    smoke: { type: 'boolean' }, out: { type: 'string' }, name: { type: 'string' },
    'heap-snapshots': { type: 'string' }, 'agent-logs': { type: 'string' }, encryption: { type: 'string' }, 'silent-peers': { type: 'boolean' },
    cycle: { type: 'string' },
  }, HELP);
  const smoke = !!values.smoke;
  const sizes = (values.sizes ?? (smoke ? '200' : '100,1000,5000')).split(',').map(Number);
  const o = {
    changes: Number(values.changes ?? (smoke ? 10 : 100)), events: Number(values.events ?? (smoke ? 100 : 1000)), steadyS: Number(values.steady ?? (smoke ? 5 : 60)),
    cycleS: Number(values.cycle ?? 0), largest: Math.max(...sizes),
  };
  const rotationSize = Number(values['rotation-size'] ?? (smoke ? 200 : 1000));
  if (!smoke && o.steadyS < MIN_STEADY_S) {
    console.log(`--steady ${o.steadyS} is shorter than the periodic work's cycle: the window is ${MIN_STEADY_S} s`);
    o.steadyS = MIN_STEADY_S;
  }
  const encryption = values.encryption ?? 'ipsec';
  if (encryption !== 'ipsec' && encryption !== 'wireguard') {
    console.error(`bad option: --encryption must be ipsec or wireguard, not '${encryption}'\n\n${HELP}`);
    return 2;
  }
  const wg = encryption === 'wireguard';
  const pings = smoke ? 500 : 1000; // at 50/s: the rotation and its jitter fall well inside
  if (sizes.some((s, i) => !(Number.isInteger(s) && s > 0 && s <= 20_000 && (i === 0 || s > sizes[i - 1]!))) || !(o.changes >= 1 && o.events >= 1 && o.steadyS >= 1 && o.cycleS >= 0)) {
    console.error(`bad options: --sizes must be ascending whole numbers up to 20000; --changes, --events, --steady at least 1; --cycle not negative\n\n${HELP}`);
    return 2;
  }
  const snapshots = values['heap-snapshots'] && resolve(values['heap-snapshots']);
  if (snapshots) {
    mkdirSync(snapshots, { recursive: true });
    // The agents inherit it through the lab: SIGUSR2 writes a snapshot of the main thread there.
    process.env['NODE_OPTIONS'] = `${process.env['NODE_OPTIONS'] ?? ''} --heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${snapshots}`.trim();
  }
  const home = mkdtempSync(join(tmpdir(), 'veil-scale-'));
  process.env['VEIL_HOME'] = home; // the cluster config this process reads (etcd endpoints)
  const lab = new ScaleLab(values.name ?? `vs${process.pid}`, home, encryption);
  let sim: SyntheticNodes | undefined;
  let cleaning: Promise<void> | undefined;
  const cleanup = () => (cleaning ??= (async () => {
    for (const c of liveChildren) c.kill('SIGTERM');
    await sim?.removeAll().catch(() => undefined);
    await sim?.close().catch(() => undefined);
    if (values['agent-logs']) copyAgentLogs(lab, resolve(values['agent-logs']));
    await lab.destroy();
    rmSync(home, { recursive: true, force: true });
  })());
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => { void cleanup().then(() => process.exit(130)); });

  const figures: SizeFigures[] = [];
  let rot: RotationFigures | undefined;
  const started = Date.now();
  try {
    await lab.create();
    const spi = wg ? WG_ENCRYPTION_KEY : ((await lab.agents[0]!.sas()).sas[0]?.spi) ?? 3;
    sim = await SyntheticNodes.open(lab.cluster, spi, encryption);
    lab.underlay = SyntheticUnderlay.create(lab.cluster, lab.nodes.map((n) => n.netns));
    const responder = lab.responder = await startResponder(lab, !values['silent-peers']);
    sim.onKeys = (keys) => responder.set(keys);
    if (wg) console.log('WireGuard: the IPsec key rotation (its SPI rule) is IPsec-only: skipped (rotation: null in the JSON)');
    for (const size of sizes) {
      if (!wg && rotationSize < size && !rot) {
        await sim.add(sim.size, rotationSize);
        rot = await rotation(lab, sim, pings);
        await retiredKeyGone(lab.agents[0]!, rot.spi);
      }
      figures.push(await measureSize(lab, sim, size, o));
      if (snapshots) await heapSnapshot(lab.agents[0]!, snapshots, size);
      if (!wg && rotationSize === size) {
        rot = await rotation(lab, sim, pings);
        if (size !== sizes.at(-1)) await retiredKeyGone(lab.agents[0]!, rot.spi);
      }
    }
    if (!wg && !rot) rot = await rotation(lab, sim, pings);
    // Leaving: every synthetic node goes, and so do its routes and datapath entries.
    await sim.removeAll();
    await waitUntil('the synthetic peers gone from the datapath', async () => (await lab.datapathPeers()) === lab.agents.length - 1 || undefined, 60_000 + 5000, 50);
    await waitUntil('their routes gone', () => lab.routes(lab.nodes[0]!) === lab.agents.length - 1 || undefined, 30_000, 50);
  } catch (e) {
    check(false, `scale bench aborted: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
  }
  await cleanup();

  const result = { date: new Date().toISOString(), machine: machine(), wallSeconds: Math.round((Date.now() - started) / 1000), options: { sizes, ...o, rotationSize: wg ? null : rotationSize, encryption, peers: values['silent-peers'] ? 'silent' : 'answering' }, sizes: figures, rotation: rot ?? null, failures };
  printTable(figures, rot);
  const out = values.out ?? (smoke ? undefined : join(ROOT, 'bench/results', `scale-${new Date().toISOString().slice(0, 19).replace(/:/g, '')}.json`));
  if (out) { mkdirSync(dirname(out), { recursive: true }); writeFileSync(out, JSON.stringify(result, null, 2) + '\n'); console.log(`results: ${out}`); }
  return failures.length ? 1 : 0;
}

/** Each key's median over samples of the same shape. */
function medianByKey<T extends Record<string, number>>(samples: T[]): T {
  const first = samples[0];
  if (!first) throw new Error('no samples');
  return Object.fromEntries(Object.keys(first).map((k) => [k, percentile(samples.map((x) => x[k]!), 50)])) as T;
}

/** A record of MB figures as "key value, …". */
function formatMB(r: Record<string, number>): string {
  return Object.entries(r).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ');
}

/** Each mapping category's RSS slope from size lo to size hi, KB per peer. */
function mappingSlopes(lo: SizeFigures, hi: SizeFigures, field: 'rssByMapping' | 'rssByMappingSteady'): string {
  const a = lo[field], b = hi[field];
  return (Object.keys(b) as (keyof typeof b)[]).map((k) => `${k} ${((((b[k] - a[k]) * 1048576) / (hi.size - lo.size)) / 1024).toFixed(2)}`).join(', ');
}

/** What the agent holds off the V8 heap after a collection (SizeFigures.native), MB. */
function nativeFigures(m: AgentMemory): NonNullable<SizeFigures['native']> {
  const mb = (b: number) => b / 1048576;
  const arenas = m.malloc!.arenas, main = arenas.find((a) => a.nr === 0), rest = arenas.filter((a) => a.nr !== 0);
  const sum = (as: typeof arenas, f: (a: (typeof arenas)[number]) => number) => mb(as.reduce((t, a) => t + f(a), 0));
  return {
    externalMainMB: mb(m.main.externalBytes), externalWorkerMB: mb(m.datapath?.externalBytes ?? 0),
    v8MallocMainMB: mb(m.main.mallocedBytes), v8MallocWorkerMB: mb(m.datapath?.mallocedBytes ?? 0),
    arenaMainLiveMB: main ? mb(main.systemBytes - main.freeBytes) : 0, arenaMainFreeMB: main ? mb(main.freeBytes) : 0,
    arenasLiveMB: sum(rest, (a) => a.systemBytes - a.freeBytes), arenasFreeMB: sum(rest, (a) => a.freeBytes),
    arenaSizesMB: rest.map((a) => mb(a.systemBytes)), mmappedMB: mb(m.malloc!.mmappedBytes),
  };
}

function printTable(figures: SizeFigures[], rot: RotationFigures | undefined): void {
  const base = figures[0];
  console.log('\nnodes  converge  key p50/p99 ms  CPU µs/event (× first)  steady %core  RSS MB');
  for (const f of figures) {
    console.log(`${String(f.size).padStart(5)}  ${String(f.convergenceMs).padStart(6)} ms  ${String(f.keyChangeP50Ms).padStart(5)}/${String(f.keyChangeP99Ms).padEnd(6)}  ${f.cpuUsPerEvent.toFixed(0).padStart(8)} (${base ? (f.cpuUsPerEvent / base.cpuUsPerEvent).toFixed(2) : '-'}×)  ${f.steadyCpuPercent.toFixed(2).padStart(10)}  ${f.rssMB.toFixed(1).padStart(6)}`);
  }
  const lo = figures.find((f) => f.size === 1000) ?? figures.at(-2), hi = figures.at(-1);
  if (lo && hi && hi !== lo) {
    const slope = (k: 'rssMB' | 'rssPeakMB' | 'rssCollectedMB' | 'liveHeapMainMB' | 'liveHeapWorkerMB') => ((((hi[k] - lo[k]) * 1e6) / (hi.size - lo.size)) / 1024).toFixed(2);
    console.log(`memory slope ${lo.size}->${hi.size}, KB per peer: RSS (median of the steady window) ${slope('rssMB')} [the target's figure], RSS peak ${slope('rssPeakMB')}, ` +
      `RSS after a full collection ${slope('rssCollectedMB')}; live heap main ${slope('liveHeapMainMB')}, worker ${slope('liveHeapWorkerMB')}; ` +
      `RSS after the collection by mapping: ${mappingSlopes(lo, hi, 'rssByMapping')}; the window's RSS by mapping (medians): ${mappingSlopes(lo, hi, 'rssByMappingSteady')}`);
    const a = lo.native, b = hi.native;
    if (a && b) {
      const keys = Object.keys(b).filter((k) => k !== 'arenaSizesMB') as (keyof typeof b)[];
      console.log(`off the V8 heap after the collection, KB per peer: ${keys.map((k) => `${k.replace(/MB$/, '')} ${((((b[k] as number) - (a[k] as number)) * 1048576) / (hi.size - lo.size) / 1024).toFixed(2)}`).join(', ')}`);
    }
  }
  if (!rot) console.log('rotation: none (IPsec-only; skipped with WireGuard)');
  if (rot) console.log(`rotation across ${rot.peers} peers: ${rot.pingsLost}/${rot.pingsSent} pings lost, ${rot.ruleViolations.length} rule violations in ${rot.samples} samples, all moved in ${rot.completedMs} ms`);
  if (failures.length) console.log(`\n${failures.length} check(s) failed:\n  ${failures.join('\n  ')}`);
}

process.exitCode = await main();
