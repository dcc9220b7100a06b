// The lab's supervisor of one node's agent, doing what systemd does for a host's agent
// (deploy/systemd/veil-agent.service: Restart=on-failure with a growing delay): it runs
// `veil agent run --config FILE` as its child, and when the agent dies (a crash, kill -9, a failed
// start) it starts it again after a backoff; a clean exit (the agent's answer to SIGTERM) ends it.
// It lives in the node's namespace and mount namespace (the lab starts it where it started the
// agent before), so the agent it starts is the same process a host runs. What it did is kept in
// supervisor.json in the node's state dir: `veil status` shows the restarts and the last exit.
// Like systemd it keeps a file descriptor store (fd-store.ts): an agent stopped by SIGTERM stores its
// datapath there, and the next start gets it back, so a restart loses no packet. SIGHUP restarts the
// agent (`systemctl restart`; `veil agent restart` sends it): SIGTERM, then a start at once with the
// stored fds. After a clean exit that left fds stored, the supervisor keeps them for
// STORE_PRESERVE_MS (systemd's FileDescriptorStorePreserve=) for a start (SIGHUP) to take them.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, readSync, fstatSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../util/durable-file.js';
import { registerPid, unregisterPid } from './pids.js';
import { FdStore } from './fd-store.js';

/** The first restart waits this long (systemd's RestartSec), each further one twice as long... */
export const RESTART_BASE_MS = 250;
/** ...up to this (systemd: RestartMaxDelaySec). */
export const RESTART_MAX_MS = 10_000;
/** An agent that ran this long before it died starts the backoff again from the base delay. */
export const RESTART_RESET_AFTER_MS = 30_000;
/** After SIGTERM the agent gets this long to stop cleanly before SIGKILL (systemd: TimeoutStopSec). */
const STOP_TIMEOUT_MS = 10_000;
/** How long fds stored by an agent that exited cleanly wait for the next start (then the supervision ends). */
export const STORE_PRESERVE_MS = 30_000;

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
  /** running: the agent runs; backoff: it died and starts again at nextStartAt; stopped: stopped on request (or waiting with stored fds). */
  state: 'running' | 'backoff' | 'stopped';
  /** Fds the agent stored (its datapath handover) that the next start gets. */
  storedFds?: number;
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
  /** The agent's command line (argv[0] is the program); a function is asked at every start (the build may change: an upgrade). */
  command: string[] | (() => string[]);
  /** The agent's log file (stdout and stderr, appended). */
  logFile: string;
  /** The pid record the agent is registered under (lab down and status find it there). */
  pidName: string;
  /**
   * The unit's ExecStopPost= (`veil agent stopped`): run after an agent that failed, with systemd's
   * $SERVICE_RESULT, $EXIT_CODE and $EXIT_STATUS; the restart waits for it (as systemd's does), at
   * most STOP_POST_TIMEOUT_MS. Like the unit's, it is skipped after a clean stop.
   */
  stopPost?: () => string[];
}

/** How long the supervisor lets the stop-post command run before it kills it (systemd: TimeoutStopSec). */
const STOP_POST_TIMEOUT_MS = 20_000;

/** The environment systemd gives ExecStopPost= for an agent that failed so (systemd.exec(5)). */
export function systemdExitEnv(code: number | null, signal: string | null): Record<string, string> {
  if (signal) return { SERVICE_RESULT: signal === 'SIGSEGV' || signal === 'SIGABRT' ? 'core-dump' : 'signal', EXIT_CODE: signal === 'SIGSEGV' || signal === 'SIGABRT' ? 'dumped' : 'killed', EXIT_STATUS: signal.replace(/^SIG/, '') };
  return { SERVICE_RESULT: 'exit-code', EXIT_CODE: 'exited', EXIT_STATUS: String(code ?? 1) };
}

