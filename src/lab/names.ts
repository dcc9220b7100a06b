// Names of a lab cluster's nodes, namespaces and links.
//
// Nodes are named like kind's: <cluster>-control-plane, <cluster>-worker, <cluster>-worker2, ...
// Namespaces: veil-<cluster>_<node suffix> (veil-kind_control-plane, veil-kind_worker2),
// veil-<cluster>_fabric (the underlay bridge), veil-<cluster>_pod_<pod>. Cluster names cannot hold
// '_', so the prefix veil-<cluster>_ finds exactly one cluster's namespaces (lab down relies on it).
import { createHash } from 'node:crypto';
import { VeilError } from '../util/errors.js';
import { labNetnsPrefix } from '../control/cluster.js';

/** The underlay bridge, inside the fabric namespace. */
export const FABRIC_BRIDGE = 'veil-br0';
/** Every node's one underlay interface; also the pod side of a pod's veth. */
export const UNDERLAY_IF = 'eth0';
export const POD_IF = 'eth0';

export function nodeNames(cluster: string, count: number): string[] {
  const names = [`${cluster}-control-plane`];
  for (let i = 1; i < count; i++) names.push(i === 1 ? `${cluster}-worker` : `${cluster}-worker${i}`);
  return names;
}

export const netnsPrefix = labNetnsPrefix;

export function fabricNetns(cluster: string): string {
  return `${netnsPrefix(cluster)}fabric`;
}

export function nodeNetns(cluster: string, node: string): string {
  const suffix = node.startsWith(`${cluster}-`) ? node.slice(cluster.length + 1) : node;
  return `${netnsPrefix(cluster)}${suffix}`;
}

export function podNetns(cluster: string, pod: string): string {
  return `${netnsPrefix(cluster)}pod_${pod}`;
}

/** The namespace of etcd member i (0-based): veil-<c>_etcd1, _etcd2, ... */
export function etcdNetns(cluster: string, index: number): string {
  return `${netnsPrefix(cluster)}etcd${index + 1}`;
}

/** The fabric-side end of etcd member i's veth. */
export function etcdFabricPort(index: number): string {
  return `veil-e${index}`;
}

/** The fabric-side end of node i's underlay veth. */
export function fabricPort(index: number): string {
  return `veil-n${index}`;
}

/** The node-side end of a pod's veth (<= 15 chars, unique per pod name like Cilium's lxc<hash>). */
export function podHostInterface(pod: string): string {
  return `veil${createHash('sha256').update(pod).digest('hex').slice(0, 8)}`;
}

const POD_NAME_RE = /^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/;

export function checkPodName(name: string): string {
  if (!POD_NAME_RE.test(name)) {
    throw new VeilError('INVALID_POD_NAME', `invalid pod name '${name}'`, 'use lowercase letters, digits, dots and dashes (up to 63), starting and ending with a letter or digit');
  }
  return name;
}
