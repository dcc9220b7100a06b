// Which cluster a command talks to, and its registry.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { clusterDir, veilHome } from '../util/paths.js';
import { VeilError } from '../util/errors.js';
import { KubernetesRegistry } from './kubernetes/kubernetes-registry.js';
import { EtcdRegistry } from './etcd/etcd-registry.js';
import { loadClusterConfig, saveCurrentCluster, type ClusterEntry } from './cluster-config.js';
import type { EtcdConnectionOptions } from './etcd/etcd-connection.js';
import type { Registry } from './registry.js';

export const DEFAULT_CLUSTER = 'kind';

/** Lowercase letters, digits and dashes (no underscores: namespace names use '_' as separator). */
const CLUSTER_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?$/;

export function checkClusterName(name: string): string {
  if (!CLUSTER_NAME_RE.test(name)) {
    throw new VeilError('INVALID_CLUSTER_NAME', `invalid cluster name '${name}'`, 'use 1-20 lowercase letters, digits and dashes, starting and ending with a letter or digit');
  }
  return name;
}

/** The file `veil lab up` writes so that later commands find the cluster without flags. */
export function currentClusterFile(): string {
  return join(veilHome(), 'current-cluster');
}

/**
 * flag (a --cluster/--name value) > $VEIL_CLUSTER > <veilHome>/current-cluster (written by
 * `veil lab up` and `veil cluster use`, so the later of the two wins) > the cluster config's
 * current-cluster (e.g. a config copied to an operator's machine) > 'kind'.
 */
export function currentCluster(flag?: string): string {
  if (flag) return checkClusterName(flag);
  const env = process.env['VEIL_CLUSTER'];
  if (env) return checkClusterName(env);
  const file = currentClusterFile();
  if (existsSync(file)) {
    const name = readFileSync(file, 'utf8').trim();
    if (name) return checkClusterName(name);
  }
  const configured = loadClusterConfig().currentCluster;
  if (configured) return checkClusterName(configured);
  return DEFAULT_CLUSTER;
}

/** Makes name the current cluster, for this machine's state and in the cluster config. */
export function useCluster(name: string): void {
  checkClusterName(name);
  saveCurrentCluster(name);
  mkdirSync(veilHome(), { recursive: true });
  writeFileSync(currentClusterFile(), name + '\n');
}

/** Where `veil lab up` records a lab cluster (its nodes are network namespaces of this machine). */
export function labMetaPath(cluster: string): string {
  return join(clusterDir(checkClusterName(cluster)), 'lab.json');
}

/** Every network namespace of a lab cluster is named with this prefix (lab down relies on it). */
export function labNetnsPrefix(cluster: string): string {
  return `veil-${cluster}_`;
}

export function isLabCluster(cluster: string): boolean {
  return existsSync(labMetaPath(cluster));
}

/** How this CLI reaches the cluster's etcd (its admin credentials); refuses a Kubernetes cluster. */
export function clusterEtcdOptions(cluster: string): EtcdConnectionOptions {
  const entry = clusterEntry(cluster);
  if (entry.registry.type === 'kubernetes') {
    throw new VeilError('NOT_ETCD', `cluster '${cluster}' is a Kubernetes cluster, not an etcd one`, "this is for clusters whose registry is an etcd (veil cluster add NAME --etcd-endpoints ...)");
  }
  const { type: _type, ...conn } = entry.registry;
  return conn;
}

function clusterEntry(cluster: string): ClusterEntry {
  const config = loadClusterConfig();
  const entry = config.clusters.find((c) => c.name === cluster);
  if (!entry) {
    const known = config.clusters.map((c) => c.name);
    throw new VeilError('UNKNOWN_CLUSTER', `no cluster named '${cluster}' in ${config.path}${known.length ? ` (known: ${known.join(', ')})` : ''}`,
      `create a lab with 'veil lab up --name ${cluster}', or add the cluster's etcd with 'veil cluster add ${cluster} --etcd-endpoints URL'`);
  }
  return entry;
}

/** The cluster's registry: the etcd the cluster config names for it (`veil lab up` adds its own). */
export function openRegistry(cluster: string): Registry {
  const entry = clusterEntry(cluster);
  if (entry.registry.type === 'kubernetes') {
    const r = entry.registry;
    return new KubernetesRegistry({ kubeconfig: r.kubeconfig, context: r.context, namespace: r.namespace ?? 'veil' });
  }
  return new EtcdRegistry({ cluster: checkClusterName(cluster), ...clusterEtcdOptions(cluster) });
}
