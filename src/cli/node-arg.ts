// The NODE argument of agent, ipsec, capture and metrics: given (checked before any work), and a
// node of the cluster.
import { currentCluster, openRegistry } from '../control/cluster.js';
import type { Registry, RegistryObject } from '../control/registry.js';
import { VeilError } from '../util/errors.js';
import { UsageError } from './flags.js';

export function nodeName(node: string | undefined, example: string): string {
  if (!node) throw new UsageError('which node?', `name one, e.g. '${example}'`);
  return node;
}

export async function findNode(reg: Registry, node: string): Promise<RegistryObject> {
  const obj = await reg.get('Node', node);
  if (obj) return obj;
  const names = (await reg.list('Node')).map((n) => n.metadata.name);
  throw new VeilError('UNKNOWN_NODE', `unknown node '${node}'`, names.length ? `nodes: ${names.join(', ')}` : "create the lab with 'veil lab up'");
}

/** The cluster and NODE of a per-node command, NODE checked to be a node of that cluster. */
export async function clusterNode(clusterFlag: string | undefined, node: string | undefined, example: string): Promise<{ cluster: string; node: string }> {
  const name = nodeName(node, example);
  const cluster = currentCluster(clusterFlag);
  const reg = openRegistry(cluster);
  try {
    await findNode(reg, name);
  } finally {
    reg.close();
  }
  return { cluster, node: name };
}
