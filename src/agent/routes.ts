// Steering: which destinations go into the tunnel device. Routes are replaced in place (one
// netlink message per route, all of a reconcile in one exchange from the addon), so a prefix never falls back to the plaintext path while moving
// to the tunnel. A blackhole route of lower priority stays under every encrypted prefix: if the
// tunnel device vanishes (agent crash, restart), packets are dropped, never sent in plaintext.
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mustRun, run, type RunResult } from '../util/exec.js';
import { VeilError } from '../util/errors.js';
import { decodeNativeError, native } from '../native/addon.js';
import type { TunnelPrefix } from './tunnel.js';

/** Metric of the fail-closed blackhole under each encrypted prefix (higher = less preferred). */
export const FAIL_CLOSED_METRIC = 4242;

export interface TunnelRoute {
  prefix: string; // CIDR
  device: string;
  mtu?: number;
  /** Preferred source address (node IPs: keep the node's own IP, not the tunnel device's). */
  src?: string;
}

/**
 * Writes a pass's route messages through netlink from the addon (native/route-steer.c: two a
 * prefix, many to a sendmsg, each acknowledged), in netns when given: no process is started (an
 * `ip -batch` was a fork of the whole agent, 16-28 ms at ~260 MB, and ip's own work). As ip's
 * -force, a failed message does not stop the rest. Answers each failure as "PREFIX (what): the
 * kernel's text (ENAME)".
 */
function writeRoutes(release: boolean, device: string, prefixes: readonly string[], netns: string | undefined,
  mtus: Int32Array | null = null, sources: readonly (string | undefined)[] | null = null): string[] {
  if (!prefixes.length) return [];
  const errors = new Int32Array(prefixes.length * 2);
  const texts: (string | undefined)[] = [];
  const failed = native().routesWrite(netns ?? '', device, release ? 1 : 0, FAIL_CLOSED_METRIC, prefixes, mtus, sources, errors, texts);
  if (failed < 0) {
    const d = decodeNativeError(failed);
    return [`the netlink exchange${netns ? ` in netns ${netns}` : ''}: ${d.text} (${d.name})`];
  }
  const report: string[] = [];
  for (let i = 0; failed && i < prefixes.length; i++) { // a prefix once, with its first failed message
    const m = errors[2 * i] ? 2 * i : errors[2 * i + 1] ? 2 * i + 1 : -1;
    if (m < 0) continue;
    const blackhole = (m & 1) === (release ? 1 : 0);
    const what = blackhole ? `blackhole metric ${FAIL_CLOSED_METRIC}` : `dev ${device}${mtus?.[i] ? ` mtu ${mtus[i]}` : ''}${sources?.[i] ? ` src ${sources[i]}` : ''}`;
    const d = decodeNativeError(-errors[m]!);
    report.push(`${prefixes[i]} (${what}): ${texts[m] ?? d.text} (${d.name})`);
  }
  return report;
}

/**
 * Routes every prefix through its device, fail-closed (the blackhole first, then the tunnel route
 * over it), in one netlink exchange a device. Idempotent. netns: in that named namespace (as ip -n).
 */
export function steerIntoTunnel(routes: TunnelRoute[], netns?: string): void {
  const byDevice = new Map<string, TunnelRoute[]>();
  for (const r of routes) {
    const list = byDevice.get(r.device);
    if (list) list.push(r); else byDevice.set(r.device, [r]);
  }
  const failed: string[] = [];
  for (const [device, list] of byDevice) {
    const mtus = list.some((r) => r.mtu) ? Int32Array.from(list, (r) => r.mtu ?? 0) : null;
    const sources = list.some((r) => r.src) ? list.map((r) => r.src) : null;
    failed.push(...writeRoutes(false, device, list.map((r) => r.prefix), netns, mtus, sources));
  }
  if (failed.length) {
    throw new VeilError('ROUTE_FAILED', `routing ${routes.length} prefix(es) into the tunnel failed for ${failed.length}: ${failed.slice(0, 5).join('; ')}${failed.length > 5 ? `; and ${failed.length - 5} more` : ''}`,
      "check the tunnel device and the node's routing table (ip route)");
  }
}

/** Removes the tunnel routes and the blackholes under these prefixes. Missing routes are fine (nothing is reported, as before). */
export function releasePrefixes(prefixes: string[], device: string, netns?: string): void {
  writeRoutes(true, device, prefixes, netns);
}

/** The prefixes currently routed through the device (for reconciling away stale ones). */
export function prefixesOnDevice(device: string, netns?: string): string[] {
  return [...tunnelRoutesNow(device, netns).routed.keys()];
}

