// The bench table: per mode the median over rounds of each figure, with ratios to wireguard-go
// and to plain (the figures move ±20 % between runs on this machine; the ratios hold better).
import type { ModeFigures } from './measure.js';
import type { Mode } from './bench-lab.js';
import { median } from './stats.js';

/** The figures of a mode that are single numbers (the table's rows). */
type Figure = { [K in keyof ModeFigures]-?: ModeFigures[K] extends number | null ? K : never }[keyof ModeFigures];

interface Row {
  key: Figure;
  label: string;
  digits: number;
  /** How rounds combine: the median, or the worst round (lowest) for a figure that must hold in every round. */
  over?: 'median' | 'min';
}

const ROWS: Row[] = [
  { key: 'tcp1Gbps', label: 'TCP 1 stream Gbit/s', digits: 2 },
  { key: 'tcp1RGbps', label: 'TCP 1 stream -R Gbit/s', digits: 2 },
  { key: 'tcp4Gbps', label: 'TCP 4 streams Gbit/s', digits: 2 },
  { key: 'udpRxGbps', label: 'UDP received Gbit/s', digits: 3 },
  { key: 'udpLossPct', label: 'UDP loss %', digits: 2 },
  { key: 'tcpSlowestSecondRatio', label: 'TCP slowest second ÷ median (worst round)', digits: 2, over: 'min' },
  { key: 'udpMaxRateMbps', label: 'UDP highest rate < 1 % loss Mbit/s', digits: 0 },
  { key: 'udpMaxRateTunedMbps', label: 'UDP highest rate < 1 % loss, 4 MiB socket buffers, Mbit/s', digits: 0 },
  { key: 'rttP50Us', label: 'ping RTT p50 µs', digits: 0 },
  { key: 'rttP99Us', label: 'ping RTT p99 µs', digits: 0 },
  { key: 'rttWarmupP50Us', label: 'ping RTT p50 during the warm-up µs', digits: 0 },
  { key: 'rttWarmupP99Us', label: 'ping RTT p99 during the warm-up µs', digits: 0 },
  { key: 'coldPingUs', label: 'ping RTT right after clear_refs (cold) µs', digits: 0 },
  { key: 'coldPagesTouchedKB', label: 'KB touched from clear_refs through one cold ping', digits: 0 },
  { key: 'rttLoadedP50Us', label: 'ping RTT p50 under 1 TCP stream µs', digits: 0 },
  { key: 'rttLoadedP99Us', label: 'ping RTT p99 under 1 TCP stream µs', digits: 0 },
  { key: 'cpuSecPerGB', label: 'datapath CPU s/GB', digits: 2 },
  { key: 'peakRssMB', label: 'datapath peak RSS MB', digits: 1 },
];

export type Summary = Partial<Record<Mode, Partial<Record<Figure, number | null>>>>;

/** Per mode and figure, the median (or worst round) over the rounds that produced it. */
export function summarize(rounds: Partial<Record<Mode, ModeFigures>>[]): Summary {
  const out: Summary = {};
  for (const r of rounds) {
    for (const mode of Object.keys(r) as Mode[]) out[mode] ??= {};
  }
  for (const mode of Object.keys(out) as Mode[]) {
    for (const { key, over } of ROWS) {
      const xs = rounds.map((r) => r[mode]?.[key]).filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
      out[mode]![key] = !xs.length ? null : over === 'min' ? Math.min(...xs) : median(xs);
    }
  }
  return out;
}

function quotient(a: number | null | undefined, b: number | null | undefined): number | null {
  return a == null || b == null || !Number.isFinite(a) || !Number.isFinite(b) || b === 0 ? null : a / b;
}

function ratio(a: number | null | undefined, b: number | null | undefined): string {
  const q = quotient(a, b);
  return q === null ? '–' : `${q.toFixed(2)}×`;
}

/** For the JSON: each veil mode's figures ÷ wireguard-go's, from the same run. */
export function ratiosToWireGuardGo(summary: Summary): Partial<Record<Mode, Partial<Record<Figure, number | null>>>> {
  const base = summary['wireguard-go'];
  const out: Partial<Record<Mode, Partial<Record<Figure, number | null>>>> = {};
  if (!base) return out;
  for (const mode of Object.keys(summary) as Mode[]) {
    if (mode === 'plain' || mode === 'wireguard-go') continue;
    out[mode] = Object.fromEntries(ROWS.map(({ key }) => [key, quotient(summary[mode]?.[key], base[key])]));
  }
  return out;
}

/** A figure's ratio to wireguard-go's in each round that measured both, and their median. */
export interface RoundRatios {
  rounds: (number | null)[];
  median: number | null;
}

/** Figures whose per-round ratios the JSON and the console show: the latency targets of issue #17. */
const ROUND_RATIO_KEYS: Figure[] = ['rttP50Us', 'rttP99Us'];

/**
 * For the JSON: each veil mode's RTT ÷ wireguard-go's of the same round, round by round, and the
 * median of those ratios. A round's modes run minutes apart at most, so the machine's drift (other
 * load, hours apart) cancels within a round's ratio better than between the medians of all rounds.
 */
