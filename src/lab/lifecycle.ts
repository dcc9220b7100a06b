// `lab up` and `lab down`: a cluster of network namespaces like kind's, and its removal.
//
//   veil-<c>_fabric          bridge veil-br0, ports veil-n0, veil-n1, ... (the underlay L2 segment)
//   veil-<c>_control-plane   eth0 172.18.0.2/16 ── veil-n0
//   veil-<c>_worker          eth0 172.18.0.3/16 ── veil-n1          ... and so on
//   veil-<c>_etcd1           eth0 172.18.255.254/16 ── veil-e0     the control plane: a real etcd
//                            (1 or 3 members) on 2379 for the agents, and on a unix socket in
//                            <clusterDir>/etcd for the CLI (the root namespace has no route in)
//
// Every veth is created directly between two of our namespaces: the root namespace gets nothing
// but the namespace names.
import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { ensurePrivateDir, writePrivateFile } from '../util/private-files.js';
import { dirname, join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { clusterDir } from '../util/paths.js';
import { VeilError } from '../util/errors.js';
import { mustRun } from '../util/exec.js';
import { checkClusterName, clusterEtcdOptions, currentClusterFile, openRegistry, useCluster } from '../control/cluster.js';
import { grantNodeCredentials } from '../control/etcd/etcd-node-credentials.js';
import { nodeStateDir } from '../agent/state-paths.js';
import { loadClusterConfig, removeClusterEntry, saveClusterEntry } from '../control/cluster-config.js';
import { EtcdCluster } from './etcd-cluster.js';
import type { RegistryObject } from '../control/registry.js';
import { cidrsOverlap, formatCidr } from '../net/cidr.js';
import { LAB_IP_FAMILIES, etcdMemberAddress, ipv6Underlay, nodeAddressing, nodeIpv6Addressing, parseLabSubnet, type LabIpFamily } from './addressing.js';
import { FABRIC_BRIDGE, UNDERLAY_IF, etcdFabricPort, etcdNetns, fabricNetns, fabricPort, netnsPrefix, nodeNames, nodeNetns } from './names.js';
import { addNetns, deleteNetns, listNetns, netnsPids } from './netns.js';
import { preflight, requireEtcd } from './preflight.js';
import { registerPid, stopProcesses, stopRegisteredProcesses } from './pids.js';
import { installPlaintextRoutes } from './routes.js';
import { CONTROL_PLANE_LABEL, bootIdPath, listLabClusters, readLabMeta, writeLabMeta, type LabMeta, type NodeSpec } from './objects.js';

export interface LabUpOptions {
  name?: string;
  nodes?: number;
  mtu?: number;
  underlaySubnet?: string;
  podCIDR?: string;
  /** 1 or 3 etcd members. */
  etcdMembers?: number;
  /** etcd with auth (the default): the CLI as etcd's root, each node's agent as its own user that
   *  may write only its own Node and Lease (`veil cluster node-user`). false: no auth at all. */
  etcdAuth?: boolean;
  /** 'dual': IPv6 node addresses and pod CIDRs beside the IPv4 ones (derived from them, see addressing.ts);
   *  'ipv6': those IPv6 addresses alone (nodes, pods and etcd), the IPv4 subnets only their seed. */
  ipFamily?: LabIpFamily;
  /** With ipFamily 'dual': 'ipv6' makes the nodes' IPv6 address their tunnel end (first internal IP). */
  underlayFamily?: 'ipv4' | 'ipv6';
}

export const LAB_DEFAULTS = { name: 'kind', nodes: 4, mtu: 1500, underlaySubnet: '172.18.0.0/16', podCIDR: '10.244.0.0/16', etcdMembers: 1, etcdAuth: true, ipFamily: 'ipv4' as LabIpFamily, underlayFamily: 'ipv4' as 'ipv4' | 'ipv6' } as const;
/** IPv6 needs links of at least 1280 bytes: the tunnel device's MTU is the underlay's less the largest overhead (WireGuard's 80, IPsec's up to 73). */
export const MIN_IPV6_MTU = 1280 + 80;
export const MAX_NODES = 100;

/** Checks options without touching anything; returns the complete, normalised set. */
export function validateLabOptions(opts: LabUpOptions): Required<LabUpOptions> {
  const o = { ...LAB_DEFAULTS, ...stripUndefined(opts) };
  checkClusterName(o.name);
  if (!Number.isInteger(o.nodes) || o.nodes < 1 || o.nodes > MAX_NODES) {
    throw new VeilError('BAD_FLAG', `--nodes must be a whole number from 1 to ${MAX_NODES}, not '${o.nodes}'`, 'e.g. --nodes 4');
  }
  if (!Number.isInteger(o.mtu) || o.mtu < 576 || o.mtu > 9000) {
    throw new VeilError('BAD_FLAG', `--mtu must be a whole number from 576 to 9000, not '${o.mtu}'`, 'e.g. --mtu 1500');
  }
  const underlay = parseLabSubnet(o.underlaySubnet, '--underlay-subnet');
  const pods = parseLabSubnet(o.podCIDR, '--pod-cidr');
  if (cidrsOverlap(underlay, pods)) {
    throw new VeilError('SUBNET_OVERLAP', `--pod-cidr ${o.podCIDR} overlaps --underlay-subnet ${o.underlaySubnet}`, 'pick subnets that do not overlap, e.g. the defaults 10.244.0.0/16 and 172.18.0.0/16');
  }
  if (!LAB_IP_FAMILIES.includes(o.ipFamily)) {
    throw new VeilError('BAD_FLAG', `--ip-family must be ${LAB_IP_FAMILIES.join(', ')}, not '${o.ipFamily}'`, 'e.g. --ip-family dual');
  }
  if (o.underlayFamily !== 'ipv4' && o.underlayFamily !== 'ipv6') {
    throw new VeilError('BAD_FLAG', `--underlay-family must be ipv4 or ipv6, not '${o.underlayFamily}'`, 'e.g. --ip-family dual --underlay-family ipv6');
  }
  if (o.underlayFamily === 'ipv6' && o.ipFamily === 'ipv4') {
    throw new VeilError('BAD_FLAG', '--underlay-family ipv6 needs IPv6 node addresses', 'add --ip-family dual');
  }
  if (o.ipFamily === 'ipv6' && opts.underlayFamily === 'ipv4') {
    throw new VeilError('BAD_FLAG', '--underlay-family ipv4 needs IPv4 node addresses, and an IPv6-only lab has none', 'leave --underlay-family out, or use --ip-family dual');
  }
  if (o.ipFamily === 'ipv6') o.underlayFamily = 'ipv6'; // its only family
  if (o.ipFamily !== 'ipv4' && o.mtu < MIN_IPV6_MTU) {
    throw new VeilError('BAD_FLAG', `--mtu ${o.mtu} is too small for --ip-family ${o.ipFamily}: IPv6 needs 1280 bytes inside the tunnel`, `use --mtu ${MIN_IPV6_MTU} or more`);
  }
  if (o.etcdMembers !== 1 && o.etcdMembers !== 3) {
    throw new VeilError('BAD_FLAG', `--etcd-members must be 1 or 3, not '${o.etcdMembers}'`, 'e.g. --etcd-members 3');
  }
  for (let i = 0; i < o.nodes; i++) nodeAddressing(i, underlay, pods); // throws if too small
  for (let i = 0; i < o.etcdMembers; i++) etcdMemberAddress(i, underlay, o.nodes);
  return { ...o, underlaySubnet: formatCidr(underlay), podCIDR: formatCidr(pods) };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Our subnets against every other lab cluster's. */
function checkOverlapWithOtherClusters(o: Required<LabUpOptions>): void {
  const mine = [['--underlay-subnet', o.underlaySubnet], ['--pod-cidr', o.podCIDR]] as const;
  for (const other of listLabClusters()) {
    if (other.name === o.name) continue;
    for (const [flag, cidr] of mine) {
      for (const theirs of [other.underlaySubnet, other.podCIDR]) {
        if (cidrsOverlap(parseLabSubnet(cidr), parseLabSubnet(theirs))) {
          throw new VeilError('SUBNET_OVERLAP', `${flag} ${cidr} overlaps ${theirs} of lab cluster '${other.name}'`,
            `pick another ${flag}, or remove that cluster with 'veil lab down --name ${other.name}'`);
        }
      }
    }
  }
}

/** Creates the cluster; on any failure removes whatever it made and rethrows. */
export async function labUp(opts: LabUpOptions = {}): Promise<LabMeta> {
  preflight('veil lab up');
  requireEtcd();
  const o = validateLabOptions(opts);
  const cluster = o.name;
  if (readLabMeta(cluster) || listNetns().some((ns) => ns.startsWith(netnsPrefix(cluster)))) {
    throw new VeilError('NAME_IN_USE', `lab cluster '${cluster}' already exists`, `remove it with 'veil lab down --name ${cluster}', or choose another --name`);
  }
  checkOverlapWithOtherClusters(o);

  const meta: LabMeta = {
    name: cluster, nodes: o.nodes, mtu: o.mtu, underlaySubnet: o.underlaySubnet, podCIDR: o.podCIDR, etcdMembers: o.etcdMembers,
    ...(o.etcdAuth ? { etcdAuth: true } : {}), ...(o.ipFamily !== 'ipv4' ? { ipFamily: o.ipFamily } : {}),
    ...(o.underlayFamily === 'ipv6' ? { underlayFamily: 'ipv6' as const } : {}), createdAt: new Date().toISOString(), state: 'creating' };
  ensurePrivateDir(clusterDir(cluster)); // its etcd's data (the secrets), the nodes' keys: root's alone
  writeLabMeta(meta); // from here on, lab down knows this cluster even if we crash
  try {
    await buildCluster(meta);
    meta.state = 'ready';
    writeLabMeta(meta);
    useCluster(cluster);
    return meta;
  } catch (e) {
    await labDown(cluster);
    throw e;
  }
}

async function buildCluster(meta: LabMeta): Promise<void> {
  const cluster = meta.name;
  const underlay = parseLabSubnet(meta.underlaySubnet);
  const pods = parseLabSubnet(meta.podCIDR);
  const mtu = String(meta.mtu);

  const fabric = fabricNetns(cluster);
  addNetns(fabric);
  mustRun(['ip', '-n', fabric, 'link', 'add', FABRIC_BRIDGE, 'mtu', mtu, 'type', 'bridge']);
  mustRun(['ip', '-n', fabric, 'link', 'set', FABRIC_BRIDGE, 'up']);
  await startEtcd(meta);

  const reg = openRegistry(cluster);
  try {
    const names = nodeNames(cluster, meta.nodes);
    for (const [index, node] of names.entries()) {
      const ns = nodeNetns(cluster, node);
      const v4 = meta.ipFamily !== 'ipv6' ? nodeAddressing(index, underlay, pods) : undefined;
      const addr6 = meta.ipFamily === 'dual' || meta.ipFamily === 'ipv6' ? nodeIpv6Addressing(index, underlay, pods) : undefined;
      const addr = (v4 ?? addr6)!; // the first family: the node's internalIP, podCIDR and podGateway
      addNetns(ns);
      if (v4) mustRun(['ip', 'netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
      // IPv6 forwarding, and no duplicate address detection: an address is usable at once (every
      // address in the lab is unique by construction), so nothing waits or flakes on DAD.
      if (addr6) mustRun(['ip', 'netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']);
      const port = fabricPort(index);
      mustRun(['ip', '-n', fabric, 'link', 'add', port, 'mtu', mtu, 'type', 'veth', 'peer', 'name', UNDERLAY_IF, 'netns', ns, 'mtu', mtu]);
      mustRun(['ip', '-n', fabric, 'link', 'set', port, 'master', FABRIC_BRIDGE, 'up']);
      if (v4) mustRun(['ip', '-n', ns, 'addr', 'add', `${v4.internalIP}/${v4.underlayPrefix}`, 'dev', UNDERLAY_IF]);
      if (addr6) mustRun(['ip', '-n', ns, 'addr', 'add', `${addr6.internalIP}/${addr6.underlayPrefix}`, 'dev', UNDERLAY_IF, 'nodad']);
      mustRun(['ip', '-n', ns, 'link', 'set', UNDERLAY_IF, 'up']);

      const bootIDFile = bootIdPath(cluster, node);
      mkdirSync(dirname(bootIDFile), { recursive: true });
      writeFileSync(bootIDFile, randomUUID() + '\n');

      // The first internal IP is the tunnel end: IPv6 with --underlay-family ipv6.
      const ips = !v4 || !addr6 ? [addr.internalIP] : meta.underlayFamily === 'ipv6' ? [addr6.internalIP, v4.internalIP] : [v4.internalIP, addr6.internalIP];
      const spec: NodeSpec = {
        internalIP: ips[0]!, podCIDR: addr.podCIDR, podGateway: addr.podGateway, netns: ns,
        underlayInterface: UNDERLAY_IF, underlayPrefix: addr.underlayPrefix, mtu: meta.mtu, bootIDFile, index,
        ...(v4 && addr6 ? { internalIPs: ips, podCIDRs: [v4.podCIDR, addr6.podCIDR], podGateway6: addr6.podGateway } : {}),
      };
      const labels: Record<string, string> = { 'kubernetes.io/hostname': node, 'kubernetes.io/os': 'linux' };
      if (index === 0) labels[CONTROL_PLANE_LABEL] = '';
      const obj: RegistryObject = { kind: 'Node', metadata: { name: node, labels }, spec: { ...spec }, status: {} };
      await reg.mutate('Node', node, () => obj);
      if (meta.etcdAuth) {
        const creds = await grantNodeCredentials(clusterEtcdOptions(cluster), cluster, node);
        writePrivateFile(labNodeEtcdPasswordFile(cluster, node), creds.password + '\n');
      }
    }
  } finally {
    reg.close();
  }
  await installPlaintextRoutes(cluster);
}

/** The password of a node's own etcd user (a lab with etcd auth, the default), in its state dir. */
export function labNodeEtcdPasswordFile(cluster: string, node: string): string {
  return join(nodeStateDir(cluster, node), 'etcd.password');
}

/** The etcd directory of a lab cluster: data, logs, and the members' unix sockets. */
export function labEtcdDir(cluster: string): string {
  return `${clusterDir(cluster)}/etcd`;
}

/** The etcd client URLs the lab's agents use: the members' lab addresses. */
export function labAgentEtcdEndpoints(meta: LabMeta): string[] {
  const underlay = parseLabSubnet(meta.underlaySubnet);
  return Array.from({ length: meta.etcdMembers }, (_, i) => `http://${urlHost(etcdMemberAddress(i, underlay, meta.nodes, labEtcdFamily(meta)))}:2379`);
}

/** etcd is on IPv4 unless the lab has no IPv4 (an IPv6-only lab). */
function labEtcdFamily(meta: LabMeta): 4 | 6 {
  return meta.ipFamily === 'ipv6' ? 6 : 4;
}

/** An address as a URL's host: IPv6 in brackets. */
function urlHost(ip: string): string {
  return ip.includes(':') ? `[${ip}]` : ip;
}

/** The etcd pid record of a member (lab down stops it by that pid). */
export function etcdPidName(member: string): string {
  return `etcd-${member}`;
}

/**
 * The control plane: each member in a namespace on the fabric, at the top of the underlay subnet;
 * then the cluster config names the cluster with the members' unix sockets, so every CLI command
 * reads and writes this etcd.
 */
async function startEtcd(meta: LabMeta): Promise<EtcdCluster> {
  const cluster = meta.name;
  const underlay = parseLabSubnet(meta.underlaySubnet);
  const fabric = fabricNetns(cluster);
  const mtu = String(meta.mtu);
  const family = labEtcdFamily(meta);
  const address = (i: number) => etcdMemberAddress(i, underlay, meta.nodes, family);
  const prefix = family === 6 ? ipv6Underlay(underlay).prefixLength : underlay.prefixLength;
  for (let i = 0; i < meta.etcdMembers; i++) {
    const ns = etcdNetns(cluster, i);
    addNetns(ns);
    if (family === 6) mustRun(['ip', 'netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']);
    mustRun(['ip', '-n', fabric, 'link', 'add', etcdFabricPort(i), 'mtu', mtu, 'type', 'veth', 'peer', 'name', UNDERLAY_IF, 'netns', ns, 'mtu', mtu]);
    mustRun(['ip', '-n', fabric, 'link', 'set', etcdFabricPort(i), 'master', FABRIC_BRIDGE, 'up']);
    mustRun(['ip', '-n', ns, 'addr', 'add', `${address(i)}/${prefix}`, 'dev', UNDERLAY_IF, ...(family === 6 ? ['nodad'] : [])]);
    mustRun(['ip', '-n', ns, 'link', 'set', UNDERLAY_IF, 'up']);
  }
  const etcd = await EtcdCluster.start({ // its network URLs are labAgentEtcdEndpoints(meta)
    members: meta.etcdMembers, auth: meta.etcdAuth === true,
    lab: { dir: labEtcdDir(cluster), netns: (i) => etcdNetns(cluster, i), address: (i) => urlHost(address(i)), spawned: (m, pid) => registerPid(cluster, etcdPidName(m.name), pid) },
  });
  const admin = etcd.auth ? { username: 'root', passwordFile: etcd.auth.rootPasswordFile } : {};
  saveClusterEntry({ name: cluster, registry: { type: 'etcd', endpoints: etcd.endpoints, ...admin } });
  return etcd;
}

/** Removes the cluster config's entry for this lab's etcd (an entry of that name elsewhere stays). */
function forgetLabEtcd(cluster: string): void {
  const entry = loadClusterConfig().clusters.find((c) => c.name === cluster);
  if (entry?.registry.type === 'etcd' && entry.registry.endpoints.every((e) => e.startsWith(`unix://${labEtcdDir(cluster)}/`))) removeClusterEntry(cluster);
}

export interface LabDownResult {
  cluster: string;
  namespaces: string[];
  processes: number[];
  removedDir: boolean;
}

/**
 * Removes everything of the cluster, whatever state it is in: registered processes (by PID),
 * processes still inside its namespaces, the namespaces (found by name prefix, not only from
 * state), its directory, and current-cluster if it names it. Idempotent.
 */
export async function labDown(cluster: string): Promise<LabDownResult> {
  checkClusterName(cluster);
  preflight('veil lab down');
  const processes = await stopRegisteredProcesses(cluster);
  const prefix = netnsPrefix(cluster);
  const fabric = fabricNetns(cluster);
  // pods first, the fabric last: nothing is ever left dangling from a namespace that is gone
  const namespaces = listNetns().filter((ns) => ns.startsWith(prefix))
    .sort((a, b) => rank(a) - rank(b));
  function rank(ns: string): number {
    return ns.startsWith(`${prefix}pod_`) ? 0 : ns === fabric ? 2 : 1;
  }
  const stray = namespaces.flatMap(netnsPids);
  processes.push(...await stopProcesses(stray));
  for (const ns of namespaces) deleteNetns(ns);

  const dir = clusterDir(cluster);
  const removedDir = existsSync(dir);
  rmSync(dir, { recursive: true, force: true });
  try { rmdirSync(dirname(dir)); } catch { /* other clusters still there */ }
  const cur = currentClusterFile();
  if (existsSync(cur) && readFileSync(cur, 'utf8').trim() === cluster) rmSync(cur, { force: true });
  forgetLabEtcd(cluster);
  return { cluster, namespaces, processes, removedDir };
}
