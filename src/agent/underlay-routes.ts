// What the node's own networking stands on, read from its routing table: the connected routes (the
// underlay subnet, bridges, anything scope link that is not a veil tunnel) and the addresses it
// must reach outside any tunnel (route gateways, the registry's endpoints). A peer whose pod CIDR
// would be routed over them into the tunnel is refused (peer-admission.ts): one forged node object
// with the underlay as its pod CIDR would otherwise cut the whole cluster off, for good.
import { run } from '../util/exec.js';
import { RouteChangeWatch } from './route-change-watch.js';

export interface UnderlayFacts {
  /** Connected routes: a destination prefix and its device. */
  connected: { prefix: string; dev: string }[];
  /** Routes through a gateway (but the default route): a peer's own pods' route goes through that peer. */
  viaGateway: { prefix: string; gateway: string }[];
  /** Addresses the node must keep reaching directly (the default gateway, the registry), and why. */
  addresses: { ip: string; what: string }[];
}

interface RouteJson { dst: string; dev?: string; gateway?: string; scope?: string; type?: string }

/** Parses `ip -j route show` of one family (pure: tested without a namespace). */
export function underlayFactsFrom(routes: RouteJson[], family: 4 | 6, tunnelDevices: readonly string[]): UnderlayFacts {
  const facts: UnderlayFacts = { connected: [], viaGateway: [], addresses: [] };
  for (const r of routes) {
    if (r.dev && tunnelDevices.includes(r.dev)) continue; // veil's own routes
    if (r.type && r.type !== 'unicast') continue; // blackholes (veil's fail-closed ones among them), unreachable, ...
    const prefix = r.dst === 'default' ? (family === 4 ? '0.0.0.0/0' : '::/0') : r.dst.includes('/') ? r.dst : `${r.dst}/${family === 4 ? 32 : 128}`;
    if (r.gateway && r.dst === 'default') facts.addresses.push({ ip: r.gateway, what: `the default gateway of this node` });
    else if (r.gateway) facts.viaGateway.push({ prefix, gateway: r.gateway });
    else if (r.scope === 'link' && r.dev) facts.connected.push({ prefix, dev: r.dev });
  }
  return facts;
}

/**
 * The node's connected routes and gateways now (its own namespace, or netns), plus `extra`
 * addresses. The routes of every device but the tunnels are asked for, device by device in one
 * process a family: the tunnels' own routes and their blackholes (two per peer: 10,000 at 5,000
 * peers, ~1 MB of JSON a pass) are never read, which they were with the whole table.
 */
export function readUnderlayFacts(tunnelDevices: readonly string[], extra: { ip: string; what: string }[] = [], netns?: string): UnderlayFacts {
  const facts: UnderlayFacts = { connected: [], viaGateway: [], addresses: [...extra] };
  const ip = netns ? ['ip', '-n', netns] : ['ip'];
  const devices = linkNames(ip)?.filter((d) => !tunnelDevices.includes(d));
  for (const family of [4, 6] as const) {
    const routes = (devices && routesThrough(ip, devices, family)) ?? wholeTable(ip, family);
    const f = underlayFactsFrom(routes, family, tunnelDevices);
    facts.connected.push(...f.connected);
    facts.viaGateway.push(...f.viaGateway);
    facts.addresses.push(...f.addresses);
  }
  return facts;
}

/** Read again after this even when no change was notified: a safety net, not the mechanism. */
export const UNDERLAY_FACTS_MAX_AGE_MS = 300_000;

/**
 * readUnderlayFacts for every pass, asked again only when the node's links or routes moved since
 * the last read (a netlink socket on link and route changes in this netns, native/route-changes.c;
 * the agent's own tunnel routes and blackholes do not count), the extra addresses changed, or the
 * last read is UNDERLAY_FACTS_MAX_AGE_MS old. The three `ip` processes a pass were each a fork of
 * the whole agent: the largest part of an idle agent's child cost, and a pass's at every event.
 * Without the socket every read asks ip, as before.
 */
export class UnderlayFactsReader {
  private readonly watch: RouteChangeWatch;
  private last?: { facts: UnderlayFacts; extra: string };

  constructor(private readonly tunnelDevices: readonly string[], now: () => number = () => performance.now()) {
    this.watch = new RouteChangeWatch(tunnelDevices, UNDERLAY_FACTS_MAX_AGE_MS, now);
  }

  /** Whether changes are watched (else every read asks ip). */
  get watching(): boolean {
    return this.watch.watching;
  }

  read(extra: { ip: string; what: string }[] = []): UnderlayFacts {
    const key = JSON.stringify(extra);
    if (this.watch.unchanged() && this.last && this.last.extra === key) return this.last.facts;
    const facts = readUnderlayFacts(this.tunnelDevices, extra);
    this.last = this.watch.markRead() ? { facts, extra: key } : undefined;
    return facts;
  }

  close(): void {
    this.watch.close();
    this.last = undefined;
  }
}

function linkNames(ip: string[]): string[] | undefined {
  const r = run([...ip, '-j', 'link', 'show']);
  if (r.status !== 0) return undefined;
  return (JSON.parse(r.stdout) as { ifname?: string }[]).flatMap((l) => (l.ifname ? [l.ifname] : []));
}

/**
 * Table main's routes through these devices, one `ip -batch` line a device (ip answers each with
 * a JSON array, in order, without the device it was asked for). Undefined when the answers do not
 * line up with the devices (one went meanwhile): the caller reads the whole table instead.
 */
function routesThrough(ip: string[], devices: string[], family: 4 | 6): RouteJson[] | undefined {
  if (!devices.length) return [];
  const r = run([...ip, `-${family}`, '-j', '-force', '-batch', '-'], { input: devices.map((d) => `route show table main dev ${d}`).join('\n') + '\n' });
  const answers = r.stdout.split('\n').filter((l) => l.trim());
  if (r.status !== 0 || answers.length !== devices.length) return undefined;
  return answers.flatMap((a, i) => (JSON.parse(a) as RouteJson[]).map((route) => ({ ...route, dev: devices[i] })));
}

function wholeTable(ip: string[], family: 4 | 6): RouteJson[] {
  const r = run([...ip, `-${family}`, '-j', 'route', 'show', 'table', 'main']);
  return r.status !== 0 || !r.stdout.trim() ? [] : JSON.parse(r.stdout) as RouteJson[];
}
