// Judging a `veil verify` run: per ordered pair of nodes, did ICMP, TCP and UDP arrive, did its
// marker show up in any underlay capture, and what did the underlay carry between the two nodes.
// Pure: results and classified captures in, verdict and text out.
import { cidrContains, parseCidr, tryParseIp, type Cidr } from '../net/cidr.js';
import type { FrameInfo, FrameKind } from './pcap.js';
import type { IpsecEncapsulation } from '../agent/settings.js';

export interface VerifyNode {
  name: string;
  internalIP: string;
  podCIDR: string;
  /** A dual-stack node: every address and pod CIDR of it (both families). */
  internalIPs?: string[];
  podCIDRs?: string[];
}

export interface PairTraffic {
  from: string;
  to: string;
  /** 6: between the two pods' IPv6 addresses (absent: IPv4). */
  family?: 6;
  icmp: boolean;
  tcp: boolean;
  udp: boolean;
  detail: string[];
}

export interface NodeCapture {
  node: string;
  frames: FrameInfo[];
  /** Marker (hex) -> how many times its bytes occur in this capture file. */
  markerHits: Record<string, number>;
}

export interface PairReport extends PairTraffic {
  marker: string;
  /** Occurrences of the pair's marker across every capture (0 = never seen). */
  leaked: number;
  /** Kinds of underlay frames seen from one node (or its pods) to the other. */
  outer: FrameKind[];
  ok: boolean;
}

export interface VerifyReport {
  ok: boolean;
  mode: string;
  expected: FrameKind | null;
  pairs: PairReport[];
  frames: Partial<Record<FrameKind, number>>;
  /** Underlay frames that should not be there, most frequent first. */
  unexpected: { summary: string; count: number }[];
  problems: string[];
  durationMs: number;
}

/** The outer packets an installed mode should put on the underlay; null: nothing encrypts. */
export function expectedOuter(mode: string, encapsulation: IpsecEncapsulation = 'udp'): FrameKind | null {
  if (mode === 'Wireguard') return 'WireGuard';
  if (mode === 'IPsec') return encapsulation === 'esp' ? 'ESP' : 'ESP-in-UDP';
  return null;
}

/** No pod traffic: link housekeeping, and the agents' registry traffic (the marker search still covers them). */
const HARMLESS: ReadonlySet<FrameKind> = new Set<FrameKind>(['ARP', 'IPv6 link-local', 'registry']);

/** The markers' key of a pair: from>to, and /IPv6 for the pair's IPv6 traffic. */
export function pairKey(from: string, to: string, family?: 4 | 6): string {
  return `${from}>${to}${family === 6 ? '/IPv6' : ''}`;
}

function ownerOf(nodes: VerifyNode[]): (ip: string | undefined) => string | undefined {
  const cidrs: [Cidr, string][] = nodes.flatMap((n) => (n.podCIDRs ?? [n.podCIDR]).map((c): [Cidr, string] => [parseCidr(c), n.name]));
  const byIP = new Map(nodes.flatMap((n) => (n.internalIPs ?? [n.internalIP]).map((ip): [string, string] => [ip, n.name])));
  return (ip) => {
    if (!ip) return undefined;
    const direct = byIP.get(ip);
    if (direct) return direct;
    const a = tryParseIp(ip);
    return a && cidrs.find(([c]) => cidrContains(c, a))?.[1];
  };
}

