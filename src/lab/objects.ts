// The lab's registry objects (kind Node and Pod) and the lab metadata file.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { clusterDir, veilHome } from '../util/paths.js';
import type { RegistryObject } from '../control/registry.js';
import { labMetaPath } from '../control/cluster.js';
import { writeFileAtomic } from '../util/durable-file.js';
import type { LabIpFamily } from './addressing.js';

export const CONTROL_PLANE_LABEL = 'node-role.kubernetes.io/control-plane';

/** spec of a Node object, as `lab up` writes it. */
export interface NodeSpec {
  /** The node's address on the underlay (eth0), its tunnel end (IPv6 in a lab with --underlay-family ipv6). */
  internalIP: string;
  /** The pod CIDR routed to this node, e.g. 10.244.1.0/24. */
  podCIDR: string;
  /** A dual-stack lab: both addresses, internalIP first (the agent's tunnel end). */
  internalIPs?: string[];
  /** A dual-stack lab: [podCIDR, its IPv6 pod CIDR]. */
  podCIDRs?: string[];
  /** A dual-stack lab: the IPv6 pod gateway (::1 of the IPv6 pod CIDR). */
  podGateway6?: string;
  /** The address every pod on this node uses as its gateway (.1 of podCIDR). */
  podGateway: string;
  /** The node's network namespace. */
  netns: string;
  /** Always 'eth0'. */
  underlayInterface: string;
  /** Prefix length of the underlay subnet. */
  underlayPrefix: number;
  mtu: number;
  /** File holding this node's boot id (a UUID per node per `lab up`; nodes share one kernel): the lab's
   *  agent runner mounts it over /proc/sys/kernel/random/boot_id for the node's agent. */
  bootIDFile: string;
  /** 0 for the control plane, then 1, 2, ... */
  index: number;
}

/** spec of a Pod object. */
export interface PodSpec {
  node: string;
  podIP: string;
  netns: string;
  /** The node-side end of the pod's veth (in the node's namespace). */
  hostInterface: string;
  gateway: string;
  /** A dual-stack lab: [podIP, its IPv6 address]. */
  podIPs?: string[];
}

export function nodeSpec(obj: RegistryObject): NodeSpec {
  return obj.spec as unknown as NodeSpec;
}

export function podSpec(obj: RegistryObject): PodSpec {
  return obj.spec as unknown as PodSpec;
}

export function nodeRoles(obj: RegistryObject): string {
  const roles = Object.keys(obj.metadata.labels ?? {})
    .filter((l) => l.startsWith('node-role.kubernetes.io/'))
    .map((l) => l.slice('node-role.kubernetes.io/'.length));
  return roles.length ? roles.join(',') : '<none>';
}

/** <clusterDir>/lab.json: what `lab up` was asked for. */
export interface LabMeta {
  name: string;
  nodes: number;
  mtu: number;
  underlaySubnet: string;
  podCIDR: string;
  /** The lab's etcd: 1 or 3 members. */
  etcdMembers: number;
  /** etcd runs with auth; every node's agent has a user of its own (lab up, unless --no-etcd-auth). */
  etcdAuth?: boolean;
  /** 'dual': nodes and pods have IPv6 addresses beside IPv4 (absent: 'ipv4'). */
  ipFamily?: LabIpFamily;
  /** 'ipv6': the tunnels run between the nodes' IPv6 addresses (absent: IPv4). */
  underlayFamily?: 'ipv6';
  createdAt: string;
  /** 'creating' until `lab up` finished. */
  state: 'creating' | 'ready';
}

export { labMetaPath };

export function readLabMeta(cluster: string): LabMeta | undefined {
  try {
    return JSON.parse(readFileSync(labMetaPath(cluster), 'utf8')) as LabMeta;
  } catch {
    return undefined;
  }
}

export function writeLabMeta(meta: LabMeta): void {
  // Not fsync'd: a lab's namespaces do not outlive a reboot, and `lab down` copes with a missing file.
  writeFileAtomic(labMetaPath(meta.name), JSON.stringify(meta, null, 2) + '\n');
}

/** Every lab cluster with a lab.json under $VEIL_HOME. */
export function listLabClusters(): LabMeta[] {
  const dir = join(veilHome(), 'clusters');
  if (!existsSync(dir)) return [];
  return readdirSync(dir).map(readLabMeta).filter((m): m is LabMeta => !!m);
}

export function bootIdPath(cluster: string, node: string): string {
  return join(clusterDir(cluster), 'nodes', node, 'boot_id');
}

/** kubectl's AGE column: 45s, 5m12s, 42m, 3h7m, 20h, 2d5h, 12d. */
export function formatAge(fromIso: string | undefined, now: number = Date.now()): string {
  if (!fromIso) return '<unknown>';
  const s = Math.max(0, Math.floor((now - Date.parse(fromIso)) / 1000));
  if (!Number.isFinite(s)) return '<unknown>';
  const m = Math.floor(s / 60), h = Math.floor(m / 60), d = Math.floor(h / 24);
  if (s < 120) return `${s}s`;
  if (m < 10) return s % 60 ? `${m}m${s % 60}s` : `${m}m`;
  if (h < 3) return `${m}m`;
  if (h < 8) return m % 60 ? `${h}h${m % 60}m` : `${h}h`;
  if (h < 48) return `${h}h`;
  if (d < 8) return h % 24 ? `${d}d${h % 24}h` : `${d}d`;
  return `${d}d`;
}
