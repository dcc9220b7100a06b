// The bench table: per mode the median over rounds of each figure, with ratios to wireguard-go
// and to plain (the figures move ±20 % between runs on this machine; the ratios hold better).
import type { ModeFigures } from './measure.js';
import type { Mode } from './bench-lab.js';

interface Row {
  key: keyof ModeFigures;
  label: string;
  digits: number;
}

const ROWS: Row[] = [
  { key: 'tcp1Gbps', label: 'TCP 1 stream Gbit/s', digits: 2 },
  { key: 'tcp1RGbps', label: 'TCP 1 stream -R Gbit/s', digits: 2 },
  { key: 'tcp4Gbps', label: 'TCP 4 streams Gbit/s', digits: 2 },
  { key: 'udpRxGbps', label: 'UDP received Gbit/s', digits: 3 },
  { key: 'udpLossPct', label: 'UDP loss %', digits: 2 },
  { key: 'rttP50Us', label: 'ping RTT p50 µs', digits: 0 },
  { key: 'rttP99Us', label: 'ping RTT p99 µs', digits: 0 },
  { key: 'cpuSecPerGB', label: 'datapath CPU s/GB', digits: 2 },
  { key: 'peakRssMB', label: 'datapath peak RSS MB', digits: 1 },
];

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export type Summary = Partial<Record<Mode, Partial<Record<keyof ModeFigures, number | null>>>>;

/** Median per mode and figure over the rounds that produced it. */
export function summarize(rounds: Partial<Record<Mode, ModeFigures>>[]): Summary {
  const out: Summary = {};
  for (const r of rounds) {
    for (const mode of Object.keys(r) as Mode[]) out[mode] ??= {};
  }
  for (const mode of Object.keys(out) as Mode[]) {
    for (const { key } of ROWS) {
      const xs = rounds.map((r) => r[mode]?.[key]).filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
      out[mode]![key] = xs.length ? median(xs) : null;
    }
  }
  return out;
}

function ratio(a: number | null | undefined, b: number | null | undefined): string {
  if (a == null || b == null || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return '–';
  return `${(a / b).toFixed(2)}×`;
}

/** A markdown table: one row per figure, per mode its value and ratios (÷ wireguard-go, ÷ plain). */
export function formatTable(summary: Summary): string {
  const modes = Object.keys(summary) as Mode[];
  const head = ['figure', ...modes.map((m) => m + (m === 'plain' || m === 'wireguard-go' ? '' : ' (÷wg-go, ÷plain)'))];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const row of ROWS) {
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
  lines.push(`| TCP 4 streams ÷ 1 stream | ${scaling.join(' | ')} |`);
  return lines.join('\n');
}
