// A Kubernetes agent's supervision as its pod shows it. The kubelet restarts the DaemonSet's
// container when it dies, with a backoff (CrashLoopBackOff), as the lab's supervisor and systemd do
// on hosts; the container's status holds the count, whether it runs now, and how it last ended.
// `veil status` reads it so that a dead agent is not ready at once (its Lease outlives it by up to
// its duration) and every node shows its restarts.
import { constants } from 'node:os';
import type { RegistryObject } from '../control/registry.js';
import type { NodeObservation } from './cluster-status.js';

/** The agent pods' label and container (kubernetes-manifests.ts renders them). */
const AGENT_POD_NAME_LABEL = 'veil-agent';
const AGENT_CONTAINER = 'agent';

export type Supervision = NonNullable<NodeObservation['supervision']>;

interface ContainerState {
  running?: { startedAt?: string };
  waiting?: { reason?: string; message?: string };
  terminated?: { exitCode?: number; signal?: number; reason?: string; finishedAt?: string };
}
interface ContainerStatus { name?: string; restartCount?: number; state?: ContainerState; lastState?: ContainerState }

/** A signal's name, from its number or from an exit status above 128 (how a container runtime reports a kill). */
function signalName(t: NonNullable<ContainerState['terminated']>): string | null {
  const n = t.signal || (t.exitCode !== undefined && t.exitCode > 128 ? t.exitCode - 128 : 0);
  return (Object.entries(constants.signals).find(([, v]) => v === n)?.[0]) ?? null;
}

/** Each node's agent supervision, from the agent pods (by spec.nodeName); other pods are ignored. */
export function podSupervision(pods: RegistryObject[]): Map<string, Supervision> {
  const out = new Map<string, Supervision>();
  for (const pod of pods) {
    const node = pod.spec?.['nodeName'];
    if (pod.metadata.labels?.['app.kubernetes.io/name'] !== AGENT_POD_NAME_LABEL || typeof node !== 'string') continue;
    const statuses = (pod.status?.['containerStatuses'] ?? []) as ContainerStatus[];
    const c = statuses.find((s) => s.name === AGENT_CONTAINER);
    if (!c) continue; // not started yet
    const ended = c.state?.terminated ?? c.lastState?.terminated;
    out.set(node, {
      restarts: c.restartCount ?? 0,
      state: c.state?.running ? 'running' : 'backoff', // restartPolicy Always: a stopped container is started again
      ...(c.state?.waiting?.reason ? { waitingReason: c.state.waiting.reason } : {}),
      ...(ended ? { lastExit: { code: signalName(ended) ? null : ended.exitCode ?? null, signal: signalName(ended), at: ended.finishedAt ?? '' } } : {}),
    });
  }
  return out;
}
