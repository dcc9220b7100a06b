// Lab pods, CNI ptp style: the pod's own namespace, a veth to its node (pod side eth0 with a /32,
// node side veil<hash> carrying the node's pod gateway .1/32), a /32 route per pod on the node,
// and in the pod `default via <gateway> dev eth0 onlink`. In a dual-stack lab the same again for
// IPv6 (/128s, the node's IPv6 pod gateway), without duplicate address detection: usable at once;
// in an IPv6-only lab the IPv6 addresses alone.
import { spawnSync } from 'node:child_process';
import { constants } from 'node:os';
import { VeilError } from '../util/errors.js';
import { mustRun } from '../util/exec.js';
import { openRegistry } from '../control/cluster.js';
import type { Registry, RegistryObject } from '../control/registry.js';
import { allocatePodIP, podIpv6 } from './addressing.js';
import { POD_IF, checkPodName, podHostInterface, podNetns } from './names.js';
import { addNetns, deleteNetns, netnsExists, netnsPids } from './netns.js';
import { preflight } from './preflight.js';
import { stopProcesses } from './pids.js';
import { nodeSpec, podSpec, type PodSpec } from './objects.js';

async function getNode(reg: Registry, cluster: string, node: string): Promise<RegistryObject> {
  const obj = await reg.get('Node', node);
  if (!obj) throw new VeilError('UNKNOWN_NODE', `node '${node}' not found in lab cluster '${cluster}'`, `see the nodes with 'veil lab get nodes --cluster ${cluster}'`);
  return obj;
}

/** Claims the lowest free pod IP on the node: the pod object is the reservation, the oldest wins. */
async function reservePod(reg: Registry, cluster: string, name: string, node: string, partial: Omit<PodSpec, 'podIP'>): Promise<RegistryObject> {
  const cidr = nodeSpec(await getNode(reg, cluster, node)).podCIDR;
  for (;;) {
    const others = (await reg.list('Pod')).filter((p) => podSpec(p).node === node);
    const podIP = allocatePodIP(cidr, others.map((p) => podSpec(p).podIP));
    let mine: RegistryObject;
    try {
      mine = await reg.create({ kind: 'Pod', metadata: { name }, spec: { ...partial, podIP }, status: { phase: 'Pending' } });
    } catch (e) {
      if (e instanceof VeilError && e.code === 'ALREADY_EXISTS') {
        throw new VeilError('POD_EXISTS', `pod '${name}' already exists in lab cluster '${cluster}'`, `delete it first with 'veil lab pod delete ${name}', or pick another name`);
      }
      throw e;
    }
    const clash = (await reg.list('Pod')).some((p) => p.metadata.name !== name && podSpec(p).node === node && podSpec(p).podIP === podIP
      && (p.metadata.resourceVersion ?? 0) < (mine.metadata.resourceVersion ?? 0));
    if (!clash) return mine;
    await reg.delete('Pod', name); // someone claimed that address first: try the next one
  }
}

