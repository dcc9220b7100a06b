// `veil agent stopped --config FILE`: the systemd unit's ExecStopPost=. systemd runs it once the
// agent's process has ended, with $SERVICE_RESULT, $EXIT_CODE and $EXIT_STATUS (systemd.exec(5)).
// It records the end in the agent's state dir (the next start counts a restart from it), and when
// the run failed (a crash, kill -9, a refused start) it marks the node not ready at once, with how
// the agent ended: without it a killed agent's node looks ready until its lease lapses (15 s).
// The lease itself stays: the restart that follows takes it over, and peers never drop the node.
import type { Registry, RegistryObject } from '../control/registry.js';
import type { HostAgentConfig } from '../host/agent-config.js';
import { VeilError, errorMessage } from '../util/errors.js';
import type { PublishedAgentStatus } from './api.js';
import { describeExit, exitFailed, exitFromSystemdEnv, readAgentRuns, recordAgentExit, type AgentExit, type AgentRuns } from './agent-runs.js';
import { agentStatusOf } from './registry-node-source.js';
import { INSTALL_CONFIGMAP } from './install-state.js';

/** The registry write is given this long: ExecStopPost holds the restart (and counts against TimeoutStopSec). */
const REGISTRY_TIMEOUT_MS = 8_000;

/**
 * The node object marked for a run that failed, or undefined when a newer agent has published since
 * (its status is not this run's to change). Pure: registry.mutate may run it more than once.
 */
export function markedStopped(cur: RegistryObject, runs: AgentRuns & { lastExit: AgentExit }): RegistryObject | undefined {
  const st = agentStatusOf(cur);
  if (st?.pid !== undefined && st.pid !== runs.pid && (st.startedAt ?? '') > (runs.startedAt ?? '')) return undefined;
  const agent: Partial<PublishedAgentStatus> = {
    ...(st ?? {}), ready: false, ...(runs.pid !== undefined ? { pid: runs.pid } : {}), ...(runs.startedAt ? { startedAt: runs.startedAt } : {}),
    ...(runs.lastExit.reason ? { error: runs.lastExit.reason } : {}),
    supervision: { restarts: runs.restarts, state: 'backoff', lastExit: runs.lastExit },
  };
  return { ...cur, status: { ...(cur.status ?? {}), agent } };
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms / 1000}s`)), ms); });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Records how the agent ended and, after a failure, marks its node not ready. Returns what it did
 * (for the journal). Never fails on the registry: an unreachable etcd leaves the lease to lapse.
 */
export async function agentStopped(cfg: HostAgentConfig, env: NodeJS.ProcessEnv, openRegistry: () => Registry): Promise<string> {
  const exit = exitFromSystemdEnv(env);
  if (!exit) {
    throw new VeilError('NOT_SYSTEMD', '$SERVICE_RESULT is not set: this command is the systemd unit\'s ExecStopPost=',
      'run it as systemd does: SERVICE_RESULT=signal EXIT_CODE=killed EXIT_STATUS=KILL veil agent stopped --config FILE');
  }
  const prev = readAgentRuns(cfg.stateDir);
  // the agent's own words about a refused start, when it recorded them on its way out
  const reason = prev && !prev.running ? prev.lastExit?.reason : undefined;
  const runs = recordAgentExit(cfg.stateDir, { ...exit, ...(reason ? { reason } : {}) });
  const how = `the agent${runs.pid !== undefined ? ` (pid ${runs.pid})` : ''} ${describeExit(exit)}`;
  if (!exitFailed(exit)) return `${how}: a clean stop, recorded`;
  let reg: Registry | undefined;
  try {
    reg = openRegistry();
    const r = reg;
    // an agent that found no install (or an uninstall) has nothing to mark: its node is not part of one
    if (!(await withTimeout(r.get('ConfigMap', INSTALL_CONFIGMAP), REGISTRY_TIMEOUT_MS, 'etcd'))) return `${how}: recorded (veil is not installed: nothing to mark)`;
    let marked = false;
    await withTimeout(r.mutate('Node', cfg.nodeName, (cur) => {
      const next = cur && markedStopped(cur, { ...runs, lastExit: runs.lastExit! });
      marked = !!next;
      return next;
    }), REGISTRY_TIMEOUT_MS, 'etcd');
    return marked ? `${how}: node '${cfg.nodeName}' marked not ready (restarts: ${runs.restarts}); systemd restarts it`
      : `${how}: recorded (node '${cfg.nodeName}' is not registered, or a newer agent has reported)`;
  } catch (e) {
    return `${how}: recorded; the node could not be marked not ready (${errorMessage(e)}): its lease lapses within its TTL`;
  } finally {
    reg?.close();
  }
}
