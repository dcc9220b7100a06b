// The lab runs each node's agent the way a real host runs it under systemd: one process per node,
// `veil agent run --config FILE` in the node's network namespace, logging to a file, restarted by a
// supervisor when it dies (as systemd's Restart= does; src/lab/agent-supervisor.ts), stopped by pid. The config file is what a host's /etc/veil/agent.yaml would say: the lab's etcd at its lab
// addresses, the underlay eth0, state and socket in the node's dir; the pod CIDR comes from the
// Node object `lab up` wrote. The boot id is read from /proc/sys/kernel/random/boot_id, which the
// lab makes per-node (lab nodes share one kernel) by bind-mounting the node's boot_id file over it
// in the agent's own mount namespace.
import { spawn } from 'node:child_process';
import { AGENT_NODE_FLAGS } from '../agent/agent-heap.js';
import { closeSync, openSync, rmSync } from 'node:fs';
import { ensurePrivateDir, writePrivateFile } from '../util/private-files.js';
import { stringify as toYaml } from 'yaml';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Registry, RegistryObject } from '../control/registry.js';
import { agentStatusOf, nodeReady } from '../agent/registry-node-source.js';
import { install, publishedStartFailure, uninstall, waitReady } from '../agent/installer.js';
import { removeTunnelState } from '../agent/node-teardown.js';
import { replacedRoutesPath } from '../agent/replaced-routes.js';
import { nodeStateDir } from '../agent/state-paths.js';
import { BOOT_ID_FILE } from '../agent/node-source.js';
import type { Settings } from '../agent/settings.js';
import { VeilError, errorMessage } from '../util/errors.js';
import { labNetnsPrefix } from '../control/cluster.js';
import { readSettings, writeSettings } from '../agent/install-state.js';
import { isRecordedProcessAlive, listPids, registerPid, stopProcesses, unregisterPid } from './pids.js';
import { installPlaintextRoutes } from './routes.js';
import { readSupervisorState, supervisorStatePath, type SupervisorState } from './agent-supervisor.js';
import { nodeSpec, readLabMeta } from './objects.js';
import { agentBuildOf, buildMainJs, ownBuild, recordAgentBuild } from './agent-build.js';
import { labAgentEtcdEndpoints, labNodeEtcdPasswordFile } from './lifecycle.js';
import { nodeUserName } from '../control/etcd/etcd-node-credentials.js';

/** The node's agent config: what a host's /etc/veil/agent.yaml holds. */
export function agentConfigPath(cluster: string, node: string): string {
  return join(nodeStateDir(cluster, node), 'agent.yaml');
}

