// `veil status`: from what the registry and each reachable agent say, a report of the agents
// (desired, ready, available), the encryption of the cluster and every problem with its reason.
// Pure: the observations come in, the report and its text go out (tested without a cluster).
import type { RegistryMember, RegistryObject } from '../control/registry.js';
import type { Settings } from '../agent/settings.js';
import { describeExit, type AgentExit } from '../agent/agent-runs.js';
import { modeCounts, summarizeEncryption, type ClusterEncryptionStatus, type NodeEncryption } from './encryption-summary.js';
import { table } from '../util/text-table.js';
import type { CiliumEncryptionStatus, Healthz, PublishedAgentStatus, WireGuardPeerJson } from '../agent/api.js';

/** Everything known about one node when the report is made. */
export interface NodeObservation {
  name: string;
  object: RegistryObject;
  /** The agent's pid if its recorded process is alive. */
  agentPid?: number;
  /** What the agent's supervisor saw (the lab's; the kubelet's in the agent pod's status; on a host
   *  what the agent and its unit's ExecStopPost published). waitingReason: the kubelet's, e.g. CrashLoopBackOff. */
  supervision?: { restarts: number; state: 'running' | 'backoff' | 'stopped'; lastExit?: AgentExit; nextStartAt?: string; waitingReason?: string;
    /** systemd: a host agent's own record and its unit's ExecStopPost (agent-runs.ts). */
    by?: 'systemd' };
  /** The node's liveness lease, if live (an agent that stopped renewing has none). */
  lease?: RegistryObject;
  healthz?: Healthz;
  healthzError?: string;
  encrypt?: CiliumEncryptionStatus;
}

export interface NodeReport {
  name: string;
  running: boolean;
  pid?: number;
  ready: boolean;
  available: boolean;
  health: string;
  /** Seconds since the agent last renewed its liveness lease. */
  leaseAgeSeconds?: number;
  /** How often its supervisor restarted the agent after it died (where known). */
  restarts?: number;
  encryption: Healthz['encryption'];
  /** The veil version its agent runs, as it reports it (live, else as published). */
  version?: string;
  errors: string[];
  /** Why the node is not available yet although nothing is wrong (e.g. a first handshake pending). */
  pending: string[];
}

export interface StatusReport {
  ok: boolean;
  version: string;
  cluster: string;
  installed: boolean;
  encryptionType?: string;
  agents: { desired: number; running: number; ready: number; available: number };
  encryption: ClusterEncryptionStatus;
  nodes: NodeReport[];
  errors: { node: string; reason: string }[];
  /** The registry's servers (etcd members), each asked alone; absent for a single store. */
  registry?: RegistryMember[];
}

/** A peer that never completed a handshake this long after the agent started is a problem. */
export const HANDSHAKE_GRACE_MS = 20_000;
/** WireGuard rekeys every 120 s while traffic flows (the health probes are traffic); 180 s is REJECT_AFTER_TIME. */
export const HANDSHAKE_MAX_AGE_MS = 180_000;

/** Peers still waiting for their first handshake (within the grace time): the node is not available yet. */
export function peersAwaitingHandshake(encrypt: CiliumEncryptionStatus | undefined, agentStartedAt: number, now: number): string[] {
  if (now - agentStartedAt > HANDSHAKE_GRACE_MS) return [];
  return wgPeers(encrypt).filter((p) => !p['last-handshake-time'] || p['last-handshake-time'].startsWith('0001-')).map((p) => p.node ?? p['public-key'] ?? '?');
}

function wgPeers(encrypt: CiliumEncryptionStatus | undefined): Partial<WireGuardPeerJson>[] {
  return (encrypt?.wireguard?.interfaces ?? []).flatMap((i) => i.peers ?? []);
}

/** Peers of a WireGuard encrypt status without a recent handshake (empty for other modes). */
export function handshakeProblems(encrypt: CiliumEncryptionStatus | undefined, agentStartedAt: number, now: number): string[] {
  const out: string[] = [];
  for (const p of wgPeers(encrypt)) {
    const who = p.node ?? p['public-key'] ?? '?';
    const hs = p['last-handshake-time'];
    const t = hs && !hs.startsWith('0001-') ? Date.parse(hs) : NaN;
    if (!Number.isFinite(t)) {
      if (now - agentStartedAt > HANDSHAKE_GRACE_MS) out.push(`peer ${who}: no handshake ${Math.round((now - agentStartedAt) / 1000)}s after the agent started`);
    } else if (now - t > HANDSHAKE_MAX_AGE_MS) {
      out.push(`peer ${who}: latest handshake ${Math.round((now - t) / 1000)}s ago (more than ${HANDSHAKE_MAX_AGE_MS / 1000}s)`);
    }
  }
  return out;
}

