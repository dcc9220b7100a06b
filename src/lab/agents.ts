// The lab runs each node's agent the way a real host runs it under systemd: one process per node,
// `veil agent run --config FILE` in the node's network namespace, logging to a file, stopped by
// pid. The config file is what a host's /etc/veil/agent.yaml would say: the lab's etcd at its lab
// addresses, the underlay eth0, state and socket in the node's dir; the pod CIDR comes from the
// Node object `lab up` wrote. The boot id is read from /proc/sys/kernel/random/boot_id, which the
// lab makes per-node (lab nodes share one kernel) by bind-mounting the node's boot_id file over it
// in the agent's own mount namespace.
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { stringify as toYaml } from 'yaml';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Registry, RegistryObject } from '../control/registry.js';
import { agentStatusOf, nodeReady } from '../agent/registry-node-source.js';
import { install, publishedStartFailure, TUNNEL_DEVICES, uninstall, waitReady } from '../agent/installer.js';
import { nodeStateDir } from '../agent/agent.js';
import { BOOT_ID_FILE } from '../agent/node-source.js';
import type { Settings } from '../agent/settings.js';
import { FAIL_CLOSED_METRIC, releaseTunnelBypass } from '../agent/routes.js';
import { WG_PORT } from '../agent/wireguard-mode.js';
import { run } from '../util/exec.js';
import { VeilError } from '../util/errors.js';
import { isRecordedProcessAlive, listPids, registerPid, stopProcesses, unregisterPid } from './pids.js';
import { installPlaintextRoutes, plaintextRoutes } from './routes.js';
import { nodeSpec, readLabMeta } from './objects.js';
import { labAgentEtcdEndpoints } from './lifecycle.js';

/** The node's agent config: what a host's /etc/veil/agent.yaml holds. */
export function agentConfigPath(cluster: string, node: string): string {
  return join(nodeStateDir(cluster, node), 'agent.yaml');
}

function writeAgentConfig(cluster: string, node: RegistryObject): string {
  const meta = readLabMeta(cluster);
  if (!meta) throw new VeilError('NO_LAB', `lab cluster '${cluster}' has no lab.json`, `create it with 'veil lab up --name ${cluster}'`);
  const name = node.metadata.name;
  const dir = nodeStateDir(cluster, name);
  const config = {
    cluster, nodeName: name, etcd: { endpoints: labAgentEtcdEndpoints(meta) },
    underlay: { interface: nodeSpec(node).underlayInterface }, stateDir: dir, runDir: dir,
  };
  const path = agentConfigPath(cluster, name);
  writeFileSync(path, toYaml(config));
  return path;
}

/** The environment without the VEIL_* settings of the agent config: the file alone says them. */
function agentEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^VEIL_(CLUSTER|NODE_NAME|ETCD_|UNDERLAY_|POD_CIDRS|STATE_DIR|RUN_DIR)/.test(k)));
}

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
  const spec = nodeSpec(node);
  mkdirSync(nodeStateDir(cluster, name), { recursive: true, mode: 0o770 });
  const config = writeAgentConfig(cluster, node);
  const log = openSync(agentLogPath(cluster, name), 'a');
  try {
    // `ip netns exec` gives the command a mount namespace of its own: the bind mount stays in it.
    const script = 'mount --bind "$1" "$2" && shift 2 && exec "$@"';
    const child = spawn('ip', ['netns', 'exec', spec.netns, 'sh', '-c', script, 'veil-agent', spec.bootIDFile, BOOT_ID_FILE,
      process.execPath, MAIN_JS, 'agent', 'run', '--config', config], {
      detached: true, stdio: ['ignore', log, log], env: agentEnv(),
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

/** `veil install` on the lab: the settings, then an agent per node, then the wait through the registry. */
export async function labInstall(cluster: string, reg: Registry, settings: Settings, timeoutMs: number,
  progress?: (ready: number, total: number, notReady: string[]) => void, started?: (nodes: RegistryObject[]) => void): Promise<RegistryObject[]> {
  const nodes = await install(cluster, reg, settings);
  const pids = new Map(nodes.map((n) => [n.metadata.name, startAgent(cluster, n)]));
  started?.(nodes);
  await waitReady(reg, timeoutMs, progress, async (n) => {
    const pid = pids.get(n.metadata.name);
    if (pid !== undefined && agentPid(cluster, n.metadata.name) === pid) return undefined;
    return { reason: await startFailure(reg, n.metadata.name, pid) };
  });
  return nodes;
}

/** Why the agent (pid) exited, as it published before exiting: read after the exit, not before. */
async function startFailure(reg: Registry, node: string, pid: number | undefined): Promise<string | undefined> {
  const obj = await reg.get('Node', node);
  return obj && publishedStartFailure(obj, pid);
}

/** Waits until the agent with this pid is ready; fails with the agent's own reason if it exits. */
export async function waitAgentReady(reg: Registry, cluster: string, node: string, pid: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const obj = await reg.get('Node', node);
    if (obj && agentStatusOf(obj)?.pid === pid && nodeReady(obj, await reg.get('Lease', node))) return;
    const alive = agentPid(cluster, node) === pid;
    if (!alive || Date.now() > deadline) {
      const why = alive ? ' in time' : `: ${await startFailure(reg, node, pid) ?? 'it exited'}`;
      throw new VeilError('AGENT_NOT_READY', `the agent on ${node} did not become ready${why}`, `see 'veil agent logs ${node}'`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Stops every agent and gives the nodes their plaintext lab routing back. */
export async function labUninstall(cluster: string, reg: Registry): Promise<void> {
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
  }
  await uninstall(reg);
  await installPlaintextRoutes(cluster);
}