export function judgeVerify(input: {
  mode: string; encapsulation?: IpsecEncapsulation; nodes: VerifyNode[]; traffic: PairTraffic[]; markers: Record<string, string>;
  captures: NodeCapture[]; durationMs: number; problems?: string[];
}): VerifyReport {
  const expected = expectedOuter(input.mode, input.encapsulation);
  const owner = ownerOf(input.nodes);
  const outerByPair = new Map<string, Set<FrameKind>>();
  const frames: Partial<Record<FrameKind, number>> = {};
  const unexpected = new Map<string, number>();
  for (const c of input.captures) {
    for (const f of c.frames) {
      frames[f.kind] = (frames[f.kind] ?? 0) + 1;
      if (f.kind !== expected && !HARMLESS.has(f.kind)) {
        unexpected.set(f.summary, (unexpected.get(f.summary) ?? 0) + 1);
      }
      const a = owner(f.src), b = owner(f.dst);
      if (!a || !b || a === b) continue;
      const key = `${a}>${b}`;
      if (!outerByPair.has(key)) outerByPair.set(key, new Set());
      outerByPair.get(key)!.add(f.kind);
    }
  }
  const problems = [...(input.problems ?? [])];
  if (!expected) problems.push(`encryption is not installed (mode ${input.mode}): pod traffic crosses the underlay in plaintext`);
  const pairs = input.traffic.map((t): PairReport => {
    const marker = input.markers[pairKey(t.from, t.to, t.family)] ?? '';
    const leaked = input.captures.reduce((n, c) => n + (c.markerHits[marker] ?? 0), 0);
    const outer = [...(outerByPair.get(pairKey(t.from, t.to)) ?? [])].sort(); // the tunnel between the nodes carries both families
    const ok = t.icmp && t.tcp && t.udp && leaked === 0 && !!expected && outer.includes(expected) && outer.every((k) => k === expected);
    return { ...t, marker, leaked, outer, ok };
  });
  const failed = pairs.filter((p) => !p.ok).length;
  if (failed) problems.push(`${failed}/${pairs.length} pairs failed`);
  const leakedPairs = pairs.filter((p) => p.leaked > 0).length;
  if (leakedPairs) problems.push(`the marker of ${leakedPairs} pair${leakedPairs === 1 ? '' : 's'} was readable on the underlay`);
  if (unexpected.size) problems.push(`${[...unexpected.values()].reduce((a, b) => a + b, 0)} underlay frames were not ${expected ?? 'encrypted'} tunnel traffic`);
  return {
    ok: !problems.length, mode: input.mode, expected, pairs, frames,
    unexpected: [...unexpected].map(([summary, count]) => ({ summary, count })).sort((a, b) => b.count - a.count),
    problems, durationMs: input.durationMs,
  };
}

export function formatVerifyReport(r: VerifyReport, p: { ok: string; fail: string; green(s: string): string; red(s: string): string }, table: (rows: string[][]) => string): string {
  const yes = (b: boolean) => (b ? p.green('ok') : p.red('FAIL'));
  const out = [`Encryption: ${r.mode}${r.expected ? ` (expected on the underlay: ${r.expected} only)` : ''}`, ''];
  const rows = [['FROM', 'TO', 'ICMP', 'TCP', 'UDP', 'MARKER ON UNDERLAY', 'UNDERLAY CARRIED', 'RESULT']];
  for (const x of r.pairs) {
    rows.push([x.from, x.family === 6 ? `${x.to} (IPv6)` : x.to, yes(x.icmp), yes(x.tcp), yes(x.udp), x.leaked ? p.red(`LEAKED (${x.leaked}x)`) : 'not seen',
      x.outer.join(', ') || '(nothing)', x.ok ? p.green('pass') : p.red('FAIL')]);
  }
  out.push(table(rows), '');
  for (const x of r.pairs) for (const d of x.detail) out.push(`  ${x.from} -> ${x.to}${x.family === 6 ? ' (IPv6)' : ''}: ${d}`);
  const total = Object.values(r.frames).reduce((a, b) => a + (b ?? 0), 0);
  out.push(`Underlay captures: ${total} frames (${Object.entries(r.frames).map(([k, n]) => `${k} ${n}`).join(', ') || 'none'})`);
  if (r.unexpected.length) {
    out.push('Unexpected on the underlay:');
    for (const u of r.unexpected.slice(0, 10)) out.push(`  ${u.summary}  x${u.count}`);
    if (r.unexpected.length > 10) out.push(`  ... and ${r.unexpected.length - 10} more`);
  }
  const secs = (r.durationMs / 1000).toFixed(1);
  const ipv6 = r.pairs.filter((x) => x.family === 6).length;
  if (r.ok) out.push(`${p.ok} veil verify passed: ${r.pairs.length}/${r.pairs.length} node pairs${ipv6 ? ` (${ipv6} of them over IPv6)` : ''} exchanged ICMP, TCP and UDP, only ${r.expected} on the underlay, no marker in plaintext (${secs}s)`);
  else out.push(`${p.fail} veil verify FAILED: ${r.problems.join('; ')} (${secs}s)`);
  return out.join('\n') + '\n';
}
