// IPv4 addressing of the lab: node IPs from the underlay subnet, one /24 pod CIDR per node.
//
//   node i (0 = control-plane)  internal IP  = underlay network + 2 + i   (172.18.0.2, .3, ...)
//                               pod CIDR     = i-th /24 of the pod CIDR   (10.244.0.0/24, 10.244.1.0/24, ...)
//                               pod gateway  = .1 of its pod CIDR (on the node side of every pod veth)
//   pods on a node               .2 upwards of the node's pod CIDR
import { VeilError } from '../util/errors.js';

export interface Cidr {
  /** Network address as an unsigned 32-bit integer. */
  network: number;
  prefix: number;
}

export const NODE_POD_PREFIX = 24;

export function ipToInt(ip: string): number {
  const parts = ip.split('.');
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) {
    throw new VeilError('BAD_CIDR', `'${ip}' is not an IPv4 address`, 'write it as four numbers 0-255, e.g. 10.244.0.0');
  }
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0);
}

export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** Parses 'a.b.c.d/p'; host bits must be zero. */
export function parseCidr(text: string, what = 'CIDR'): Cidr {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(text);
  const bad = (why: string) => new VeilError('BAD_CIDR', `bad ${what} '${text}': ${why}`, 'write it as network/prefix, e.g. 10.244.0.0/16');
  if (!m) throw bad('expected network/prefix');
  const prefix = Number(m[2]);
  if (prefix > 32) throw bad('prefix is larger than 32');
  let network: number;
  try { network = ipToInt(m[1]!); } catch { throw bad('not an IPv4 address'); }
  if ((network & ~maskOf(prefix)) >>> 0 !== 0) throw bad(`host bits are set (did you mean ${intToIp((network & maskOf(prefix)) >>> 0)}/${prefix}?)`);
  return { network, prefix };
}

export function formatCidr(c: Cidr): string {
  return `${intToIp(c.network)}/${c.prefix}`;
}

function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

export function cidrSize(c: Cidr): number {
  return 2 ** (32 - c.prefix);
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  const p = Math.min(a.prefix, b.prefix);
  return ((a.network & maskOf(p)) >>> 0) === ((b.network & maskOf(p)) >>> 0);
}

export function cidrContains(c: Cidr, ip: number): boolean {
  return ((ip & maskOf(c.prefix)) >>> 0) === c.network;
}

export interface NodeAddressing {
  internalIP: string;
  /** Prefix length of the underlay subnet (for the address on eth0). */
  underlayPrefix: number;
  podCIDR: string;
  podGateway: string;
}

/** Addresses of node `index` (0-based); throws if the subnets are too small for it. */
export function nodeAddressing(index: number, underlay: Cidr, podCidr: Cidr): NodeAddressing {
  if (index + 3 >= cidrSize(underlay)) {
    throw new VeilError('SUBNET_TOO_SMALL', `underlay subnet ${formatCidr(underlay)} has no address for node ${index + 1}`, 'use a larger --underlay-subnet or fewer --nodes');
  }
  if (podCidr.prefix > NODE_POD_PREFIX || index >= cidrSize(podCidr) / 256) {
    throw new VeilError('SUBNET_TOO_SMALL', `pod CIDR ${formatCidr(podCidr)} has no /24 for node ${index + 1}`, 'use a larger --pod-cidr (e.g. a /16) or fewer --nodes');
  }
  const podNet = podCidr.network + index * 256;
  return {
    internalIP: intToIp(underlay.network + 2 + index),
    underlayPrefix: underlay.prefix,
    podCIDR: `${intToIp(podNet)}/${NODE_POD_PREFIX}`,
    podGateway: intToIp(podNet + 1),
  };
}

/** The lowest free pod address in a node's pod CIDR (.2 upwards), given the ones in use. */
export function allocatePodIP(nodePodCIDR: string, used: Iterable<string>): string {
  const c = parseCidr(nodePodCIDR, 'pod CIDR');
  const taken = new Set(used);
  for (let i = 2; i < cidrSize(c) - 1; i++) {
    const ip = intToIp(c.network + i);
    if (!taken.has(ip)) return ip;
  }
  throw new VeilError('POD_CIDR_FULL', `no free address left in ${nodePodCIDR}`, 'delete some pods on that node');
}
