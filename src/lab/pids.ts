// Processes that belong to a lab cluster (agents, captures, ...), so that `lab down` can stop
// them by PID. Each is a file <clusterDir>/pids/<name>.pid holding the pid and its start time
// (from /proc), so that a recycled pid is never mistaken for ours.
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { clusterDir } from '../util/paths.js';
import { VeilError } from '../util/errors.js';
import { writeFileAtomic } from '../util/durable-file.js';
import { readStatField } from '../util/proc-stat.js';

export interface PidRecord {
  name: string;
  pid: number;
  /** Field 22 of /proc/<pid>/stat: the process start time in clock ticks since boot. */
  startTime: string;
}

export function pidDir(cluster: string): string {
  return join(clusterDir(cluster), 'pids');
}

function processStartTime(pid: number): string | undefined {
  return readStatField(`/proc/${pid}/stat`, 22);
}

/** Records that process `pid` belongs to the cluster under `name` (e.g. 'agent-kind-worker'). */
export function registerPid(cluster: string, name: string, pid: number): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) throw new VeilError('INVALID_NAME', `invalid pid record name '${name}'`);
  const startTime = processStartTime(pid);
  if (startTime === undefined) throw new VeilError('NO_SUCH_PROCESS', `process ${pid} is not running`, 'register a process right after starting it');
  mkdirSync(pidDir(cluster), { recursive: true });
  const rec: PidRecord = { name, pid, startTime };
  // Not fsync'd: after a machine crash no recorded process is running anyway.
  writeFileAtomic(join(pidDir(cluster), `${name}.pid`), JSON.stringify(rec) + '\n');
}

export function unregisterPid(cluster: string, name: string): void {
  rmSync(join(pidDir(cluster), `${name}.pid`), { force: true });
}

export function listPids(cluster: string): PidRecord[] {
  let files: string[];
  try { files = readdirSync(pidDir(cluster)); } catch { return []; }
  const out: PidRecord[] = [];
  for (const f of files) {
    if (!f.endsWith('.pid') || f.startsWith('.')) continue;
    try { out.push(JSON.parse(readFileSync(join(pidDir(cluster), f), 'utf8')) as PidRecord); } catch { /* torn or foreign: skip */ }
  }
  return out;
}

/** Whether the recorded process is still the one we recorded, and not dead awaiting its parent (a zombie). */
export function isRecordedProcessAlive(rec: PidRecord): boolean {
  return processStartTime(rec.pid) === rec.startTime && !isZombie(rec.pid);
}

/** SIGTERM, then SIGKILL after graceMs for those still there. Returns the pids signalled. */
export async function stopProcesses(pids: number[], graceMs = 3000): Promise<number[]> {
  const started = new Map<number, string>();
  for (const pid of pids) {
    const st = processStartTime(pid);
    if (st === undefined) continue;
    started.set(pid, st);
    try { process.kill(pid, 'SIGTERM'); } catch { /* gone already */ }
  }
  const alive = () => [...started].filter(([pid, st]) => processStartTime(pid) === st && !isZombie(pid)).map(([pid]) => pid);
  const deadline = Date.now() + graceMs;
  while (alive().length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  for (const pid of alive()) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone already */ }
  }
  const killDeadline = Date.now() + 1000;
  while (alive().length && Date.now() < killDeadline) await new Promise((r) => setTimeout(r, 20));
  return [...started.keys()];
}

function isZombie(pid: number): boolean {
  return (readStatField(`/proc/${pid}/stat`, 3) ?? 'Z') === 'Z';
}

/** Stops every registered process of the cluster that is still the one registered. */
export async function stopRegisteredProcesses(cluster: string): Promise<number[]> {
  const recs = listPids(cluster).filter(isRecordedProcessAlive);
  return stopProcesses(recs.map((r) => r.pid));
}
