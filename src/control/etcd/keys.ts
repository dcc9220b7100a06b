// Where objects live in etcd: veil/<cluster>/<plural kind>/<name> (as Cilium keeps
// cilium/state/nodes/v1/<cluster>/<node>). One prefix per cluster, one per kind under it.
import type { Kind } from '../registry.js';
import { KINDS } from '../object-checks.js';

const PLURAL: Record<Kind, string> = { Node: 'nodes', Pod: 'pods', Secret: 'secrets', ConfigMap: 'configmaps', Lease: 'leases', Peer: 'peers' };
const KIND_OF_PLURAL = new Map(KINDS.map((k) => [PLURAL[k], k]));

/** veil/<cluster>/ : everything of one cluster. */
export function clusterPrefix(cluster: string): string {
  return `veil/${cluster}/`;
}

/** veil/<cluster>/<plural>/ : every object of one kind; the whole cluster when kind is undefined. */
export function kindPrefix(cluster: string, kind: Kind | undefined): string {
  return kind === undefined ? clusterPrefix(cluster) : `${clusterPrefix(cluster)}${PLURAL[kind]}/`;
}

export function objectKey(cluster: string, kind: Kind, name: string): string {
  return `${kindPrefix(cluster, kind)}${name}`;
}

/** The kind and name a key under the cluster's prefix stands for, or undefined for a foreign key. */
export function parseObjectKey(cluster: string, key: string): { kind: Kind; name: string } | undefined {
  const prefix = clusterPrefix(cluster);
  if (!key.startsWith(prefix)) return undefined;
  const rest = key.slice(prefix.length);
  const slash = rest.indexOf('/');
  if (slash < 0) return undefined;
  const kind = KIND_OF_PLURAL.get(rest.slice(0, slash));
  const name = rest.slice(slash + 1);
  return kind && name ? { kind, name } : undefined;
}