/** What the routing table (main) holds of the tunnel's steering, read in one process per family. */
export interface TunnelRoutesNow {
  /** Each prefix routed through the device, and its preferred source (undefined: none). */
  routed: Map<string, string | undefined>;
  /** The prefixes with a fail-closed blackhole (FAIL_CLOSED_METRIC) under them. */
  failClosed: Set<string>;
}

/**
 * Asks ip for the device's routes and for the blackholes only (one process a family), as text, read
 * a line at a time: at 5,000 peers the whole table as JSON (10,000 routes) was ~3 MB of objects in
 * each whole pass, where its text and a prefix string a route are ~0.7 MB.
 */
export function tunnelRoutesNow(device: string, netns?: string): TunnelRoutesNow {
  return listTunnelRoutes(device, netns).read();
}

/** What ip printed of the tunnel's steering (tunnelRoutesNow's listings), not yet read, and its fingerprint. */
export interface TunnelRoutesListing {
  /** A hash of the listings, byte for byte: the same fingerprint, the same routes, sources and blackholes. */
  fingerprint: string;
  read(): TunnelRoutesNow;
}

/**
 * Lists the device's routes and the blackholes (one process a family), leaving the reading for
 * later: a table whose listing is exactly one found in place before needs no reading (at 5,000
 * peers 10,000 lines, a prefix string a route).
 */
export function listTunnelRoutes(device: string, netns?: string): TunnelRoutesListing {
  const texts: string[] = [];
  const hash = createHash('sha256');
  for (const fam of ['-4', '-6'] as const) {
    const ip = netns ? ['ip', '-n', netns, fam] : ['ip', fam];
    // -force: a device that is gone fails its line, not the blackholes'.
    const r = runIntoFile([...ip, '-force', '-batch', '-'], `route show table main dev ${device}\nroute show table main type blackhole\n`);
    texts.push(r.stdout);
    hash.update(`${fam} ${r.status} ${r.stdout.length}\n`).update(r.stdout);
  }
  return {
    fingerprint: hash.digest('base64'),
    read: () => {
      const now: TunnelRoutesNow = { routed: new Map(), failClosed: new Set() };
      readTunnelRoutes(texts[0]!, '/32', now);
      readTunnelRoutes(texts[1]!, '/128', now);
      return now;
    },
  };
}

/**
 * Runs argv with its output into a temporary file (unlinked at once), read back when it is done:
 * ip flushes its output after every route, which through a pipe woke this thread for each one (at
 * 5,000 peers ~10,000 reads, ~30 ms of system time a listing); a file takes the writes without
 * waking anyone. Without a temporary directory it can write to: through a pipe.
 */
function runIntoFile(argv: string[], input: string): RunResult {
  let fd: number;
  try {
    const path = join(tmpdir(), `veil-listing-${process.pid}-${randomBytes(6).toString('hex')}`);
    fd = openSync(path, 'wx+', 0o600);
    unlinkSync(path);
  } catch {
    return run(argv, { input });
  }
  try {
    const r = run(argv, { input, stdio: ['pipe', fd, 'pipe'] });
    const out = Buffer.allocUnsafe(fstatSync(fd).size);
    let at = 0;
    while (at < out.length) {
      const n = readSync(fd, out, at, out.length - at, at);
      if (n === 0) break;
      at += n;
    }
    return { ...r, stdout: out.toString('utf8', 0, at) };
  } finally {
    closeSync(fd);
  }
}

/**
 * Adds to `now` what `ip route show` printed (pure: tested on ip's own lines): a blackhole line
 * ("blackhole PREFIX ... metric N ..."), or a route through the device ("PREFIX ... src ADDRESS
 * ..."; the device is what was asked for, so ip leaves it out). A line of another type, "default"
 * and a multipath route's nexthop lines (indented) are none of these. A host route's prefix comes
 * without its length: hostLength is added ('/32', '/128').
 */
export function readTunnelRoutes(text: string, hostLength: string, now: TunnelRoutesNow): void {
  // Where " src " and " metric " next occur, each searched for once along the text (not from every
  // line to the text's end).
  let src = -1, metric = -1;
  const next = (key: string, from: number) => { const i = text.indexOf(key, from); return i < 0 ? text.length : i; };
  for (let at = 0, end = 0; at < text.length; at = end + 1) {
    end = text.indexOf('\n', at);
    if (end < 0) end = text.length;
    if (text.startsWith('blackhole ', at)) {
      if (metric < at) metric = next(' metric ', at);
      const prefix = token(text, at + 'blackhole '.length, end);
      if (prefix && metric < end && Number(token(text, metric + ' metric '.length, end)) === FAIL_CLOSED_METRIC) now.failClosed.add(withLength(prefix, hostLength));
      continue;
    }
    const first = token(text, at, end);
    if (!first || !(first.includes('.') || first.includes(':'))) continue; // a type, "default", an indented nexthop, nothing
    if (src < at) src = next(' src ', at);
    now.routed.set(withLength(first, hostLength), src < end ? token(text, src + ' src '.length, end) || undefined : undefined);
  }
}

