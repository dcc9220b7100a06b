// Plaintext routing between nodes: each node reaches every other node's pod CIDR via that node's
// underlay address. `veil install` replaces these with tunnel routes; `veil uninstall` puts them back.
import { mustRun } from '../util/exec.js';
import { labNetnsPrefix, openRegistry } from '../control/cluster.js';
import type { RegistryObject } from '../control/registry.js';
import { nodeSpec, readLabMeta } from './objects.js';
import { ipv6Underlay, parseLabSubnet } from './addressing.js';
import { formatCidr } from '../net/cidr.js';

export interface PlainRoute {
  /** Another node's pod CIDR. */
  dst: string;
  /** That node's internal IP. */
  via: string;
  dev: string;
}

/**
 * The plaintext routes `node` needs to reach the pods of every other node of the lab: each pod
 * CIDR via that node's address of the same family (a dual-stack lab has one of each).
 */
export function plaintextRoutes(node: RegistryObject, allNodes: RegistryObject[]): PlainRoute[] {
  const me = nodeSpec(node);
  return allNodes
    .filter((n) => n.metadata.name !== node.metadata.name && isLabNode(n, me.netns.slice(0, me.netns.indexOf('_') + 1)))
    .flatMap((n) => {
      const s = nodeSpec(n);
      const ips = s.internalIPs ?? [s.internalIP];
      return (s.podCIDRs ?? [s.podCIDR]).flatMap((dst) => {
        const via = ips.find((ip) => ip.includes(':') === dst.includes(':'));
        return via ? [{ dst, via, dev: me.underlayInterface }] : [];
      });
    });
}

/**
 * Whether the object is one of the lab's own nodes (`lab up` made it: its namespace has the lab's
 * prefix): anyone may write a Node object, and only the lab's own get plaintext routes.
 */
function isLabNode(n: RegistryObject, netnsPrefix: string): boolean {
  const s = n.spec ?? {};
  return typeof s['netns'] === 'string' && s['netns'].startsWith(netnsPrefix) && typeof s['podCIDR'] === 'string' && typeof s['internalIP'] === 'string';
}

/**
 * Installs (replace: idempotent) the plaintext routes on every node of the cluster, after the
 * node's connected underlay route, which they go through: should anything have replaced it, it
 * comes back first (a route via a node IP needs it).
 */
export async function installPlaintextRoutes(cluster: string): Promise<void> {
  const reg = openRegistry(cluster);
  const meta = readLabMeta(cluster);
  try {
    const nodes = await reg.list('Node');
    for (const n of nodes) {
      const s = nodeSpec(n);
      if (!isLabNode(n, labNetnsPrefix(cluster))) continue;
      const ips = s.internalIPs ?? [s.internalIP];
      const ipv4 = ips.find((ip) => !ip.includes(':'));
      if (meta && ipv4) mustRun(['ip', '-n', s.netns, 'route', 'replace', meta.underlaySubnet, 'dev', s.underlayInterface, 'proto', 'kernel', 'scope', 'link', 'src', ipv4]);
      if (meta && ips.some((ip) => ip.includes(':'))) {
        mustRun(['ip', '-n', s.netns, '-6', 'route', 'replace', formatCidr(ipv6Underlay(parseLabSubnet(meta.underlaySubnet))), 'dev', s.underlayInterface, 'proto', 'kernel', 'metric', '256']);
      }
      for (const r of plaintextRoutes(n, nodes)) {
        mustRun(['ip', '-n', nodeSpec(n).netns, 'route', 'replace', r.dst, 'via', r.via, 'dev', r.dev]);
      }
    }
  } finally {
    reg.close();
  }
}