/** Creates pod `name` on `node`; on failure leaves nothing behind. */
export async function createPod(cluster: string, name: string, node: string): Promise<RegistryObject> {
  preflight('veil lab pod create');
  checkPodName(name);
  const reg = openRegistry(cluster);
  try {
    const n = nodeSpec(await getNode(reg, cluster, node));
    const ns = podNetns(cluster, name);
    const hostIf = podHostInterface(name);
    const pod = await reservePod(reg, cluster, name, node, { node, netns: ns, hostInterface: hostIf, gateway: n.podGateway });
    const { podIP } = podSpec(pod);
    const podIP6 = n.podCIDRs?.[1] && n.podGateway6 ? podIpv6(n.podCIDR, n.podCIDRs[1], podIP) : undefined;
    // [pod address, its gateway] per family: the first is the node's podCIDR's (IPv6 in an IPv6-only lab)
    const families: [string, string][] = [[podIP, n.podGateway], ...(podIP6 ? [[podIP6, n.podGateway6!] as [string, string]] : [])];
    try {
      deleteNetns(ns); // a leftover of a crashed create of the same name
      addNetns(ns);
      if (families.some(([ip]) => ip.includes(':'))) mustRun(['ip', 'netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']);
      const mtu = String(n.mtu);
      mustRun(['ip', '-n', n.netns, 'link', 'add', hostIf, 'mtu', mtu, 'type', 'veth', 'peer', 'name', POD_IF, 'netns', ns, 'mtu', mtu]);
      mustRun(['ip', '-n', n.netns, 'link', 'set', hostIf, 'up']);
      mustRun(['ip', '-n', ns, 'link', 'set', POD_IF, 'up']);
      for (const [ip, gateway] of families) {
        const [host, v6] = ip.includes(':') ? ['/128', ['nodad']] : ['/32', []];
        mustRun(['ip', '-n', n.netns, 'addr', 'add', `${gateway}${host}`, 'dev', hostIf, ...v6]);
        mustRun(['ip', '-n', n.netns, 'route', 'replace', `${ip}${host}`, 'dev', hostIf]);
        mustRun(['ip', '-n', ns, 'addr', 'add', `${ip}${host}`, 'dev', POD_IF, ...v6]);
        mustRun(['ip', '-n', ns, 'route', 'add', 'default', 'via', gateway, 'dev', POD_IF, 'onlink']);
      }
      const podIPs = podIP6 ? [podIP, podIP6] : undefined;
      return (await reg.mutate('Pod', name, (cur) => cur && {
        ...cur, spec: podIPs ? { ...cur.spec, podIPs } : cur.spec, status: { phase: 'Running', podIP, ...(podIPs ? { podIPs } : {}), hostIP: n.internalIP },
      }))!;
    } catch (e) {
      deleteNetns(ns); // takes the veth (both ends) and the node's /32 route with it
      await reg.delete('Pod', name);
      throw e;
    }
  } finally {
    reg.close();
  }
}

/** Deletes pod `name`: stops what runs in it, removes its namespace (and veth) and its object. */
export async function deletePod(cluster: string, name: string): Promise<void> {
  preflight('veil lab pod delete');
  checkPodName(name);
  const reg = openRegistry(cluster);
  try {
    const obj = await reg.get('Pod', name);
    const ns = obj ? podSpec(obj).netns : podNetns(cluster, name);
    if (!obj && !netnsExists(ns)) {
      throw new VeilError('UNKNOWN_POD', `pod '${name}' not found in lab cluster '${cluster}'`, `see the pods with 'veil lab get pods --cluster ${cluster}'`);
    }
    await stopProcesses(netnsPids(ns));
    deleteNetns(ns);
    await reg.delete('Pod', name);
  } finally {
    reg.close();
  }
}

/** Runs argv in a namespace with the caller's stdio; returns its exit status (128+n on signal n). */
export function execInNetns(ns: string, argv: string[]): number {
  if (!argv.length) throw new VeilError('BAD_FLAG', 'no command given', "put it after '--', e.g. -- ping -c 1 10.244.1.2");
  const r = spawnSync('ip', ['netns', 'exec', ns, ...argv], { stdio: 'inherit' });
  if (r.error) throw new VeilError('EXEC_FAILED', `could not run ${argv[0]} in ${ns}: ${r.error.message}`);
  if (r.signal) return 128 + (constants.signals[r.signal] ?? 1);
  return r.status ?? 1;
}

export async function execInPod(cluster: string, pod: string, argv: string[]): Promise<number> {
  preflight('veil lab exec');
  const reg = openRegistry(cluster);
  let obj: RegistryObject | undefined;
  try { obj = await reg.get('Pod', checkPodName(pod)); } finally { reg.close(); }
  if (!obj) throw new VeilError('UNKNOWN_POD', `pod '${pod}' not found in lab cluster '${cluster}'`, `see the pods with 'veil lab get pods --cluster ${cluster}'`);
  return execInNetns(podSpec(obj).netns, argv);
}

export async function execOnNode(cluster: string, node: string, argv: string[]): Promise<number> {
  preflight('veil lab node-exec');
  const reg = openRegistry(cluster);
  let obj: RegistryObject;
  try { obj = await getNode(reg, cluster, node); } finally { reg.close(); }
  return execInNetns(nodeSpec(obj).netns, argv);
}
