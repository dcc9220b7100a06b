// IPv4 addressing of the lab: node IPs from the underlay subnet, one /24 pod CIDR per node.
//
//   node i (0 = control-plane)  internal IP  = underlay network + 2 + i   (172.18.0.2, .3, ...)
//                               pod CIDR     = i-th /24 of the pod CIDR   (10.244.0.0/24, 10.244.1.0/24, ...)
//                               pod gateway  = .1 of its pod CIDR (on the node side of every pod veth)
//   pods on a node               .2 upwards of the node's pod CIDR
//   etcd member j (0-based)      address      = the subnet's last usable address - j (172.18.255.254, .253, .252)
import { addressAt, cidrSize, formatCidr, parseCidr, type Cidr } from '../net/cidr.js';
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

/** The lab address of etcd member `index`: from the top of the underlay subnet, where no node is. */
export function etcdMemberAddress(index: number, underlay: Cidr, nodes: number): string {
  const at = cidrSize(underlay) - 2 - index;
  if (at < 2 + nodes) {
    throw new VeilError('SUBNET_TOO_SMALL', `underlay subnet ${formatCidr(underlay)} has no address for etcd member ${index + 1} beside ${nodes} nodes`, 'use a larger --underlay-subnet, fewer --nodes or fewer --etcd-members');
  }
  return addressAt(underlay, at);
}

/** The lowest free pod address in a node's pod CIDR (.2 upwards), given the ones in use. */
export function allocatePodIP(nodePodCIDR: string, used: Iterable<string>): string {
  const c = parseLabSubnet(nodePodCIDR, 'pod CIDR');
  const taken = new Set(used);
  for (let i = 2; i < cidrSize(c) - 1; i++) {
    const ip = addressAt(c, i);
    if (!taken.has(ip)) return ip;
  }
  throw new VeilError('POD_CIDR_FULL', `no free address left in ${nodePodCIDR}`, 'delete some pods on that node');
}
