// The cold ping: what one lone packet costs right after its datapath's accessed bits were cleared.
// This machine's DAMON thread (kdamond.0) clears the accessed bits of the pages it samples every
// ~512 ms, and the first packet after a pass runs veil's workers 1.2-2.0 ms longer (the log,
// session 21): in this PVM guest every page whose accessed bit is clear costs the next touch a trip
// through the host. Writing 1 to /proc/PID/clear_refs clears them all (more than a pass does), so
// the next ping's RTT and the pages it marked referenced (/proc/PID/smaps, by mapping) make the
// stall a figure: deterministic where the p99 is not.
//
// Per repetition, ~150 ms apart: a warm ping (no clear), a cold ping (clear, then the ping) and a
// control (clear, then a ping that stays inside the client pod: same process start and timing, no
// tunnel packet), whose pages are what the processes touch anyway in that window. Each ping is its
// own `ping -c 1`; only the datapath processes of the mode under test are cleared.
import { readFileSync, writeFileSync } from 'node:fs';
import type { LabPod } from './bench-lab.js';
import { pingRttsBySeq } from './measure.js';
import { schedByThread, sleep, threadReads } from './proc.js';
import { median } from './stats.js';

export interface ColdPingFigures {
  /** Median RTT of a ping right after clear_refs, µs. */
  coldPingUs: number;
  /** Median RTT of a ping sent the same way without it, µs. */
  warmPingUs: number;
  /** Median KB marked referenced (all datapath processes) from the clear to after the cold ping. */
  coldPagesTouchedKB: number;
  /** The same for the control (a ping inside the client pod): what the processes touch anyway. */
  idlePagesTouchedKB: number;
  /** Median KB per mapping kind after the cold ping, and after the control. */
  coldByKindKB: Record<string, number>;
  idleByKindKB: Record<string, number>;
  /** Median on-CPU µs of the datapath processes' threads (schedstat) over the cold ping, the warm one and the control. */
  coldCpuUs: number;
  warmCpuUs: number;
  idleCpuUs: number;
  /** Median times each thread (by name, summed over the processes) ran in the cold ping's window. */
  coldThreadRuns: Record<string, number>;
  idleThreadRuns: Record<string, number>;
  repetitions: number;
  /** Each repetition: warm and cold RTT (µs, null: no answer), KB touched cold and idle. */
  samples: { warmUs: number | null; coldUs: number | null; coldKB: number; idleKB: number; warmCpuUs: number; coldCpuUs: number; idleCpuUs: number }[];
}

export interface Mapping {
  start: number;
  end: number;
  perms: string;
  path: string;
  referencedKB: number;
  anonHugeKB: number;
}

