// `veil verify`: proves pod traffic is encrypted on the wire. One short-lived test pod per node;
// every ordered pair of nodes exchanges ICMP, TCP and UDP carrying a random per-pair marker (all
// pairs at once) while tcpdump records every node's underlay to a pcap; then the marker is searched
// in the raw capture bytes and every frame is classified. Pods, captures and files are removed
// whatever happens.
import { ciliumModeName } from '../agent/settings.js';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openRegistry } from '../control/cluster.js';
import { readSettings } from '../agent/install-state.js';
import { externalPeerFromObject } from '../agent/external-peers.js';
import { createPod, deletePod } from '../lab/pods.js';
import { nodeSpec, podSpec, readLabMeta } from '../lab/objects.js';
import { labAgentEtcdEndpoints } from '../lab/lifecycle.js';
import { registerPid, stopProcesses, unregisterPid } from '../lab/pids.js';
import { preflight } from '../lab/preflight.js';
import { run } from '../util/exec.js';
import { VeilError, errorMessage } from '../util/errors.js';
import { classifyFrame, countOccurrences, parsePcap } from './pcap.js';
import type { ProbeConfig, ProbeResult, ProbeTarget } from './verify-probe.js';
import { judgeVerify, pairKey, type NodeCapture, type PairTraffic, type VerifyNode, type VerifyReport } from './verify-report.js';

const PROBE_JS = join(dirname(fileURLToPath(import.meta.url)), 'verify-probe.js');
export const VERIFY_PORT = 4245;
export const VERIFY_POD_PREFIX = 'veil-verify-';

export interface VerifyOptions {
  cluster: string;
  /** Per-protocol timeout for one pair (ms). */
  timeoutMs?: number;
  /** Progress lines for people (stderr). */
  progress?: (line: string) => void;
}

interface Proc {
  name: string;
  child: ChildProcessWithoutNullStreams;
  exited: Promise<void>;
  stdout: string;
  stderr: string;
}

function start(cluster: string, name: string, argv: string[]): Proc {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  const p: Proc = { name, child, stdout: '', stderr: '', exited: new Promise((r) => child.on('close', () => r())) };
  child.stdout.on('data', (d) => { p.stdout += d; });
  child.stderr.on('data', (d) => { p.stderr += d; });
  child.on('error', () => undefined);
  if (child.pid) registerPid(cluster, name, child.pid);
  return p;
}

/** Resolves when `test` matches the process's output; rejects on exit or after timeoutMs. */
function waitFor(p: Proc, test: (p: Proc) => boolean, timeoutMs: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (test(p)) { cleanup(); resolve(); }
    };
    const fail = (why: string) => { cleanup(); reject(new VeilError('VERIFY_SETUP', `${what}: ${why}`, p.stderr.trim().split('\n').slice(-2).join(' '))); };
    const timer = setTimeout(() => fail(`not ready after ${timeoutMs} ms`), timeoutMs);
    const onExit = () => fail('exited early');
    const cleanup = () => { clearTimeout(timer); p.child.stdout.off('data', check); p.child.stderr.off('data', check); p.child.off('close', onExit); };
    p.child.stdout.on('data', check);
    p.child.stderr.on('data', check);
    p.child.on('close', onExit);
    check();
  });
}

async function stopAll(cluster: string, procs: Proc[]): Promise<void> {
  const pids = procs.filter((p) => p.child.exitCode === null && p.child.signalCode === null && p.child.pid).map((p) => p.child.pid!);
  await stopProcesses(pids, 2000);
  for (const p of procs) unregisterPid(cluster, p.name);
}