function nodeReport(o: NodeObservation, installed: boolean, now: number): NodeReport {
  // Any part may be missing: an agent that never reported, or one of another version.
  const st = o.object.status?.['agent'] as Partial<PublishedAgentStatus> | undefined;
  const errors: string[] = [];
  const pending: string[] = [];
  const renewed = Date.parse(String(o.lease?.spec?.['renewTime'] ?? ''));
  const leaseAge = Number.isFinite(renewed) ? Math.max(0, now - renewed) : undefined;
  const live = o.lease !== undefined;
  const running = o.agentPid !== undefined;
  // A dead agent's lease and published "ready" outlive it (up to the lease's TTL): ready needs the
  // process that published it to be running.
  const ready = st?.ready === true && live && running && st.pid === o.agentPid;
  if (installed) {
    if (!running) errors.push(`agent not running${st?.pid ? ` (pid ${st.pid} is gone)` : ''}${supervisionNote(o.supervision, now)}`);
    else if (!o.healthz) errors.push(`agent status API unreachable${o.healthzError ? `: ${o.healthzError}` : ''}`);
    if (!st) errors.push('agent has not reported to the registry yet');
    else if (!live) errors.push(`no liveness lease: Lease/${o.name} lapsed (its agent stopped renewing it)`);
    else if (st.ready !== true) errors.push('agent reports not ready');
    // The live answer is fresher than the registry's copy; the copy is all there is for a dead agent.
    const problems = o.healthz
      ? o.healthz.health.checks.filter((c) => c.state !== 'Ok').map((c) => `${c.name}: ${c.message}`)
      : (st?.health?.problems ?? []).map((p) => `${p} (last reported)`);
    errors.push(...problems);
    const started = Date.parse(o.healthz?.startedAt ?? st?.startedAt ?? '');
    if (o.encrypt && Number.isFinite(started)) {
      errors.push(...handshakeProblems(o.encrypt, started, now));
      pending.push(...peersAwaitingHandshake(o.encrypt, started, now).map((p) => `waiting for the first handshake with ${p}`));
    }
  }
  const health = o.healthz?.health.state ?? (running ? (st?.health?.state ?? 'Unknown') : '-');
  const encryption = o.healthz?.encryption ?? (installed && running && st?.encryption ? st.encryption : { mode: 'Disabled' });
  return {
    name: o.name, running, pid: o.agentPid, ready: installed && ready, restarts: o.supervision?.restarts,
    available: installed && ready && running && !!o.healthz && health !== 'Failure' && !pending.length,
    health, leaseAgeSeconds: leaseAge === undefined ? undefined : Math.round(leaseAge / 1000),
    encryption, errors, pending, ...(running && (o.healthz?.version ?? st?.version) ? { version: o.healthz?.version ?? st?.version } : {}),
  };
}

/** The agents' versions when any differs from the CLI's (an upgrade under way): "9.9.1 (1/3 nodes), 0.1.0 (2/3 nodes)". */
function agentVersions(r: StatusReport): string | undefined {
  const counts = new Map<string, number>();
  for (const n of r.nodes) if (n.version) counts.set(n.version, (counts.get(n.version) ?? 0) + 1);
  if (![...counts.keys()].some((v) => v !== r.version)) return undefined;
  return [...counts].map(([v, c]) => `${v} (${c}/${r.nodes.length} nodes)`).join(', ');
}

/** What the supervisor says about a dead agent: how it died, and when it starts again. */
function supervisionNote(s: NodeObservation['supervision'], now: number): string {
  if (!s) return '';
  const parts: string[] = [];
  const e = s.lastExit;
  const ago = Date.parse(e?.at ?? '');
  if (e) parts.push(`it ${describeExit(e)}${Number.isFinite(ago) ? ` ${Math.max(0, Math.round((now - ago) / 1000))}s ago` : ''}${e.reason ? ` (${e.reason})` : ''}`);
  if (s.state === 'backoff' && s.nextStartAt) parts.push(`its supervisor restarts it in ${Math.max(0, (Date.parse(s.nextStartAt) - now) / 1000).toFixed(1)}s`);
  if (s.state === 'backoff' && s.waitingReason) parts.push(`the kubelet restarts it (${s.waitingReason})`);
  if (s.state === 'backoff' && s.by === 'systemd') parts.push('systemd restarts it (Restart=on-failure)');
  if (s.state === 'stopped') parts.push('its supervisor has stopped');
  parts.push(`restarts: ${s.restarts}`);
  return `: ${parts.join('; ')}`;
}

