// The lab's supervisor of one node's agent, doing what systemd does for a host's agent
// (deploy/systemd/veil-agent.service: Restart=on-failure with a growing delay): it runs
// `veil agent run --config FILE` as its child, and when the agent dies (a crash, kill -9, a failed
// start) it starts it again after a backoff; a clean exit (the agent's answer to SIGTERM) ends it.
// It lives in the node's namespace and mount namespace (the lab starts it where it started the
// agent before), so the agent it starts is the same process a host runs. What it did is kept in
// supervisor.json in the node's state dir: `veil status` shows the restarts and the last exit.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, readSync, fstatSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../util/durable-file.js';
import { registerPid, unregisterPid } from './pids.js';

/** The first restart waits this long (systemd's RestartSec), each further one twice as long... */
export const RESTART_BASE_MS = 250;
/** ...up to this (systemd: RestartMaxDelaySec). */
export const RESTART_MAX_MS = 10_000;
/** An agent that ran this long before it died starts the backoff again from the base delay. */
export const RESTART_RESET_AFTER_MS = 30_000;
/** After SIGTERM the agent gets this long to stop cleanly before SIGKILL (systemd: TimeoutStopSec). */
const STOP_TIMEOUT_MS = 10_000;

/** The delay before restart number `consecutive` (1 = the first after a run that lasted). */
export function restartDelayMs(consecutive: number): number {
  return Math.min(RESTART_MAX_MS, RESTART_BASE_MS * 2 ** Math.max(0, consecutive - 1));
}

export interface AgentExit {
  code: number | null;
  signal: string | null;
  at: string;
  /** The last line the agent wrote before it died (its refusal, if it refused to start). */
  lastLine?: string;
}

export interface SupervisorState {
  supervisorPid: number;
  /** running: the agent runs; backoff: it died and starts again at nextStartAt; stopped: stopped on request. */
  state: 'running' | 'backoff' | 'stopped';
  agentPid?: number;
  agentStartedAt?: string;
  /** Agent starts after the first: every one follows a death. */
  restarts: number;
  lastExit?: AgentExit;
  nextStartAt?: string;
}

export function supervisorStatePath(nodeDir: string): string {
  return join(nodeDir, 'supervisor.json');
}

/** What the node's supervisor last recorded, if it ever ran. */
export function readSupervisorState(nodeDir: string): SupervisorState | undefined {
  try {
    return JSON.parse(readFileSync(supervisorStatePath(nodeDir), 'utf8')) as SupervisorState;
  } catch {
    return undefined;
  }
}

export interface SuperviseOptions {
  cluster: string;
  node: string;
  /** The node's state dir (agent config, log, supervisor.json). */
  nodeDir: string;
  /** The agent's command line (argv[0] is the program). */
  command: string[];
  /** The agent's log file (stdout and stderr, appended). */
  logFile: string;
  /** The pid record the agent is registered under (lab down and status find it there). */
  pidName: string;
}

/** The last non-empty line of a file, from its last 4 KiB. */
function lastLine(file: string): string | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(file, 'r');
    const size = fstatSync(fd).size;
    const len = Math.min(size, 4096);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    return buf.toString('utf8').split('\n').map((l) => l.trim()).filter(Boolean).pop();
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Runs the agent and restarts it when it dies, until SIGTERM/SIGINT; resolves with the exit code. */
export function superviseAgent(o: SuperviseOptions): Promise<number> {
  const st: SupervisorState = { supervisorPid: process.pid, state: 'backoff', restarts: 0 };
  const save = () => writeFileAtomic(supervisorStatePath(o.nodeDir), JSON.stringify(st) + '\n');
  let child: ChildProcess | undefined;
  let stopping = false;
  let consecutive = 0;
  let timer: NodeJS.Timeout | undefined;
  let finish: (code: number) => void = () => undefined;
  const finished = new Promise<number>((r) => { finish = r; });

  const end = (code: number) => {
    st.state = 'stopped';
    delete st.agentPid;
    delete st.nextStartAt;
    save();
    unregisterPid(o.cluster, o.pidName);
    finish(code);
  };

  const start = () => {
    timer = undefined;
    if (stopping) return end(0);
    const log = openSync(o.logFile, 'a');
    const startedAt = Date.now();
    try {
      child = spawn(o.command[0]!, o.command.slice(1), { stdio: ['ignore', log, log] });
    } finally {
      closeSync(log);
    }
    const pid = child.pid;
    if (pid !== undefined) {
      try { registerPid(o.cluster, o.pidName, pid); } catch { /* it died at once: the exit below says so */ }
    }
    Object.assign(st, { state: 'running', agentPid: pid, agentStartedAt: new Date(startedAt).toISOString() });
    delete st.nextStartAt;
    save();
    child.once('error', () => undefined); // a spawn failure also ends in 'exit'
    child.once('exit', (code, signal) => {
      child = undefined;
      st.lastExit = { code, signal, at: new Date().toISOString(), lastLine: lastLine(o.logFile) };
      delete st.agentPid;
      // Restart=on-failure: exit 0 is the agent's clean answer to a stop.
      if (stopping || (code === 0 && signal === null)) return end(0);
      consecutive = Date.now() - startedAt >= RESTART_RESET_AFTER_MS ? 1 : consecutive + 1;
      const delay = restartDelayMs(consecutive);
      st.state = 'backoff';
      st.restarts++;
      st.nextStartAt = new Date(Date.now() + delay).toISOString();
      save();
      timer = setTimeout(start, delay);
    });
  };

  const stop = () => {
    if (stopping) return;
    stopping = true;
    if (timer) { clearTimeout(timer); return end(0); }
    const c = child;
    if (!c) return;
    c.kill('SIGTERM');
    setTimeout(() => { if (child === c) c.kill('SIGKILL'); }, STOP_TIMEOUT_MS).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  start();
  return finished;
}