/** A process's mappings with their Referenced and AnonHugePages (kB); none when it is gone. */
export function readSmaps(pid: number): Mapping[] {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/smaps`, 'utf8');
  } catch {
    return [];
  }
  const maps: Mapping[] = [];
  for (const line of text.split('\n')) {
    const h = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (h) {
      maps.push({ start: parseInt(h[1]!, 16), end: parseInt(h[2]!, 16), perms: h[3]!, path: h[4]!.trim(), referencedKB: 0, anonHugeKB: 0 });
      continue;
    }
    const f = /^(Referenced|AnonHugePages):\s+(\d+) kB/.exec(line);
    const m = maps[maps.length - 1];
    if (f && m) {
      if (f[1] === 'Referenced') m.referencedKB = Number(f[2]);
      else m.anonHugeKB = Number(f[2]);
    }
  }
  return maps;
}

/** Each thread's stack pointer (from /proc/PID/task/TID/syscall while it waits in a syscall) with its name. */
function threadStacks(pid: number): { sp: number; name: string }[] {
  const out: { sp: number; name: string }[] = [];
  for (const [syscall, comm] of threadReads(pid, ['syscall', 'comm'])) {
    const f = syscall!.trim().split(' ');
    if (f.length >= 3 && f[0] !== 'running') out.push({ sp: parseInt(f[f.length - 2]!, 16), name: comm!.trim() });
  }
  return out;
}

const MIB = 1 << 20;

/** What a mapping is, for the by-kind sums (V8's heap pages are 256 KiB anonymous mappings). */
export function mappingKind(m: Mapping, stacks: { sp: number; name: string }[]): string {
  const size = m.end - m.start;
  const stack = stacks.find((s) => s.sp >= m.start && s.sp < m.end);
  if (m.path === '[stack]') return `stack ${stack?.name ?? 'main'}`;
  if (stack) return `stack ${stack.name}`;
  if (m.path.startsWith('[')) return m.path;
  if (m.path.endsWith('.node')) return 'addon';
  if (/\/libc[.-]/.test(m.path)) return 'libc';
  if (/\/ld-linux|\/ld-[\d.]+so/.test(m.path)) return 'ld.so';
  if (m.path) return /\/node$|\/wireguard-go$/.test(m.path) ? `binary ${m.perms.includes('x') ? 'text' : 'data'}` : `file ${m.path.split('/').pop()}`;
  if (m.perms.startsWith('r-x') && (m.anonHugeKB > 0 || size >= 16 * MIB)) return 'text on 2 MiB pages';
  if (m.perms.includes('x')) return 'anon exec (JIT code)';
  if (size === 256 * 1024) return 'anon 256 KiB (V8 heap page)';
  return 'anon other';
}

/** Every datapath process's Referenced KB by mapping kind, and the total. */
function touched(pids: number[]): { total: number; byKind: Record<string, number> } {
  const byKind: Record<string, number> = {};
  let total = 0;
  for (const pid of pids) {
    const stacks = threadStacks(pid);
    for (const m of readSmaps(pid)) {
      if (!m.referencedKB) continue;
      const k = mappingKind(m, stacks);
      byKind[k] = (byKind[k] ?? 0) + m.referencedKB;
      total += m.referencedKB;
    }
  }
  return { total, byKind };
}

/** Times each thread has run so far (schedstat's third field), summed by thread name over the processes; '' holds their on-CPU ns. */
function threadRuns(pids: number[]): Record<string, number> {
  const out: Record<string, number> = { '': 0 };
  for (const [name, t] of schedByThread(pids)) {
    out[name] = t.runs;
    out['']! += t.cpuUs * 1000;
  }
  return out;
}

/** Runs per thread name between two threadRuns(), and the on-CPU µs. */
function diffRuns(a: Record<string, number>, b: Record<string, number>): { runs: Record<string, number>; cpuUs: number } {
  const runs = Object.fromEntries(Object.keys(b).filter((k) => k).map((k) => [k, b[k]! - (a[k] ?? 0)]));
  return { runs, cpuUs: (b['']! - a['']!) / 1000 };
}

function clearRefs(pids: number[]): void {
  for (const pid of pids) {
    try { writeFileSync(`/proc/${pid}/clear_refs`, '1'); } catch { /* gone */ }
  }
}

/** One ping from the pod to another (or to itself): its RTT in µs, null when no answer came. */
async function onePing(from: LabPod, to: LabPod): Promise<number | null> {
  return (await pingRttsBySeq(from, to, 1))[0]!;
}

function medianOfKeys(rows: Record<string, number>[]): Record<string, number> {
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))].sort();
  return Object.fromEntries(keys.map((k) => [k, median(rows.map((r) => r[k] ?? 0))]).filter(([, v]) => (v as number) > 0));
}

/**
 * The cold ping of one mode, `repetitions` times, from client to server, clearing the accessed bits
 * of `pids` (the mode's datapath processes, which the caller started) before each cold ping and control.
 */
export async function measureColdPings(client: LabPod, server: LabPod, pids: number[], repetitions: number, gapMs = 150): Promise<ColdPingFigures> {
  if (!(Number.isInteger(repetitions) && repetitions >= 1)) throw new Error(`cold pings: ${repetitions} repetitions (at least 1)`);
  if (!pids.length) throw new Error('cold pings: no datapath processes to clear');
  const samples: ColdPingFigures['samples'] = [];
  const cold: Record<string, number>[] = [], idle: Record<string, number>[] = [];
  const coldRuns: Record<string, number>[] = [], idleRuns: Record<string, number>[] = [];
  for (let i = 0; i < repetitions; i++) {
    const w0 = threadRuns(pids);
    const warmUs = await onePing(client, server);
    const warmCpuUs = diffRuns(w0, threadRuns(pids)).cpuUs;
    await sleep(gapMs);
    // the control first every other repetition, so neither always follows the warm ping
    const order = i % 2 ? ['idle', 'cold'] : ['cold', 'idle'];
    let coldUs: number | null = null, coldKB = 0, idleKB = 0, coldCpuUs = 0, idleCpuUs = 0;
    for (const kind of order) {
      const r0 = threadRuns(pids);
      clearRefs(pids);
      const rtt = await onePing(client, kind === 'cold' ? server : client);
      const t = touched(pids);
      const { runs, cpuUs } = diffRuns(r0, threadRuns(pids));
      if (kind === 'cold') { coldUs = rtt; coldKB = t.total; coldCpuUs = cpuUs; cold.push(t.byKind); coldRuns.push(runs); }
      else { idleKB = t.total; idleCpuUs = cpuUs; idle.push(t.byKind); idleRuns.push(runs); }
      await sleep(gapMs);
    }
    samples.push({ warmUs, coldUs, coldKB, idleKB, warmCpuUs: Math.round(warmCpuUs), coldCpuUs: Math.round(coldCpuUs), idleCpuUs: Math.round(idleCpuUs) });
  }
  const rtts = (f: (s: ColdPingFigures['samples'][0]) => number | null) => samples.map(f).filter((x): x is number => x !== null);
  return {
    coldPingUs: median(rtts((s) => s.coldUs)), warmPingUs: median(rtts((s) => s.warmUs)),
    coldPagesTouchedKB: median(samples.map((s) => s.coldKB)), idlePagesTouchedKB: median(samples.map((s) => s.idleKB)),
    coldCpuUs: median(samples.map((s) => s.coldCpuUs)), warmCpuUs: median(samples.map((s) => s.warmCpuUs)), idleCpuUs: median(samples.map((s) => s.idleCpuUs)),
    coldByKindKB: medianOfKeys(cold), idleByKindKB: medianOfKeys(idle),
    coldThreadRuns: medianOfKeys(coldRuns), idleThreadRuns: medianOfKeys(idleRuns),
    repetitions, samples,
  };
}