export function buildStatusReport(input: { cluster: string; version: string; settings?: Settings; observations: NodeObservation[]; now: number; registry?: RegistryMember[];
  /** Registry values that are no valid object (garbage, oversized), by key: skipped, and named. */
  invalidObjects?: { key: string; reason: string }[] }): StatusReport {
  const installed = !!input.settings?.['encryption.enabled'];
  const nodes = input.observations.map((o) => nodeReport(o, installed, input.now));
  const encNodes: NodeEncryption[] = nodes.map((n, i) => ({
    node: n.name,
    status: input.observations[i]!.encrypt ?? { mode: n.available || n.ready ? n.encryption.mode : 'Disabled' },
  }));
  const encryption = summarizeEncryption(encNodes, { ipsecEnabled: installed && input.settings?.['encryption.type'] === 'ipsec' });
  const errors = nodes.flatMap((n) => n.errors.map((reason) => ({ node: n.name, reason })));
  for (const o of input.invalidObjects ?? []) errors.push({ node: 'registry', reason: `${o.key} is not a valid object, skipped: ${o.reason}` });
  const agents = {
    desired: installed ? nodes.length : 0,
    running: nodes.filter((n) => n.running).length,
    ready: nodes.filter((n) => n.ready).length,
    available: nodes.filter((n) => n.available).length,
  };
  const ok = installed && nodes.length > 0 && agents.ready === nodes.length && agents.available === nodes.length && errors.length === 0;
  return {
    ok, version: input.version, cluster: input.cluster, installed,
    encryptionType: installed ? input.settings!['encryption.type'] : undefined,
    agents, encryption, nodes, errors, ...(input.registry ? { registry: input.registry } : {}),
  };
}

export interface Painter {
  ok: string; fail: string; warn: string;
  green(s: string): string; red(s: string): string; yellow(s: string): string; bold(s: string): string;
}

const PLAIN: Painter = { ok: '[ok]', fail: '[fail]', warn: '[warn]', green: (s) => s, red: (s) => s, yellow: (s) => s, bold: (s) => s };

/** The text form, in the layout of `cilium status`: headline rows, a node table, then the errors. */
export function formatStatusReport(r: StatusReport, p: Painter = PLAIN): string {
  const a = r.agents;
  const headline = !r.installed ? p.yellow('not installed') : r.ok ? p.green('OK') : p.red(`${r.errors.length} error${r.errors.length === 1 ? '' : 's'}`);
  const enc = modeCounts(r.encryption).map(({ mode, count }) => `${mode} (${count}/${r.encryption['total-node-count'] ?? 0} nodes)`).join(', ');
  const rows = [
    ['Veil:', headline],
    ['Agents:', r.installed ? `Desired: ${a.desired}, Ready: ${a.ready}/${a.desired}, Available: ${a.available}/${a.desired}` : `none (run 'veil install --encryption wireguard|ipsec')`],
    ['Encryption:', enc || 'Disabled'],
    ['Version:', `veil ${r.version}${agentVersions(r) ? `; agents: ${agentVersions(r)}` : ''}`],
    ['Cluster:', `${r.cluster} (${r.nodes.length} node${r.nodes.length === 1 ? '' : 's'})`],
  ];
  if (r.registry) {
    const healthy = r.registry.filter((m) => m.healthy).length;
    const line = `etcd: ${healthy}/${r.registry.length} members healthy`;
    rows.push(['Registry:', healthy === r.registry.length ? line : p.yellow(line)]);
    for (const m of r.registry) if (!m.healthy) rows.push(['', `${p.warn} member ${m.endpoint} down: ${m.error ?? 'no answer'}`]);
  }
  const out = [table(rows, 2), ''];
  if (r.nodes.length) {
    const nodeRows = [['NODE', 'AGENT', 'RESTARTS', 'HEALTH', 'ENCRYPTION', 'LEASE RENEWED']];
    for (const n of r.nodes) {
      const agent = !r.installed ? '-' : !n.running ? 'NotRunning' : n.available ? 'Available' : n.ready ? 'Ready' : 'NotReady';
      nodeRows.push([n.name, agent, n.restarts === undefined ? '-' : String(n.restarts), n.health, n.encryption.mode, n.leaseAgeSeconds === undefined ? '-' : `${n.leaseAgeSeconds}s ago`]);
    }
    out.push(table(nodeRows), '');
  }
  // WireGuard static key rotations (in progress, or the last one), as each agent's status line tells them.
  const rotations = r.nodes.map((n) => [n.name, /, (Key rotat.*)\]$/.exec(n.encryption?.detail ?? '')?.[1]] as const).filter(([, t]) => t);
  if (rotations.length) {
    out.push('Key rotations:');
    out.push(table(rotations.map(([n, t]) => [`  ${n}`, t!])));
    out.push('');
  }
  if (r.errors.length) {
    out.push('Errors:');
    out.push(table(r.errors.map((e) => [`  ${p.fail} ${e.node}`, e.reason])));
    out.push('');
  }
  return out.join('\n');
}

