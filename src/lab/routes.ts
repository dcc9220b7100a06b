// Plaintext routing between nodes: each node reaches every other node's pod CIDR via that node's
// underlay address. `veil install` replaces these with tunnel routes; `veil uninstall` puts them back.
import { mustRun } from '../util/exec.js';
import { openRegistry } from '../control/cluster.js';
import type { RegistryObject } from '../control/registry.js';
import { nodeSpec } from './objects.js';

export interface PlainRoute {
  /** Another node's pod CIDR. */
  dst: string;
  /** That node's internal IP. */
  via: string;
  dev: string;
}

/** The plaintext routes `node` needs to reach the pods of every other node. */
export function plaintextRoutes(node: RegistryObject, allNodes: RegistryObject[]): PlainRoute[] {
  const me = nodeSpec(node);
  return allNodes
    .filter((n) => n.metadata.name !== node.metadata.name)
    .map((n) => ({ dst: nodeSpec(n).podCIDR, via: nodeSpec(n).internalIP, dev: me.underlayInterface }));
}

/** Installs (replace: idempotent) the plaintext routes on every node of the cluster. */
export async function installPlaintextRoutes(cluster: string): Promise<void> {
  const reg = openRegistry(cluster);
  try {
    const nodes = await reg.list('Node');
    for (const n of nodes) {
      for (const r of plaintextRoutes(n, nodes)) {
        mustRun(['ip', '-n', nodeSpec(n).netns, 'route', 'replace', r.dst, 'via', r.via, 'dev', r.dev]);
      }
    }
  } finally {
    reg.close();
  }
}
