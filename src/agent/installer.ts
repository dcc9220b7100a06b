// Installing veil on a cluster: store the settings, start an agent on every node, wait for them;
// and the reverse. Every step is idempotent, so a re-run after a crash finishes the job.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Registry, RegistryObject } from '../control/registry.js';
import { nodeReady, nodeSpec } from '../lab/objects.js';
import { listPids, isRecordedProcessAlive, registerPid, stopProcesses, unregisterPid } from '../lab/pids.js';
import { installPlaintextRoutes, plaintextRoutes } from '../lab/routes.js';
import { run } from '../util/exec.js';
import { VeilError } from '../util/errors.js';
import { nodeStateDir } from './agent.js';
import { clearSettings, readSettings, writeSettings } from './install-state.js';
import type { Settings } from './settings.js';
import { FAIL_CLOSED_METRIC, releaseTunnelBypass } from './routes.js';
import { WG_DEVICE, WG_PORT } from './wireguard-mode.js';
import { IPSEC_DEVICE } from './ipsec-mode.js';

/** The tunnel devices an agent may have left (they are persistent: they outlive the agent). */
export const TUNNEL_DEVICES = [WG_DEVICE, IPSEC_DEVICE];

const MAIN_JS = resolve(dirname(fileURLToPath(import.meta.url)), '../cli/main.js');

export function agentPidName(node: string): string {
  return `agent-${node}`;
}

export function agentLogPath(cluster: string, node: string): string {
  return join(nodeStateDir(cluster, node), 'agent.log');
}

/** The running agent's pid on a node, if any. */
export function agentPid(cluster: string, node: string): number | undefined {
  const rec = listPids(cluster).find((r) => r.name === agentPidName(node));
  return rec && isRecordedProcessAlive(rec) ? rec.pid : undefined;
}

/** Starts the agent of one node in the node's namespace, detached, logging to its state dir. */
export function startAgent(cluster: string, node: RegistryObject): number {
  const name = node.metadata.name;
  const running = agentPid(cluster, name);
  if (running) return running;
  mkdirSync(nodeStateDir(cluster, name), { recursive: true, mode: 0o770 });
  const log = openSync(agentLogPath(cluster, name), 'a');
  try {
    const child = spawn('ip', ['netns', 'exec', nodeSpec(node).netns, process.execPath, MAIN_JS, 'agent', 'run', '--node', name, '--cluster', cluster], {
      detached: true, stdio: ['ignore', log, log], env: { ...process.env, VEIL_CLUSTER: cluster },
    });
    if (!child.pid) throw new VeilError('AGENT_SPAWN', `could not start the agent on ${name}`);
    child.unref();
    registerPid(cluster, agentPidName(name), child.pid);
    return child.pid;
  } finally {
    closeSync(log);
  }
}

export async function stopAgent(cluster: string, node: string): Promise<boolean> {
  const pid = agentPid(cluster, node);
  unregisterPid(cluster, agentPidName(node));
  if (!pid) return false;
  await stopProcesses([pid], 5000);
  return true;
}

/** The error an agent logged since its latest start (pid: that start), if any: why it is not running. */
export function agentStartFailure(cluster: string, node: string, pid?: number): string | undefined {
  const path = agentLogPath(cluster, node);
  if (!existsSync(path)) return undefined;
  const lines: Record<string, unknown>[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n').slice(-50)) {
    try { lines.push(JSON.parse(line) as Record<string, unknown>); } catch { /* not a JSON line */ }
  }
  const started = lines.findLastIndex((l) => l['msg'] === 'agent starting' && (pid === undefined || l['pid'] === pid));
  const failed = started < 0 ? undefined : lines.slice(started).find((l) => l['level'] === 'error');
  return failed ? String(failed['error'] ?? failed['msg']) : undefined;
}

/**
 * Waits until every node reports ready; calls progress on each change. With `cluster`, an agent
 * that has exited (it failed to start) ends the wait at once with the error it logged.
 */
export async function waitReady(reg: Registry, timeoutMs: number, progress?: (ready: number, total: number, notReady: string[]) => void, cluster?: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = -1;
  for (;;) {
    const nodes = await reg.list('Node');
    const notReady = nodes.filter((n) => !nodeReady(n)).map((n) => n.metadata.name);
    const ready = nodes.length - notReady.length;
    if (ready !== last) { progress?.(ready, nodes.length, notReady); last = ready; }
    if (!notReady.length) return;
    const dead = cluster ? notReady.find((n) => !agentPid(cluster, n)) : undefined;
    if (dead) {
      const why = agentStartFailure(cluster!, dead);
      throw new VeilError('AGENT_FAILED', `the agent on ${dead} exited${why ? `: ${why}` : ''}`, `look at 'veil agent logs ${dead}', fix the cause, then re-run 'veil install'`);
    }
    if (Date.now() > deadline) {
      throw new VeilError('NOT_READY', `agents not ready after ${Math.round(timeoutMs / 1000)}s on: ${notReady.join(', ')}`,
        `look at 'veil agent logs ${notReady[0]}' and 'veil status'`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

export async function install(cluster: string, reg: Registry, settings: Settings): Promise<RegistryObject[]> {
  const nodes = await reg.list('Node');
  if (!nodes.length) throw new VeilError('NO_NODES', `cluster '${cluster}' has no nodes`, "create the lab first: 'veil lab up'");
  const prev = await readSettings(reg);
  if (prev && prev['encryption.enabled'] && (prev['encryption.type'] !== settings['encryption.type'])) {
    throw new VeilError('ALREADY_INSTALLED', `veil is already installed with ${prev['encryption.type']} encryption`, "run 'veil uninstall' first");
  }
  await writeSettings(reg, settings);
  for (const n of nodes) startAgent(cluster, n);
  return nodes;
}

/** Stops every agent and gives the nodes their plaintext lab routing back. */
export async function uninstall(cluster: string, reg: Registry): Promise<void> {
  const nodes = await reg.list('Node');
  for (const n of nodes) await stopAgent(cluster, n.metadata.name);
  for (const n of nodes) {
    const ns = nodeSpec(n).netns;
    for (const dev of TUNNEL_DEVICES) run(['ip', '-n', ns, 'link', 'del', dev]);
    releaseTunnelBypass(WG_PORT, ns); // only WireGuard's node encryption adds the bypass rule
    for (const peer of plaintextRoutes(n, nodes)) {
      run(['ip', '-n', ns, 'route', 'del', 'blackhole', peer.dst, 'metric', String(FAIL_CLOSED_METRIC)]);
    }
    for (const other of nodes) {
      if (other === n) continue;
      run(['ip', '-n', ns, 'route', 'del', 'blackhole', `${nodeSpec(other).internalIP}/32`, 'metric', String(FAIL_CLOSED_METRIC)]);
    }
    await reg.mutate('Node', n.metadata.name, (cur) => {
      if (!cur) return undefined;
      const annotations = { ...(cur.metadata.annotations ?? {}) };
      delete annotations['network.veil.io/wg-pub-key'];
      const status = { ...(cur.status ?? {}) };
      delete status['agent'];
      const spec = { ...(cur.spec ?? {}) };
      delete spec['encryption'];
      return { ...cur, metadata: { ...cur.metadata, annotations }, spec, status };
    });
  }
  await installPlaintextRoutes(cluster);
  await clearSettings(reg);
}