/** Runs the stop-post command to its end (or its timeout), its output into the agent's log. */
function runStopPost(command: string[], env: NodeJS.ProcessEnv, logFile: string): Promise<void> {
  const log = openSync(logFile, 'a');
  try {
    const c = spawn(command[0]!, command.slice(1), { stdio: ['ignore', log, log], env });
    return new Promise((resolve) => {
      const timer = setTimeout(() => c.kill('SIGKILL'), STOP_POST_TIMEOUT_MS);
      c.once('error', () => { clearTimeout(timer); resolve(); });
      c.once('exit', () => { clearTimeout(timer); resolve(); });
    });
  } finally {
    closeSync(log);
  }
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
  const store = new FdStore(`veil-supervisor-${process.pid}`);
  const save = () => { st.storedFds = store.size; writeFileAtomic(supervisorStatePath(o.nodeDir), JSON.stringify(st) + '\n'); };
  let child: ChildProcess | undefined;
  let stopping = false;
  let restartRequested = false;
  let consecutive = 0;
  let timer: NodeJS.Timeout | undefined;
  let finish: (code: number) => void = () => undefined;
  const finished = new Promise<number>((r) => { finish = r; });

  const end = (code: number) => {
    store.close();
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
    // The stored fds become the child's 3, 4, ... (sd_listen_fds); LISTEN_PID must be its own pid,
    // which a shell knows before it execs the agent. Passed once: the supervisor's copies close.
    const stored = store.list();
    const env = { ...process.env, NOTIFY_SOCKET: store.address };
    const agent = typeof o.command === 'function' ? o.command() : o.command;
    const command = stored.length ? ['sh', '-c', 'LISTEN_PID=$$ exec "$@"', 'veil-agent', ...agent] : agent;
    if (stored.length) Object.assign(env, { LISTEN_FDS: String(stored.length), LISTEN_FDNAMES: stored.map((x) => x.name).join(':') });
    try {
      child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', log, log, ...stored.map((x) => x.fd)], env });
    } finally {
      closeSync(log);
      store.flush();
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
      store.drain(); // what it stored on its way out (its datapath), in order after what it took
      delete st.agentPid;
      if (restartRequested && !stopping) {
        restartRequested = false;
        return start(); // a restart asked for (SIGHUP): at once, with what it stored
      }
      st.lastExit = { code, signal, at: new Date().toISOString(), lastLine: lastLine(o.logFile) };
      if (stopping) return end(0);
      // Restart=on-failure: exit 0 is the agent's clean answer to a stop. Fds it stored wait a while for a start.
      if (code === 0 && signal === null) {
        if (store.size === 0) return end(0);
        st.state = 'stopped';
        save();
        timer = setTimeout(() => end(0), STORE_PRESERVE_MS);
        return;
      }
      consecutive = Date.now() - startedAt >= RESTART_RESET_AFTER_MS ? 1 : consecutive + 1;
      const delay = restartDelayMs(consecutive);
      st.state = 'backoff';
      st.restarts++;
      st.nextStartAt = new Date(Date.now() + delay).toISOString();
      save();
      if (!o.stopPost) { timer = setTimeout(start, delay); return; }
      // the stop-post command and the backoff run at once; the start waits for both
      const env = { ...process.env, ...systemdExitEnv(code, signal) };
      delete env['NOTIFY_SOCKET'];
      const posted = runStopPost(o.stopPost(), env, o.logFile);
      timer = setTimeout(() => {
        timer = undefined;
        void posted.then(() => { if (!timer && !child) { if (stopping) end(0); else start(); } });
      }, delay);
    });
  };

  const terminate = (c: ChildProcess) => {
    c.kill('SIGTERM');
    setTimeout(() => { if (child === c) c.kill('SIGKILL'); }, STOP_TIMEOUT_MS).unref();
  };

  const stop = () => {
    if (stopping) return;
    stopping = true;
    if (timer) { clearTimeout(timer); return end(0); }
    if (child) terminate(child);
  };

  /** SIGHUP: restart the agent now (it hands its datapath over on the way), or start it if it is not running. */
  const restart = () => {
    if (stopping || restartRequested) return;
    if (child) {
      restartRequested = true;
      terminate(child);
      return;
    }
    if (timer) clearTimeout(timer);
    start();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('SIGHUP', restart);
  start();
  return finished;
}
