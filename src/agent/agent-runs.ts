// A host agent's own record of its runs, in its state dir (runs.json): what the lab's supervisor
// keeps in supervisor.json and the kubelet in the pod's status, for an agent whose supervisor
// (systemd) the CLI cannot ask. Every start of `veil agent run` writes it; a clean exit, and the
// unit's ExecStopPost (`veil agent stopped`, with systemd's $SERVICE_RESULT, $EXIT_CODE and
// $EXIT_STATUS), record how a run ended. A start after a run that failed, or that ended without any
// record (kill -9 where no ExecStopPost runs), is a restart: counted, and published with the health.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../util/durable-file.js';

export interface AgentExit {
  code: number | null;
  signal: string | null;
  at: string;
  /** systemd's $SERVICE_RESULT (success, exit-code, signal, core-dump, watchdog, timeout, ...), when systemd said it. */
  result?: string;
  /** Why the agent exited, in its own words (a refused start), when it could record them. */
  reason?: string;
}

export interface AgentRuns {
  /** The pid of the latest run. */
  pid?: number;
  startedAt?: string;
  /** The latest run has started and no end of it was recorded (it runs, or it died unrecorded). */
  running: boolean;
  /** Starts that followed a failed or unrecorded end. */
  restarts: number;
  lastExit?: AgentExit;
}

export function agentRunsPath(stateDir: string): string {
  return join(stateDir, 'runs.json');
}

export function readAgentRuns(stateDir: string): AgentRuns | undefined {
  try {
    const r = JSON.parse(readFileSync(agentRunsPath(stateDir), 'utf8')) as Partial<AgentRuns>;
    return { running: r.running === true, restarts: typeof r.restarts === 'number' ? r.restarts : 0, ...(typeof r.pid === 'number' ? { pid: r.pid } : {}),
      ...(typeof r.startedAt === 'string' ? { startedAt: r.startedAt } : {}), ...(r.lastExit ? { lastExit: r.lastExit } : {}) };
  } catch {
    return undefined; // none yet, or unreadable: counting starts again
  }
}

function write(stateDir: string, runs: AgentRuns): void {
  writeFileAtomic(agentRunsPath(stateDir), JSON.stringify(runs) + '\n', { mode: 0o600 });
}

/** Whether a run that ended so is a failure (systemd's Restart=on-failure restarts it). */
export function exitFailed(e: AgentExit): boolean {
  return e.result !== undefined ? e.result !== 'success' : e.code !== 0 || e.signal !== null;
}

/** Records a start; the previous run's end decides whether it is a restart. */
export function recordAgentStart(stateDir: string, pid: number, now = new Date()): AgentRuns {
  const prev = readAgentRuns(stateDir);
  let restarts = prev?.restarts ?? 0;
  let lastExit = prev?.lastExit;
  if (prev?.running) {
    // the run before ended without a word: killed (SIGKILL, the OOM killer) where no ExecStopPost ran
    restarts++;
    lastExit = { code: null, signal: null, at: now.toISOString(), result: 'unrecorded' };
  } else if (lastExit && exitFailed(lastExit)) {
    restarts++;
  }
  const runs: AgentRuns = { pid, startedAt: now.toISOString(), running: true, restarts, ...(lastExit ? { lastExit } : {}) };
  write(stateDir, runs);
  return runs;
}

/** Records how the latest run ended (the agent's own clean exit, or the unit's ExecStopPost). */
export function recordAgentExit(stateDir: string, exit: AgentExit): AgentRuns {
  const prev = readAgentRuns(stateDir) ?? { running: false, restarts: 0 };
  const runs: AgentRuns = { ...prev, running: false, lastExit: exit };
  write(stateDir, runs);
  return runs;
}

/**
 * How the service's main process ended, from the environment systemd gives ExecStopPost=
 * (systemd.exec(5)): $EXIT_CODE exited|killed|dumped, $EXIT_STATUS the status or the signal's
 * name (KILL), $SERVICE_RESULT. Undefined when the variables are not there (not run by systemd).
 */
export function exitFromSystemdEnv(env: NodeJS.ProcessEnv, now = new Date()): AgentExit | undefined {
  const result = env['SERVICE_RESULT'];
  if (!result) return undefined;
  const how = env['EXIT_CODE'];
  const status = env['EXIT_STATUS'] ?? '';
  const code = how === 'exited' && /^\d+$/.test(status) ? Number(status) : null;
  const signal = (how === 'killed' || how === 'dumped') && /^[A-Z0-9+-]+$/.test(status) ? (/^\d+$/.test(status) ? status : `SIG${status}`) : null;
  return { code, signal, at: now.toISOString(), result };
}

/** "killed by SIGKILL", "exited with status 1", "ended without a record (killed?)". */
export function describeExit(e: AgentExit): string {
  if (e.signal) return `was killed by ${e.signal}${e.result === 'core-dump' ? ' (core dumped)' : ''}`;
  if (e.code !== null) return `exited with status ${e.code}`;
  if (e.result === 'unrecorded') return 'ended without a record (killed, or its host went down)';
  return `ended (${e.result ?? 'unknown'})`;
}