export async function verifyEncryption(opts: VerifyOptions): Promise<VerifyReport> {
  preflight('veil verify');
  if (run(['tcpdump', '--version']).status !== 0) throw new VeilError('MISSING_TOOL', 'tcpdump does not run', 'install it (Debian: apt-get install tcpdump)');
  const t0 = Date.now();
  const say = opts.progress ?? (() => undefined);
  const { cluster } = opts;
  const timeoutMs = opts.timeoutMs ?? 5000;
  const reg = openRegistry(cluster);
  const runId = randomBytes(3).toString('hex');
  const dir = mkdtempSync(join(tmpdir(), 'veil-verify-'));
  const pods: string[] = [];
  const procs: Proc[] = [];
  try {
    const objects = await reg.list('Node');
    if (objects.length < 2) throw new VeilError('TOO_FEW_NODES', `verify needs at least 2 nodes, cluster '${cluster}' has ${objects.length}`, "create a lab with 'veil lab up --nodes 4'");
    const settings = await readSettings(reg);
    const mode = !settings?.['encryption.enabled'] ? 'Disabled' : ciliumModeName(settings['encryption.type']);
    const nodes: VerifyNode[] = objects.map((o) => {
      const s = nodeSpec(o);
      return { name: o.metadata.name, internalIP: s.internalIP, podCIDR: s.podCIDR, ...(s.internalIPs ? { internalIPs: s.internalIPs } : {}), ...(s.podCIDRs ? { podCIDRs: s.podCIDRs } : {}) };
    });
    say(`Encryption mode: ${mode}; ${nodes.length} nodes, ${nodes.length * (nodes.length - 1)} ordered pairs`);

    // 1. a test pod per node
    const podIPs = new Map<string, { pod: string; ip: string; ip6?: string; netns: string }>();
    for (const [i, n] of nodes.entries()) {
      const name = `${VERIFY_POD_PREFIX}${runId}-${i}`;
      const pod = await createPod(cluster, name, n.name);
      pods.push(name);
      podIPs.set(n.name, { pod: name, ip: podSpec(pod).podIP, ip6: podSpec(pod).podIPs?.find((ip) => ip.includes(':')), netns: podSpec(pod).netns });
    }
    // 2. underlay captures on every node
    const captures = objects.map((o, i) => {
      const file = join(dir, `${o.metadata.name}.pcap`);
      const p = start(cluster, `verify-${runId}-capture-${i}`, ['ip', 'netns', 'exec', nodeSpec(o).netns,
        'tcpdump', '-n', '-i', nodeSpec(o).underlayInterface, '-U', '--immediate-mode', '-Z', 'root', '-w', file]);
      procs.push(p);
      return { node: o.metadata.name, file, proc: p };
    });
    await Promise.all(captures.map((c) => waitFor(c.proc, (p) => p.stderr.includes('listening on'), 10_000, `tcpdump on ${c.node}`)));
    // 3. a traffic probe per pod, each with a fresh marker per target
    const markers: Record<string, string> = {};
    const probes = nodes.map((n, i) => {
      // Every family both pods have: a dual-stack lab proves IPv6 as well (an IPv6-only lab, IPv6 alone).
      const targets = nodes.filter((m) => m !== n).flatMap((m) => {
        const to = podIPs.get(m.name)!;
        const ips: [string, 4 | 6][] = [[to.ip, to.ip.includes(':') ? 6 : 4], ...(to.ip6 && podIPs.get(n.name)!.ip6 ? [[to.ip6, 6] as [string, 6]] : [])];
        return ips.map(([ip, family]): ProbeTarget => {
          const marker = randomBytes(16).toString('hex');
          markers[pairKey(n.name, m.name, family)] = marker;
          return { node: m.name, ip, marker, ...(family === 6 ? { family } : {}) };
        });
      });
      const cfg: ProbeConfig = { port: VERIFY_PORT, timeoutMs, targets, ipv6: [podIPs.get(n.name)!.ip, podIPs.get(n.name)!.ip6].some((ip) => ip?.includes(':')) };
      const p = start(cluster, `verify-${runId}-probe-${i}`, ['ip', 'netns', 'exec', podIPs.get(n.name)!.netns, process.execPath, PROBE_JS, JSON.stringify(cfg)]);
      procs.push(p);
      return { node: n.name, proc: p };
    });
    await Promise.all(probes.map((p) => waitFor(p.proc, (x) => x.stdout.includes('ready\n'), 10_000, `traffic probe on ${p.node}`)));
    say(`Sending ICMP, TCP and UDP between ${nodes.length} test pods while capturing ${nodes.length} underlays`);
    for (const p of probes) p.proc.child.stdin.write('go\n');
    const traffic: PairTraffic[] = [];
    const problems: string[] = [];
    await Promise.all(probes.map(async (p) => {
      try {
        await waitFor(p.proc, (x) => /^\[.*\]$/m.test(x.stdout), timeoutMs * 3 + 5000, `traffic probe on ${p.node}`);
        const results = JSON.parse(/^\[.*\]$/m.exec(p.proc.stdout)![0]) as ProbeResult[];
        for (const r of results) traffic.push({ from: p.node, to: r.node, ...(r.family === 6 ? { family: 6 as const } : {}), icmp: r.icmp, tcp: r.tcp, udp: r.udp, detail: r.detail });
      } catch (e) {
        problems.push(`probe on ${p.node}: ${errorMessage(e)}`);
        for (const n of nodes) if (n.name !== p.node) traffic.push({ from: p.node, to: n.name, icmp: false, tcp: false, udp: false, detail: ['probe failed'] });
      }
    }));
    for (const p of probes) p.proc.child.stdin.end();
    await Promise.race([Promise.all(probes.map((p) => p.proc.exited)), new Promise((r) => setTimeout(r, 2000))]);
    // Let the last frames reach the capture, then stop it (tcpdump flushes every packet: -U).
    await new Promise((r) => setTimeout(r, 300));
    await stopAll(cluster, procs);
    // 4. what the underlay carried
    // the tunnel's ends: the nodes, and the members without an agent (veil peer add), whose tunnel traffic is as encrypted
    const peerObjects = await reg.list('Peer').catch(() => []); // a registry without peers (Kubernetes)
    const peerIPs = peerObjects.map(externalPeerFromObject).flatMap((p) => typeof p === 'string' ? [] : [p.endpoint.address]);
    const nodeIPs = new Set([...nodes.flatMap((n) => n.internalIPs ?? [n.internalIP]), ...peerIPs]);
    const meta = readLabMeta(cluster);
    const registryIPs = new Set(meta ? labAgentEtcdEndpoints(meta).map((u) => new URL(u).hostname.replace(/^\[|\]$/g, '')) : []);
    const marks = Object.values(markers);
    const nodeCaptures: NodeCapture[] = captures.map((c) => {
      let raw: Buffer;
      try { raw = readFileSync(c.file); } catch (e) { problems.push(`capture on ${c.node}: ${errorMessage(e)}`); return { node: c.node, frames: [], markerHits: {} }; }
      const markerHits: Record<string, number> = {};
      for (const m of marks) markerHits[m] = countOccurrences(raw, Buffer.from(m, 'hex')) + countOccurrences(raw, Buffer.from(m, 'latin1'));
      return { node: c.node, frames: parsePcap(raw).map((f) => classifyFrame(f.data, nodeIPs, registryIPs)), markerHits };
    });
    traffic.sort((a, b) => nodes.findIndex((n) => n.name === a.from) - nodes.findIndex((n) => n.name === b.from) || nodes.findIndex((n) => n.name === a.to) - nodes.findIndex((n) => n.name === b.to)
      || (a.family ?? 4) - (b.family ?? 4));
    return judgeVerify({ mode, encapsulation: settings?.['encryption.ipsec.encapsulation'], nodes, traffic, markers, captures: nodeCaptures, durationMs: Date.now() - t0, problems });
  } finally {
    await stopAll(cluster, procs).catch(() => undefined);
    for (const p of pods) await deletePod(cluster, p).catch((e) => say(`could not delete test pod ${p}: ${errorMessage(e)}`));
    rmSync(dir, { recursive: true, force: true });
    reg.close();
  }
}
