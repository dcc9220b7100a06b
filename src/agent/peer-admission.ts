// Which nodes may be peers: a node object can be written by anyone with registry access, so one
// that claims an address or pod CIDR another node already holds (or this node's own, or a pod CIDR
// over node addresses, such as the underlay subnet) is refused, naming both, and the first claim is
// kept. Without this, a forged object would take over another node's pods.
import { cidrContains, cidrsOverlap, parseCidr, parseIp, type Cidr, type IpAddress } from '../net/cidr.js';

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
