// What the node's own networking stands on, read from its routing table: the connected routes (the
// underlay subnet, bridges, anything scope link that is not a veil tunnel) and the addresses it
// must reach outside any tunnel (route gateways, the registry's endpoints). A peer whose pod CIDR
// would be routed over them into the tunnel is refused (peer-admission.ts): one forged node object
// with the underlay as its pod CIDR would otherwise cut the whole cluster off, for good.
import { run } from '../util/exec.js';

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

/** The node's connected routes and gateways now (its own namespace), plus `extra` addresses. */
export function readUnderlayFacts(tunnelDevices: readonly string[], extra: { ip: string; what: string }[] = []): UnderlayFacts {
  const facts: UnderlayFacts = { connected: [], viaGateway: [], addresses: [...extra] };
  for (const family of [4, 6] as const) {
    const r = run(['ip', `-${family}`, '-j', 'route', 'show', 'table', 'main']);
    if (r.status !== 0 || !r.stdout.trim()) continue;
    const f = underlayFactsFrom(JSON.parse(r.stdout) as RouteJson[], family, tunnelDevices);
    facts.connected.push(...f.connected);
    facts.viaGateway.push(...f.viaGateway);
    facts.addresses.push(...f.addresses);
  }
  return facts;
}