function writeAgentConfig(cluster: string, node: RegistryObject): void {
  const meta = readLabMeta(cluster);
  if (!meta) throw new VeilError('NO_LAB', `lab cluster '${cluster}' has no lab.json`, `create it with 'veil lab up --name ${cluster}'`);
  const name = node.metadata.name;
  const dir = nodeStateDir(cluster, name);
  // With auth, the node's own etcd user: it may write only this node's Node and Lease.
  const credentials = meta.etcdAuth ? { username: nodeUserName(cluster, name), passwordFile: labNodeEtcdPasswordFile(cluster, name) } : {};
  const config = {
    cluster, nodeName: name, etcd: { endpoints: labAgentEtcdEndpoints(meta), ...credentials },
    // The tunnel end, when it is not the address the route to etcd would pick (IPv6 beside an IPv4 etcd),
    // and in an IPv6-only lab, where the interface has no IPv4 address to pick first.
    underlay: { interface: nodeSpec(node).underlayInterface, ...(meta.underlayFamily === 'ipv6' || meta.ipFamily === 'ipv6' ? { address: nodeSpec(node).internalIP } : {}) }, stateDir: dir, runDir: dir,
  };
  const path = agentConfigPath(cluster, name);
  writePrivateFile(path, toYaml(config)); // a host's /etc/veil/agent.yaml: its etcd credentials
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

export function supervisorPidName(node: string): string {
  return `supervisor-${node}`;
}

/** The running supervisor's pid on a node, if any. */
export function supervisorPid(cluster: string, node: string): number | undefined {
  const rec = listPids(cluster).find((r) => r.name === supervisorPidName(node));
  return rec && isRecordedProcessAlive(rec) ? rec.pid : undefined;
}

/** What the node's supervisor last recorded (restarts, the agent's last exit). */
export function agentSupervision(cluster: string, node: string): SupervisorState | undefined {
  return readSupervisorState(nodeStateDir(cluster, node));
}

/** The command the supervisor runs (asked again at every start): exactly what a host's systemd unit runs (node with the agent's flags, agent-heap.ts), from the node's build (agent-build.ts). */
export function agentCommand(cluster: string, node: string): string[] {
  return [process.execPath, ...AGENT_NODE_FLAGS, buildMainJs(agentBuildOf(nodeStateDir(cluster, node))), 'agent', 'run', '--config', agentConfigPath(cluster, node)];
}

/** The unit's ExecStopPost= for the node, from the node's build: `veil agent stopped` on its config. */
export function agentStopPostCommand(cluster: string, node: string): string[] {
  return [process.execPath, buildMainJs(agentBuildOf(nodeStateDir(cluster, node))), 'agent', 'stopped', '--config', agentConfigPath(cluster, node)];
}

/**
 * Starts the supervisor of one node's agent in the node's namespace, detached; it starts the agent
 * and restarts it when it dies (src/lab/agent-supervisor.ts). Returns the supervisor's pid.
 * build: the package root the agent runs from from now on (default: the one recorded for the node).
 */
export function startAgent(cluster: string, node: RegistryObject, build?: string): number {
  const name = node.metadata.name;
  if (build) recordAgentBuild(nodeStateDir(cluster, name), build);
  const running = supervisorPid(cluster, name);
  if (running) {
    // A supervisor without an agent keeps what its agent stored (its datapath) for a start: SIGHUP.
    if (!agentPid(cluster, name)) process.kill(running, 'SIGHUP');
    return running;
  }
  const spec = nodeSpec(node);
  ensurePrivateDir(nodeStateDir(cluster, name));
  writeAgentConfig(cluster, node);
  rmSync(supervisorStatePath(nodeStateDir(cluster, name)), { force: true }); // restarts count from this start
  const log = openSync(agentLogPath(cluster, name), 'a');
  try {
    // `ip netns exec` gives the command a mount namespace of its own: the bind mount stays in it,
    // and the agents the supervisor starts inherit both namespaces.
    const script = 'mount --bind "$1" "$2" && shift 2 && exec "$@"';
    const child = spawn('ip', ['netns', 'exec', spec.netns, 'sh', '-c', script, 'veil-supervisor', spec.bootIDFile, BOOT_ID_FILE,
      process.execPath, MAIN_JS, 'lab', 'supervise', name, '--cluster', cluster], {
      detached: true, stdio: ['ignore', log, log], env: agentEnv(),
    });
    if (!child.pid) throw new VeilError('AGENT_SPAWN', `could not start the agent's supervisor on ${name}`);
    child.unref();
    registerPid(cluster, supervisorPidName(name), child.pid);
    return child.pid;
  } finally {
    closeSync(log);
  }
}

/**
 * Restarts the node's agent through its supervisor (SIGHUP, as `systemctl restart`): the agent
 * hands its datapath over and the next one goes on with it. Starts a supervisor if none runs.
 * build: restart into that build (an upgrade). Returns the pid of the agent that was running (undefined: none).
 */
export function restartAgent(cluster: string, node: RegistryObject, build?: string): number | undefined {
  const name = node.metadata.name;
  if (build) recordAgentBuild(nodeStateDir(cluster, name), build);
  const before = agentPid(cluster, name);
  const sup = supervisorPid(cluster, name);
  if (sup) process.kill(sup, 'SIGHUP');
  else startAgent(cluster, node);
  return before;
}

/** Stops the node's supervisor (it stops its agent cleanly), then whatever agent is left. */
export async function stopAgent(cluster: string, node: string): Promise<boolean> {
  const sup = supervisorPid(cluster, node);
  if (sup) await stopProcesses([sup], 15_000);
  unregisterPid(cluster, supervisorPidName(node));
  const pid = agentPid(cluster, node);
  unregisterPid(cluster, agentPidName(node));
  if (pid) await stopProcesses([pid], 5000);
  return !!(sup || pid);
}

/**
 * Why the node's agent is not coming up, if it died since `since` (ms): its supervisor saw it exit.
 * A start that fails does so again after every restart; waiting longer would only hide the reason.
 */
export function agentDiedSince(cluster: string, node: string, since: number): string | undefined {
  const st = agentSupervision(cluster, node);
  const exit = st?.lastExit;
  if (!exit || Date.parse(exit.at) < since) return undefined;
  const how = exit.signal ? `killed by ${exit.signal}` : `exit status ${exit.code}`;
  return `${how}${exit.lastLine ? `; its last words: ${exit.lastLine}` : ''}`;
}

/**
 * Ready on the lab: the agent's process runs, is the one that published, holds its lease and
 * reports ready. A killed agent's lease lives on for its TTL; its process does not.
 */
export function labNodeReady(cluster: string, obj: RegistryObject, lease: RegistryObject | undefined): boolean {
  const name = obj.metadata.name;
  if (!labRunsAgent(cluster, name)) return nodeReady(obj, lease); // a host agent started by hand: its lease says it lives
  const pid = agentPid(cluster, name);
  return pid !== undefined && agentStatusOf(obj)?.pid === pid && nodeReady(obj, lease);
}

/** Whether the lab runs (or ran) this node's agent: a pid record of it or of its supervisor, alive or not. */
export function labRunsAgent(cluster: string, node: string): boolean {
  return listPids(cluster).some((r) => r.name === agentPidName(node) || r.name === supervisorPidName(node));
}

/** `veil install` on the lab: the settings, then an agent per node, then the wait through the registry. */
export async function labInstall(cluster: string, reg: Registry, settings: Settings, timeoutMs: number,
  progress?: (ready: number, total: number, notReady: string[]) => void, started?: (nodes: RegistryObject[]) => void): Promise<RegistryObject[]> {
  const since = Date.now();
  const nodes = await install(cluster, reg, settings);
  for (const n of nodes) startAgent(cluster, n, ownBuild()); // an install installs the build it comes from
  started?.(nodes);
  await waitReady(reg, timeoutMs, progress, async (n) => {
    const name = n.metadata.name;
    const died = agentDiedSince(cluster, name, since);
    if (!died && supervisorPid(cluster, name)) return undefined;
    return { reason: (await startFailure(reg, name, since)) ?? died ?? 'its supervisor is gone' };
  });
  return nodes;
}

/** Why the agent exited, as it published before exiting (only a report made after `since`). */
async function startFailure(reg: Registry, node: string, since: number): Promise<string | undefined> {
  const obj = await reg.get('Node', node);
  if (!obj || !(Date.parse(agentStatusOf(obj)?.startedAt ?? '') >= since)) return undefined;
  return publishedStartFailure(obj);
}

/** Waits until the node's agent (started by its supervisor after `since`) is ready; fails with the agent's own reason if it dies. */
export async function waitAgentReady(reg: Registry, cluster: string, node: string, since: number, timeoutMs: number, notPid?: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = agentPid(cluster, node);
    const pid = found === notPid ? undefined : found; // the agent being replaced does not count
    const obj = await reg.get('Node', node);
    if (pid && obj && agentStatusOf(obj)?.pid === pid && nodeReady(obj, await reg.get('Lease', node))) return pid;
    const died = agentDiedSince(cluster, node, since);
    if (died || !supervisorPid(cluster, node) || Date.now() > deadline) {
      const why = died ? `: ${(await startFailure(reg, node, since)) ?? died}` : supervisorPid(cluster, node) ? ' in time' : ': its supervisor is gone';
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
    if (typeof ns !== 'string' || !ns.startsWith(labNetnsPrefix(cluster))) continue; // not a lab node: nothing of ours there
    removeTunnelState({ netns: ns, replacedRoutesFile: replacedRoutesPath(nodeStateDir(cluster, n.metadata.name)) }); // and the lab's plaintext routes below
  }
  await uninstall(reg);
  await installPlaintextRoutes(cluster);
}

/**
 * `veil install` on the lab, all or nothing: when any node's agent fails, everything this install
 * started and wrote is undone (a cluster that was not installed is uninstalled: agents, devices,
 * fail-closed routes, settings; one that was keeps its settings and running agents), and the error
 * says so. Half an install would leave the failed node's pods talking in plaintext to nodes whose
 * status says encrypted.
 */
export async function labInstallAtomic(cluster: string, reg: Registry, settings: Settings, timeoutMs: number,
  progress?: (ready: number, total: number, notReady: string[]) => void, started?: (nodes: RegistryObject[]) => void): Promise<RegistryObject[]> {
  const before = await readSettings(reg);
  const running = new Set((await reg.list('Node')).map((n) => n.metadata.name).filter((n) => supervisorPid(cluster, n)));
  try {
    return await labInstall(cluster, reg, settings, timeoutMs, progress, started);
  } catch (e) {
    let undone: string;
    try {
      if (!before) {
        await labUninstall(cluster, reg);
        undone = 'the install was rolled back: every agent it started is stopped, its tunnel devices, routes and settings are removed, and the nodes route in plaintext as before';
      } else {
        await writeSettings(reg, before);
        for (const n of await reg.list('Node')) if (!running.has(n.metadata.name)) await stopAgent(cluster, n.metadata.name);
        undone = 'the previous settings are back and the agents this install started are stopped';
      }
    } catch (r) {
      undone = `rolling it back failed too (${errorMessage(r)}): run 'veil uninstall'`;
    }
    if (e instanceof VeilError) throw new VeilError(e.code, `${e.message}; ${undone}`, e.hint);
    throw new VeilError('INSTALL_FAILED', `${errorMessage(e)}; ${undone}`);
  }
}
