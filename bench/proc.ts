// Child processes for the bench (async, so that SIGINT/SIGTERM handlers still run while a
// measurement is going on) and the /proc figures it reads: CPU ticks and peak RSS of a pid.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { statField } from '../src/util/proc-stat.js';

export interface ExecResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Every child still running: the signal handler stops them by pid. */
export const liveChildren = new Set<ChildProcess>();

/** Runs argv to completion (killed after timeoutMs); never throws for a non-zero exit. */
export function exec(argv: string[], timeoutMs = 60_000, env?: NodeJS.ProcessEnv): Promise<ExecResult> {
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
    liveChildren.add(child);
    let stdout = '', stderr = '';
    child.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => { stderr += `\n(killed after ${timeoutMs} ms)`; child.kill('SIGKILL'); }, timeoutMs);
    child.on('error', (e) => { stderr += e.message; });
    child.on('close', (code) => {
      clearTimeout(timer);
      liveChildren.delete(child);
      resolve({ status: code ?? 1, stdout, stderr });
    });
  });
}

/** Like exec, but a non-zero exit is an error that carries stderr. */
export async function mustExec(argv: string[], timeoutMs?: number, env?: NodeJS.ProcessEnv): Promise<string> {
  const r = await exec(argv, timeoutMs, env);
  if (r.status !== 0) throw new Error(`'${argv.join(' ')}' failed (exit ${r.status}): ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}

/** Starts a long-running child (a server, a daemon); the caller stops it with stopChild. */
export function startChild(argv: string[]): ChildProcess {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr!.on('data', () => undefined);
  liveChildren.add(child);
  child.on('close', () => liveChildren.delete(child));
  return child;
}

export async function stopChild(child: ChildProcess, graceMs = 2000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const closed = new Promise<void>((r) => child.once('close', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await closed;
  clearTimeout(timer);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const CLK_TCK = 100; // getconf CLK_TCK on Linux

/** utime + stime of a process (all its threads), in seconds; 0 when it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return (Number(statField(stat, 14)) + Number(statField(stat, 15))) / CLK_TCK; // utime + stime
  } catch {
    return 0;
  }
}

/**
 * Each live thread's /proc/<pid>/task/<tid>/<file> for each of `files`, in that order; none when
 * the process is gone, a thread that ends while it is read skipped.
 */
export function threadReads(pid: number, files: string[]): string[][] {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const out: string[][] = [];
  for (const tid of tids) {
    try {
      out.push(files.map((file) => readFileSync(`/proc/${pid}/task/${tid}/${file}`, 'utf8')));
    } catch { /* the thread ended */ }
  }
  return out;
}

function threadFiles(pid: number, file: string): string[] {
  return threadReads(pid, [file]).map(([text]) => text!);
}

/**
 * How long the threads of a process have waited on a run queue, runnable but not running, in
 * seconds (the sum of each thread's schedstat second field); 0 when it is gone. A thread that
 * ends between two reads takes its share with it, so a difference may undercount.
 */
export function runQueueWaitSeconds(pid: number): number {
  return threadFiles(pid, 'schedstat').reduce((ns, s) => ns + Number(s.split(' ')[1]), 0) / 1e9;
}

/**
 * Per thread name, summed over the processes: how long its threads have run and waited on a run
 * queue (µs) and how often they were put on a CPU (schedstat's three fields). Which thread a lone
 * packet wakes, and which one waits: the sum alone does not say.
 */
export function schedByThread(pids: readonly number[]): Map<string, { cpuUs: number; waitUs: number; runs: number }> {
  const out = new Map<string, { cpuUs: number; waitUs: number; runs: number }>();
  for (const pid of pids) {
    for (const [schedstat, comm] of threadReads(pid, ['schedstat', 'comm'])) {
      const [cpu, wait, runs] = schedstat!.trim().split(' ').map(Number);
      const name = comm!.trim(), t = out.get(name) ?? { cpuUs: 0, waitUs: 0, runs: 0 };
      t.cpuUs += cpu! / 1000; t.waitUs += wait! / 1000; t.runs += runs!;
      out.set(name, t);
    }
  }
  return out;
}

/** SCHED_FIFO and SCHED_RR, the realtime policies of /proc/<pid>/task/<tid>/stat's 41st field. */
const REALTIME_POLICIES = new Set([1, 2]);

/**
 * How many threads of a process run a realtime policy now (veil's datapath worker while quiet,
 * datapath.realtime); 0 when it is gone.
 */
export function realtimeThreads(pid: number): number {
  return threadFiles(pid, 'stat').filter((stat) => REALTIME_POLICIES.has(Number(statField(stat, 41)))).length;
}

/** Peak resident set (VmHWM) of a process in bytes; 0 when it is gone. */
export function peakRssBytes(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** The machine's CPU time so far from /proc/stat's first line, in ticks: busy (all but idle and iowait) and total. */
export function machineTicks(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3]! - f[4]!, total };
}