/** The text from `from` to the next space or the line's end ('' when a space is first). */
function token(text: string, from: number, end: number): string {
  const space = text.indexOf(' ', from);
  return text.slice(from, space >= 0 && space < end ? space : end);
}

const withLength = (prefix: string, hostLength: string): string => (prefix.includes('/') ? prefix : prefix + hostLength);

/**
 * Of the routes a tunnel should hold, those the table does not hold as they should be: not through
 * the device, with another preferred source, or without their fail-closed blackhole.
 */
export function routesToMend(want: readonly TunnelPrefix[], now: TunnelRoutesNow): { prefix: string; src?: string }[] {
  const mend: { prefix: string; src?: string }[] = [];
  for (const r of want) {
    const prefix = routePrefix(r), src = routeSource(r);
    if (!now.failClosed.has(prefix) || !now.routed.has(prefix) || now.routed.get(prefix) !== src) mend.push(typeof r === 'string' ? { prefix } : r);
  }
  return mend;
}

/** A tunnel route's prefix (a prefix without a source is its string). */
export const routePrefix = (r: TunnelPrefix): string => (typeof r === 'string' ? r : r.prefix);
/** A tunnel route's preferred source, if it has one. */
export const routeSource = (r: TunnelPrefix): string | undefined => (typeof r === 'string' ? undefined : r.src);

/** Routing table that keeps the tunnel's own datagrams on the underlay (Cilium's encrypt mark idea). */
export const TUNNEL_BYPASS_TABLE = 2005;
const BYPASS_RULE_PRIORITY = 100;

/**
 * With node encryption the peers' node IPs route into the tunnel, which would also capture the
 * tunnel's own UDP datagrams to those IPs. A rule matching the tunnel's source port sends them to
 * a table that holds only the underlay's connected route. Idempotent and never a moment without the
 * rule: routes are replaced in place and the rule is added only if missing (an agent restart, hitless
 * or not, finds it in force; deleting and re-adding it let the node's own datagrams into the tunnel).
 * Both families: a tunnel between IPv6 node addresses needs it as much (its connected routes are
 * the kernel's, IPv6 has no link scope). netns: run there (ip -n).
 */
export function keepTunnelTrafficOnUnderlay(udpPort: number, underlayDevice: string, netns?: string): void {
  for (const fam of ['-4', '-6'] as const) {
    const ip = netns ? ['ip', '-n', netns, fam] : ['ip', fam];
    const link = run([...ip, '-j', 'route', 'show', 'dev', underlayDevice, ...(fam === '-4' ? ['scope', 'link'] : ['proto', 'kernel'])]);
    const routes = link.status === 0 && link.stdout.trim() ? (JSON.parse(link.stdout) as { dst: string }[]) : [];
    if (fam === '-6' && !routes.length) continue; // no IPv6 on the underlay (or in the kernel): no IPv6 tunnel to keep apart
    for (const r of routes) mustRun([...ip, 'route', 'replace', r.dst, 'dev', underlayDevice, 'table', String(TUNNEL_BYPASS_TABLE)]);
    const rule = bypassRule(udpPort);
    const shown = run([...ip, '-j', 'rule', 'show', ...rule]); // lists only rules with exactly these selectors
    if (shown.status === 0 && shown.stdout.trim() && (JSON.parse(shown.stdout) as unknown[]).length > 0) continue;
    const added = run([...ip, 'rule', 'add', ...rule]);
    if (added.status !== 0 && !/File exists/.test(added.stderr)) { // the kernel refuses a second identical rule: someone added it meanwhile
      throw new VeilError('ROUTE_FAILED', `keeping the tunnel's own datagrams (udp sport ${udpPort}, IPv${fam.slice(1)}) on the underlay failed: ${added.stderr.trim()}`,
        "check the node's policy routing rules (ip rule, ip -6 rule)");
    }
  }
}

function bypassRule(udpPort: number): string[] {
  return ['priority', String(BYPASS_RULE_PRIORITY), 'ipproto', 'udp', 'sport', String(udpPort), 'lookup', String(TUNNEL_BYPASS_TABLE)];
}

export function releaseTunnelBypass(udpPort: number, netns?: string): void {
  for (const fam of ['-4', '-6']) {
    const ip = netns ? ['ip', '-n', netns, fam] : ['ip', fam];
    run([...ip, 'rule', 'del', ...bypassRule(udpPort)]);
    run([...ip, 'route', 'flush', 'table', String(TUNNEL_BYPASS_TABLE)]);
  }
}
