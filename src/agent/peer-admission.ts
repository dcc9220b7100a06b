// Which nodes may be peers: a node object can be written by anyone with registry access, so one
// that claims an address or pod CIDR another node already holds (or this node's own, or a pod CIDR
// over node addresses, such as the underlay subnet) is refused, naming both, and the first claim is
// kept. Without this, a forged object would take over another node's pods.
import { cidrContains, cidrContainsCidr, cidrsOverlap, parseCidr, parseIp, type Cidr, type IpAddress } from '../net/cidr.js';

export interface Claim {
  name: string;
  ips: string[];
  podCIDRs: string[];
}

interface Parsed { name: string; ips: { text: string; ip: IpAddress }[]; cidrs: { text: string; cidr: Cidr }[] }

function parse(c: Claim): Parsed | string {
  const ips: Parsed['ips'] = [];
  const cidrs: Parsed['cidrs'] = [];
  for (const text of c.ips) {
    try { ips.push({ text, ip: parseIp(text) }); } catch { return `its address "${text}" is not an IP address`; }
  }
  for (const text of c.podCIDRs) {
    try { cidrs.push({ text, cidr: parseCidr(text, { strict: true }) }); } catch { return `its pod CIDR "${text}" is not a CIDR`; }
  }
  return { name: c.name, ips, cidrs };
}

const sameIp = (a: IpAddress, b: IpAddress) => a.family === b.family && a.bytes.every((x, i) => x === b.bytes[i]);

/** Why candidate collides with holder, or undefined. */
function collision(candidate: Parsed, holder: Parsed, whose: string): string | undefined {
  for (const { text, ip } of candidate.ips) {
    for (const h of holder.ips) if (sameIp(ip, h.ip)) return `it claims the address ${text} of ${whose}`;
    for (const h of holder.cidrs) if (cidrContains(h.cidr, ip)) return `its address ${text} lies in the pod CIDR ${h.text} of ${whose}`;
  }
  for (const { text, cidr } of candidate.cidrs) {
    for (const h of holder.cidrs) if (cidrsOverlap(cidr, h.cidr)) return `its pod CIDR ${text} overlaps ${h.text} of ${whose}`;
    for (const h of holder.ips) if (cidrContains(cidr, h.ip)) return `its pod CIDR ${text} contains the address ${h.text} of ${whose}`;
  }
  return undefined;
}

/**
 * Admits candidates in the order given (oldest first): each must be well-formed and collide with
 * neither this node nor a node admitted before it. refused: 'peer NAME' -> the reason.
 */
export function admitPeers<T extends Claim>(self: Claim | undefined, candidates: T[]): { admitted: T[]; refused: Map<string, string> } {
  const own = self ? parse(self) : undefined;
  const holders: Parsed[] = own && typeof own !== 'string' ? [own] : [];
  const admitted: T[] = [];
  const refused = new Map<string, string>();
  for (const c of candidates) {
    const p = parse(c);
    if (typeof p === 'string') { refused.set(`peer ${c.name}`, `node object refused: ${p}`); continue; }
    let why: string | undefined;
    for (const h of holders) {
      why = collision(p, h, h === own ? `this node (${h.name})` : `node '${h.name}'`);
      if (why) break;
    }
    if (why) { refused.set(`peer ${c.name}`, `node object refused: ${why} (the first claim is kept)`); continue; }
    holders.push(p);
    admitted.push(c);
  }
  return { admitted, refused };
}

/** The node's own underlay, as underlay-routes.ts reads it. */
export interface Underlay {
  connected: { prefix: string; dev: string }[];
  viaGateway: { prefix: string; gateway: string }[];
  addresses: { ip: string; what: string }[];
}

const parsedCidr = (text: string): Cidr | undefined => { try { return parseCidr(text); } catch { return undefined; } };
const parsedIp = (text: string): IpAddress | undefined => { try { return parseIp(text); } catch { return undefined; } };

/**
 * Refuses the peers whose prefixes would be routed over the node's own underlay: a pod CIDR that
 * overlaps a connected route, or a route through a gateway other than that peer (its own pods'
 * plaintext route goes through it, and is meant to be replaced), or that contains a gateway or an
 * address the node must reach directly (the default gateway, the registry); a node address that is
 * one of those (node encryption routes it into the tunnel), or the gateway of routes to more than
 * its own pods. refused: 'peer NAME' -> the reason.
 */
export function screenAgainstUnderlay<T extends { name: string; internalIPs: string[]; podCIDRs: string[] }>(peers: T[], u: Underlay): { admitted: T[]; refused: Map<string, string> } {
  const connected = u.connected.flatMap((c) => { const cidr = parsedCidr(c.prefix); return cidr ? [{ ...c, cidr }] : []; });
  const routes = u.viaGateway.flatMap((r) => { const cidr = parsedCidr(r.prefix); const gw = parsedIp(r.gateway); return cidr && gw ? [{ ...r, cidr, gw }] : []; });
  const addresses = u.addresses.flatMap((a) => { const addr = parsedIp(a.ip); return addr ? [{ ...a, addr }] : []; });
  const why = (p: T): string | undefined => {
    const cidrs: { text: string; cidr: Cidr }[] = [];
    const ips: { text: string; ip: IpAddress }[] = [];
    for (const text of p.podCIDRs) {
      try { cidrs.push({ text, cidr: parseCidr(text, { strict: true }) }); } catch { return `its pod CIDR "${text}" is not a CIDR`; }
    }
    for (const text of p.internalIPs) {
      const ip = parsedIp(text);
      if (!ip) return `its address "${text}" is not an IP address`;
      ips.push({ text, ip });
    }
    const itself = (gw: IpAddress) => ips.some((x) => sameIp(x.ip, gw));
    const ownPods = (c: Cidr) => cidrs.some((x) => cidrContainsCidr(x.cidr, c));
    for (const { text, cidr } of cidrs) {
      for (const c of connected) if (cidrsOverlap(cidr, c.cidr)) return `its pod CIDR ${text} overlaps the connected route ${c.prefix} dev ${c.dev} of this node`;
      for (const r of routes) {
        if (itself(r.gw)) continue; // the route to its pods through it
        if (cidrsOverlap(cidr, r.cidr)) return `its pod CIDR ${text} overlaps the route ${r.prefix} via ${r.gateway} of this node`;
        if (cidrContains(cidr, r.gw)) return `its pod CIDR ${text} contains ${r.gateway}, the gateway of the route ${r.prefix}`;
      }
      for (const a of addresses) if (cidrContains(cidr, a.addr)) return `its pod CIDR ${text} contains ${a.ip}, ${a.what}`;
    }
    for (const { text, ip } of ips) {
      for (const a of addresses) if (sameIp(ip, a.addr)) return `its address ${text} is ${a.ip === text ? '' : `${a.ip}, `}${a.what}`;
      for (const r of routes) if (sameIp(ip, r.gw) && !ownPods(r.cidr)) return `its address ${text} is the gateway of the route ${r.prefix} of this node`;
    }
    return undefined;
  };
  const admitted: T[] = [];
  const refused = new Map<string, string>();
  for (const p of peers) {
    const reason = why(p);
    if (reason) refused.set(`peer ${p.name}`, `node object refused: ${reason}: routing it into the tunnel would cut this node off its underlay`);
    else admitted.push(p);
  }
  return { admitted, refused };
}