export function roundRatiosToWireGuardGo(rounds: Partial<Record<Mode, ModeFigures>>[]): Partial<Record<Mode, Partial<Record<Figure, RoundRatios>>>> {
  const out: Partial<Record<Mode, Partial<Record<Figure, RoundRatios>>>> = {};
  const modes = [...new Set(rounds.flatMap((r) => Object.keys(r) as Mode[]))].filter((m) => m !== 'plain' && m !== 'wireguard-go');
  if (!rounds.some((r) => r['wireguard-go'])) return out;
  for (const mode of modes) {
    out[mode] = {};
    for (const key of ROUND_RATIO_KEYS) {
      const each = rounds.map((r) => quotient(r[mode]?.[key] as number | undefined, r['wireguard-go']?.[key] as number | undefined));
      const known = each.filter((x): x is number => x !== null);
      out[mode]![key] = { rounds: each, median: known.length ? median(known) : null };
    }
  }
  return out;
}

/** Console lines of the per-round ratios: "veil-wireguard rttP50Us ÷ wg-go per round 0.91 0.85 – (median 0.88)". */
export function formatRoundRatios(r: Partial<Record<Mode, Partial<Record<Figure, RoundRatios>>>>): string[] {
  const lines: string[] = [];
  for (const [mode, figures] of Object.entries(r)) {
    for (const [key, { rounds, median: m }] of Object.entries(figures!) as [Figure, RoundRatios][]) {
      lines.push(`${mode} ${key} ÷ wg-go per round ${rounds.map((x) => (x === null ? '–' : x.toFixed(2))).join(' ')} (median ${m === null ? '–' : m.toFixed(2)})`);
    }
  }
  return lines;
}

/**
 * Console lines of whether the veil modes' datapath workers were realtime (datapath.realtime) when
 * the idle RTT was measured: per round, the processes with a SCHED_FIFO thread at the pings' start
 * and end, "veil-ipsec workers SCHED_FIFO at the idle pings' start→end per round 2/2→2/2 1/2→2/2".
 * A veil worker not realtime there measured that round's RTT (in part) as a normal thread.
 */
export function formatRealtimeWorkers(rounds: Partial<Record<Mode, ModeFigures>>[]): string[] {
  const lines: string[] = [];
  const modes = [...new Set(rounds.flatMap((r) => Object.keys(r) as Mode[]))].filter((m) => m.startsWith('veil-'));
  const share = (threads: number[]) => `${threads.filter((n) => n > 0).length}/${threads.length}`;
  for (const mode of modes) {
    const each = rounds.map((r) => {
      const t = r[mode]?.rttRealtimeThreads;
      return t ? `${share(t.start)}→${share(t.end)}` : '–';
    });
    lines.push(`${mode} workers SCHED_FIFO at the idle pings' start→end per round ${each.join(' ')}`);
  }
  return lines;
}

/** Rounds in which a tunnel's slowest TCP second fell below half its median second: each one is a stall to look into. */
export function stalls(rounds: Partial<Record<Mode, ModeFigures>>[]): { round: number; mode: Mode; test: string; seconds: number[] }[] {
  const out: { round: number; mode: Mode; test: string; seconds: number[] }[] = [];
  rounds.forEach((r, i) => {
    for (const [mode, f] of Object.entries(r) as [Mode, ModeFigures][]) {
      for (const [test, seconds] of Object.entries(f.tcpSeconds)) {
        if (seconds.length && Math.min(...seconds) < 0.5 * median(seconds)) out.push({ round: i + 1, mode, test, seconds });
      }
    }
  });
  return out;
}

/** A markdown table: one row per figure, per mode its value and ratios (÷ wireguard-go, ÷ plain). */
export function formatTable(summary: Summary): string {
  const modes = Object.keys(summary) as Mode[];
  const head = ['figure', ...modes.map((m) => m + (m === 'plain' || m === 'wireguard-go' ? '' : ' (÷wg-go, ÷plain)'))];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const row of ROWS) {
    if (modes.every((m) => summary[m]?.[row.key] == null)) continue; // not measured in this run (--latency)
    const cells = modes.map((m) => {
      const v = summary[m]?.[row.key];
      const text = v == null ? '–' : v.toFixed(row.digits);
      if (m === 'plain' || m === 'wireguard-go' || v == null) return text;
      return `${text} (${ratio(v, summary['wireguard-go']?.[row.key])}, ${ratio(v, summary.plain?.[row.key])})`;
    });
    lines.push(`| ${row.label} | ${cells.join(' | ')} |`);
  }
  // Scaling: does a mode carry more with four streams than with one (issue #6: "more than one")?
  const scaling = modes.map((m) => ratio(summary[m]?.tcp4Gbps, summary[m]?.tcp1Gbps));
  if (scaling.some((x) => x !== '–')) lines.push(`| TCP 4 streams ÷ 1 stream | ${scaling.join(' | ')} |`);
  return lines.join('\n');
}
