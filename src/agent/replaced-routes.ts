// The routes the tunnel replaced. Steering a peer's prefix into the tunnel is a `route replace`: a
// plaintext route the host had for that prefix (via the peer's address, a CNI's host route) is gone
// from the table. Before a prefix is first steered, its routes are recorded in the state dir
// (replaced-routes.json, kept across restarts: a restarted agent finds its own routes there, and
// the record of the first run stays), so that an uninstall can give the host its plaintext routing
// back exactly as it was. The table is read once and kept (the host's routes only) while a netlink
// socket reports no change to them: a burst of new peers (a cluster's first convergence) steers
// in several passes, and each read the whole table (two `ip` processes, ~2 routes a peer as JSON).
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../util/exec.js';
import { writeFileAtomic } from '../util/durable-file.js';
import { FAIL_CLOSED_METRIC } from './routes.js';
import { RouteChangeWatch } from './route-change-watch.js';

/** A route as `ip -j route show` prints it (the fields a replace needs). */
export interface ShownRoute {
  dst: string;
  type?: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  scope?: string;
  prefsrc?: string;
  metric?: number;
}

type Record_ = Record<string, ShownRoute[]>;

/** The record in an agent's state dir. */
export function replacedRoutesPath(stateDir: string): string {
  return join(stateDir, 'replaced-routes.json');
}

function withLength(dst: string, family: '-4' | '-6'): string {
  return dst.includes('/') ? dst : `${dst}/${family === '-4' ? 32 : 128}`;
}

function readRecord(file: string): Record_ {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record_;
  } catch {
    return {};
  }
}

/** The main table's routes, both families, with their prefix lengths spelled out. */
function mainTable(netns?: string): ShownRoute[] {
  const out: ShownRoute[] = [];
  for (const family of ['-4', '-6'] as const) {
    const r = run(['ip', ...(netns ? ['-n', netns] : []), family, '-j', 'route', 'show', 'table', 'main']);
    if (r.status !== 0 || !r.stdout.trim()) continue;
    for (const e of JSON.parse(r.stdout) as ShownRoute[]) if (e.dst !== 'default') out.push({ ...e, dst: withLength(e.dst, family) });
  }
  return out;
}

/** The host's routes are read again after this even when no change was notified: a safety net, not the mechanism. */
export const HOST_ROUTES_MAX_AGE_MS = 300_000;

/** Records, once per prefix, the routes that steering `prefixes` into `device` replaces. */
export class ReplacedRoutes {
  private readonly watch: RouteChangeWatch;
  /** The main table's routes that are the host's (not through the device, not its fail-closed blackholes), by prefix, as last read. */
  private host?: Map<string, ShownRoute[]>;
  /** Reads of the routing table so far. */
  tableReads = 0;

  constructor(private readonly file: string, private readonly device: string, now: () => number = () => performance.now()) {
    this.watch = new RouteChangeWatch([device], HOST_ROUTES_MAX_AGE_MS, now);
  }

  /**
   * Before steering: the record is read, and the table only when a prefix is not in it yet. No set
   * of the recorded prefixes is kept besides (~36 B a peer at 5,000 peers): a steer is rare (a new
   * peer's prefix, a route put back), and reading the record then costs less than the table read a
   * new prefix needs anyway.
   */
  recordBefore(prefixes: string[]): void {
    const record = readRecord(this.file);
    const fresh = prefixes.filter((p) => !Object.hasOwn(record, p)); // recorded by this run or a run before it
    if (!fresh.length) return;
    const host = this.hostRoutes();
    for (const p of fresh) if (!Object.hasOwn(record, p)) record[p] = host.get(p) ?? []; // (a prefix listed twice: once)
    writeFileAtomic(this.file, JSON.stringify(record) + '\n', { mode: 0o600 });
  }

  /**
   * The host's routes by prefix: as last read while nothing but the agent's own steering changed the
   * table since (drained before the read: a change while ip runs is counted at the next one). veil's
   * own routes (an agent restarted over its device's routes) are no host route to give back.
   */
  private hostRoutes(): Map<string, ShownRoute[]> {
    if (this.watch.unchanged() && this.host) return this.host;
    this.tableReads++;
    const byPrefix = new Map<string, ShownRoute[]>();
    for (const r of mainTable()) {
      if (r.dev === this.device || (r.type === 'blackhole' && r.metric === FAIL_CLOSED_METRIC)) continue;
      const had = byPrefix.get(r.dst);
      if (had) had.push(r); else byPrefix.set(r.dst, [r]);
    }
    this.host = this.watch.markRead() ? byPrefix : undefined;
    return byPrefix;
  }

  /** After the tunnel's own route writes: their notifications read off the change socket now (RouteChangeWatch.drain). */
  afterSteering(): void {
    this.watch.drain();
  }

  /** Closes the change watch (the tunnel's stop). */
  close(): void {
    this.watch.close();
    this.host = undefined;
  }
}

function replaceLine(r: ShownRoute): string[] {
  return ['route', 'replace', ...(r.type && r.type !== 'unicast' ? [r.type] : []), r.dst, ...(r.gateway ? ['via', r.gateway] : []),
    ...(r.dev ? ['dev', r.dev] : []), ...(r.protocol ? ['proto', r.protocol] : []), ...(r.scope ? ['scope', r.scope] : []),
    ...(r.prefsrc ? ['src', r.prefsrc] : []), ...(r.metric !== undefined ? ['metric', String(r.metric)] : [])];
}

/**
 * Puts the recorded routes back (over whatever holds their prefixes now, e.g. a fail-closed
 * blackhole of a lower priority) and forgets the record. Returns the routes it could not restore.
 */
export function restoreReplacedRoutes(file: string, netns?: string): string[] {
  const failed: string[] = [];
  for (const routes of Object.values(readRecord(file))) {
    for (const r of routes) {
      const res = run(['ip', ...(netns ? ['-n', netns] : []), ...(r.dst.includes(':') ? ['-6'] : ['-4']), ...replaceLine(r)]);
      if (res.status !== 0) failed.push(`${r.dst}${r.gateway ? ` via ${r.gateway}` : ''}: ${res.stderr.trim()}`);
    }
  }
  rmSync(file, { force: true });
  return failed;
}
