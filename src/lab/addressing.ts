// IPv4 addressing of the lab: node IPs from the underlay subnet, one /24 pod CIDR per node.
//
//   node i (0 = control-plane)  internal IP  = underlay network + 2 + i   (172.18.0.2, .3, ...)
//                               pod CIDR     = i-th /24 of the pod CIDR   (10.244.0.0/24, 10.244.1.0/24, ...)
//                               pod gateway  = .1 of its pod CIDR (on the node side of every pod veth)
//   pods on a node               .2 upwards of the node's pod CIDR
//   etcd member j (0-based)      address      = the subnet's last usable address - j (172.18.255.254, .253, .252)
//
// IPv6 (lab up --ip-family dual): prefixes derived from the IPv4 ones, so two labs whose IPv4
// subnets do not overlap get IPv6 prefixes that do not either, and nobody picks a second set:
//   node i                       internal IPv6 = fd12:<underlay network as 8 hex digits>::(2 + i) /64
//                                pod CIDR      = fd10:<pod network as 8 hex digits>:<i>::/64
//                                pod gateway   = ::1 of its pod CIDR
//   a pod at IPv4 .n             IPv6          = ::n of its node's IPv6 pod CIDR (the IPv4 address is the reservation)
// An IPv6-only lab (--ip-family ipv6) has these IPv6 addresses alone: the IPv4 subnets of its flags
// only seed them (and keep labs apart); no IPv4 address is set anywhere. Its pods get ::2 upwards,
// its etcd members the IPv6 address with the host number of their IPv4 one (172.18.255.254 of
// a /16: host number 0xfffe, fd12:ac12::fffe).
import { addressAt, cidrSize, formatCidr, parseCidr, parseIp, type Cidr } from '../net/cidr.js';
import { VeilError } from '../util/errors.js';

export const NODE_POD_PREFIX = 24;

/** A lab subnet: IPv4 'a.b.c.d/p' with the prefix written out and no host bits (net/cidr parses it). */
export function parseLabSubnet(text: string, what = 'CIDR'): Cidr {
  const bad = (why: string) => new VeilError('BAD_CIDR', `bad ${what} '${text}': ${why}`, 'write it as network/prefix, e.g. 10.244.0.0/16');
  if (!/^[^/]+\/\d{1,3}$/.test(text)) throw bad('expected network/prefix');
  let c: Cidr;
  try { c = parseCidr(text, { strict: true }); } catch (e) { throw bad((e as VeilError).message); }
  if (c.family !== 4) throw bad('the lab is IPv4 only');
  return c;
}

/** Which address families the lab's pods and nodes have (veil lab up --ip-family). */
export type LabIpFamily = 'ipv4' | 'ipv6' | 'dual';
export const LAB_IP_FAMILIES: readonly LabIpFamily[] = ['ipv4', 'ipv6', 'dual'];

/** The IPv6 prefix /`prefix` whose first 32 bits after `tag` are the IPv4 network's address. */
function derivedIpv6(tag: number, v4: Cidr, prefix: number): Cidr {
  const bytes = new Uint8Array(16);
  bytes[0] = tag >> 8; bytes[1] = tag & 0xff;
  bytes.set(v4.bytes, 2);
  return { family: 6, bytes, prefixLength: prefix };
}

/** The lab's IPv6 underlay: fd12:<IPv4 underlay network>::/64. */
export function ipv6Underlay(underlay: Cidr): Cidr {
  return derivedIpv6(0xfd12, underlay, 64);
}

/** The lab's IPv6 pod range: fd10:<IPv4 pod network>::/48, a /64 per node. */
export function ipv6PodRange(podCidr: Cidr): Cidr {
  return derivedIpv6(0xfd10, podCidr, 48);
}

export interface NodeIpv6Addressing {
  internalIP: string;
  underlayPrefix: number;
  podCIDR: string;
  podGateway: string;
}

/** The IPv6 addresses of node `index` beside its IPv4 ones (a dual-stack lab). */
export function nodeIpv6Addressing(index: number, underlay: Cidr, podCidr: Cidr): NodeIpv6Addressing {
  const u6 = ipv6Underlay(underlay);
  const range = ipv6PodRange(podCidr);
  const pods = Uint8Array.from(range.bytes);
  pods[6] = index >> 8; pods[7] = index & 0xff; // the index-th /64 of the /48
  const podCIDR: Cidr = { family: 6, bytes: pods, prefixLength: 64 };
  return { internalIP: addressAt(u6, 2 + index), underlayPrefix: u6.prefixLength, podCIDR: formatCidr(podCIDR), podGateway: addressAt(podCIDR, 1) };
}

/** A pod's IPv6 address: the host number of its IPv4 address in the node's IPv6 pod CIDR. */
export function podIpv6(nodePodCIDR: string, nodePodCIDR6: string, podIP: string): string {
  const v4 = parseLabSubnet(nodePodCIDR, 'pod CIDR');
  const ip = parseIp(podIP);
  let host = 0;
  for (let i = 0; i < 4; i++) host = host * 256 + ip.bytes[i]! - (v4.bytes[i]! & 0xff);
  return addressAt(parseCidr(nodePodCIDR6, { strict: true }), host);
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
  if (podCidr.prefixLength > NODE_POD_PREFIX || index >= cidrSize(podCidr) / 256) {
    throw new VeilError('SUBNET_TOO_SMALL', `pod CIDR ${formatCidr(podCidr)} has no /24 for node ${index + 1}`, 'use a larger --pod-cidr (e.g. a /16) or fewer --nodes');
  }
  return {
    internalIP: addressAt(underlay, 2 + index),
    underlayPrefix: underlay.prefixLength,
    podCIDR: `${addressAt(podCidr, index * 256)}/${NODE_POD_PREFIX}`,
    podGateway: addressAt(podCidr, index * 256 + 1),
  };
}

/**
 * The lab address of etcd member `index`: from the top of the underlay subnet, where no node is
 * (an IPv6-only lab: the same host number in its IPv6 underlay).
 */
export function etcdMemberAddress(index: number, underlay: Cidr, nodes: number, family: 4 | 6 = 4): string {
  const at = cidrSize(underlay) - 2 - index;
  if (at < 2 + nodes) {
    throw new VeilError('SUBNET_TOO_SMALL', `underlay subnet ${formatCidr(underlay)} has no address for etcd member ${index + 1} beside ${nodes} nodes`, 'use a larger --underlay-subnet, fewer --nodes or fewer --etcd-members');
  }
  return addressAt(family === 6 ? ipv6Underlay(underlay) : underlay, at);
}

/** Pods a node's pod CIDR holds at most: an IPv4 /24's worth in an IPv6 /64 too. */
const MAX_PODS_PER_NODE = 253;

/** The lowest free pod address in a node's pod CIDR (.2 or ::2 upwards), given the ones in use. */
export function allocatePodIP(nodePodCIDR: string, used: Iterable<string>): string {
  const c = parseCidr(nodePodCIDR, { strict: true });
  const taken = new Set(used);
  for (let i = 2; i < Math.min(cidrSize(c) - 1, MAX_PODS_PER_NODE + 2); i++) {
    const ip = addressAt(c, i);
    if (!taken.has(ip)) return ip;
  }
  throw new VeilError('POD_CIDR_FULL', `no free address left in ${nodePodCIDR}`, 'delete some pods on that node');
}
