// Looking at a cluster as it is now: every node's registry object, whether its agent's process
// lives, and what the agent answers on its status API (short timeouts: a hung agent is a finding).
import type { Registry, RegistryObject } from '../control/registry.js';
import { isLabCluster } from '../control/cluster.js';
import { agentPid, agentSupervision, labRunsAgent } from '../lab/agents.js';
import { readSettings } from '../agent/install-state.js';
import { agentStatusOf, leasesByName } from '../agent/registry-node-source.js';
import type { Settings } from '../agent/settings.js';
import { AgentClient } from '../agent/agent-client.js';
import { VeilError, errorMessage } from '../util/errors.js';
import { veilVersion } from '../util/version.js';
import { buildStatusReport, type NodeObservation, type StatusReport } from './cluster-status.js';
import { podSupervision } from './agent-pod-supervision.js';

const AGENT_TIMEOUT_MS = 2000;


/** Asks a node's agent (e.g. `(a) => a.healthz()`); undefined + the reason when it cannot answer. */
export async function askAgent<T>(cluster: string, node: string, ask: (agent: AgentClient) => Promise<T>, registry?: Registry): Promise<{ value?: T; error?: string }> {
  try {
    return { value: await ask(await AgentClient.connect(cluster, node, { registry, timeoutMs: AGENT_TIMEOUT_MS })) };
  } catch (e) {
    return { error: e instanceof VeilError ? e.message : errorMessage(e) }; // a status line: the what, without the hint
  }
}

/**
 * The pid of a node's running agent: a lab knows the processes of the agents it runs on this
 * machine; a host's agent (also one started by hand in a lab node) is running while its liveness
 * lease lives (the lease names its pid).
 */
export function runningAgentPid(cluster: string, node: string, lease: RegistryObject | undefined): number | undefined {
  if (isLabCluster(cluster) && labRunsAgent(cluster, node)) return agentPid(cluster, node);
  const pid = lease?.spec?.['pid'];
  return typeof pid === 'number' ? pid : undefined;
}

/**
 * A host agent's supervision as it published it (agent-runs.ts, agent-stopped.ts): its restarts, and
 * `backoff` once the unit's ExecStopPost recorded its death, unless a newer agent holds the lease.
 */
export function hostSupervision(object: RegistryObject, lease: RegistryObject | undefined): NodeObservation['supervision'] {
  const st = agentStatusOf(object);
  const s = st?.supervision;
  if (!s) return undefined;
  const leasePid = lease?.spec?.['pid'];
  const state = s.state === 'backoff' && typeof leasePid === 'number' && leasePid !== st.pid ? 'running' : s.state;
  return { restarts: s.restarts, state, ...(s.lastExit ? { lastExit: s.lastExit } : {}), by: 'systemd' };
}

export async function observeNodes(cluster: string, reg: Registry, settings: Settings | undefined): Promise<NodeObservation[]> {
  const nodes = await reg.list('Node');
  const leases = await leasesByName(reg);
  const lab = isLabCluster(cluster);
  // elsewhere the agents may be a DaemonSet's pods (on etcd clusters there are none)
  const pods = lab ? undefined : podSupervision(await reg.list('Pod').catch(() => []));
  return Promise.all(nodes.map(async (object): Promise<NodeObservation> => {
    const name = object.metadata.name;
    const lease = leases.get(name);
    const labSupervised = lab && labRunsAgent(cluster, name);
    const supervision = (labSupervised ? agentSupervision(cluster, name) : pods?.get(name)) ?? hostSupervision(object, lease);
    // a pod whose agent container is not running, or a host agent whose unit's ExecStopPost said it
    // died, has no agent, whatever its lease still says
    const pid = supervision && !labSupervised && supervision.state !== 'running' ? undefined : runningAgentPid(cluster, name, lease);
    if (!pid || !settings?.['encryption.enabled']) return { name, object, agentPid: pid, lease, supervision };
    const [h, e] = await Promise.all([askAgent(cluster, name, (a) => a.healthz(), reg), askAgent(cluster, name, (a) => a.encryptStatus(), reg)]);
    return { name, object, agentPid: pid, lease, supervision, healthz: h.value, healthzError: h.error, encrypt: e.value };
  }));
}

export async function clusterStatus(cluster: string, reg: Registry): Promise<StatusReport> {
  const settings = await readSettings(reg);
  const observations = await observeNodes(cluster, reg, settings);
  const registry = await reg.members?.();
  return buildStatusReport({ cluster, version: veilVersion(), settings, observations, now: Date.now(), registry, invalidObjects: reg.invalidObjects?.() });
}
