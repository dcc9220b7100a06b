// veil lab: the local cluster of network namespaces. Argument parsing and printing only; the work
// is in src/lab/.
import { printStructured } from './output.js';
import { table } from '../util/text-table.js';
import { command, group, UsageError } from './flags.js';
import { currentCluster, openRegistry } from '../control/cluster.js';
import type { RegistryObject } from '../control/registry.js';
import { LAB_DEFAULTS, labDown, labUp } from '../lab/lifecycle.js';
import { ipv6PodRange, ipv6Underlay, parseLabSubnet, type LabIpFamily } from '../lab/addressing.js';
import { formatCidr } from '../net/cidr.js';
import { createPod, deletePod, execInPod, execOnNode } from '../lab/pods.js';
import { formatAge, nodeRoles, nodeSpec, podSpec } from '../lab/objects.js';
import { leasesByName } from '../agent/registry-node-source.js';
import { listNetns } from '../lab/netns.js';
import { agentCommand, agentLogPath, agentPidName, agentStopPostCommand, labNodeReady } from '../lab/agents.js';
import { superviseAgent } from '../lab/agent-supervisor.js';
import { nodeStateDir } from '../agent/state-paths.js';

const D = LAB_DEFAULTS;

function intFlag(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new UsageError(`${flag} must be a whole number, not '${v}'`, `run 'veil lab up -h' for examples`);
  return Number(v);
}

function etcdAuthFlag(on: boolean | undefined, off: boolean | undefined): boolean | undefined {
  if (on && off) throw new UsageError('--etcd-auth and --no-etcd-auth contradict each other', 'give one of them (auth is on by default)');
  return off ? false : on ? true : undefined;
}

const up = command({
  name: 'veil lab up',
  summary: 'create a cluster (nodes, underlay, plaintext pod routing)',
  usage: [`veil lab up [--name ${D.name}] [--nodes ${D.nodes}] [--mtu ${D.mtu}] [--underlay-subnet ${D.underlaySubnet}] [--pod-cidr ${D.podCIDR}] [--etcd-members 1|3] [--no-etcd-auth] [--ip-family ipv4|ipv6|dual [--underlay-family ipv4|ipv6]]`],
  about: `Creates nodes <name>-control-plane, <name>-worker, <name>-worker2, ... Each node is a network
namespace with eth0 on a shared bridge; node i gets the (i+2)-th address of the underlay subnet and
the i-th /24 of the pod CIDR (control-plane 10.244.0.0/24, worker 10.244.1.0/24, ...).
The control plane is a real etcd (1 or 3 members, namespaces <name>_etcd1...) at the top of the
underlay subnet (172.18.255.254, .253, ...); the agents reach it there, the CLI through its unix
sockets in the cluster's state dir (the cluster config records them).
etcd runs with auth: the CLI is etcd's root, and each node's agent logs in as its own user that may
write only that node's Node and Lease objects (see 'veil cluster node-user'), so etcd refuses a node
any other write. --no-etcd-auth turns auth off: then any process in a node's namespace can write
every object, and only the agents' peer admission (first claim kept) stands against a forged one.
--ip-family dual gives every node an IPv6 address beside its IPv4 one and a /64 IPv6 pod CIDR, and
every pod an IPv6 address, all derived from the IPv4 subnets: underlay fd12:<underlay network>::/64,
pods fd10:<pod network>:<node index>::/64 (worker of the defaults: fd10:af4:0:1::/64). The tunnels
run between the nodes' IPv4 addresses and carry both families; with --underlay-family ipv6 between
their IPv6 addresses (the control plane stays on IPv4).
--ip-family ipv6 gives nodes, pods and etcd those IPv6 addresses alone: no IPv4 address anywhere (the
IPv4 subnets only seed the IPv6 ones); the tunnels, etcd and the pods' traffic are IPv6.`,
  cluster: false,
  flags: {
    name: { type: 'string', value: 'NAME', help: `the cluster's name (default ${D.name})` },
    nodes: { type: 'string', value: 'N', help: `how many nodes (default ${D.nodes})` },
    mtu: { type: 'string', value: 'BYTES', help: `the MTU of the underlay (default ${D.mtu})` },
    'underlay-subnet': { type: 'string', value: 'CIDR', help: `the nodes' subnet (default ${D.underlaySubnet})` },
    'pod-cidr': { type: 'string', value: 'CIDR', help: `the pods' addresses, a /24 per node (default ${D.podCIDR})` },
    'etcd-members': { type: 'string', value: 'N', help: `the control plane's etcd members, 1 or 3 (default ${D.etcdMembers})` },
    'etcd-auth': { type: 'boolean', help: "etcd with auth, every node's agent as its own user that may write only its own Node and Lease (the default)" },
    'no-etcd-auth': { type: 'boolean', help: 'etcd without auth: any process on a node may write every object' },
    'ip-family': { type: 'string', value: 'ipv4|ipv6|dual', help: `the address families of nodes and pods (default ${D.ipFamily})` },
    'underlay-family': { type: 'string', value: 'ipv4|ipv6', help: `with --ip-family dual: the family of the tunnels between the nodes (default ${D.underlayFamily})` },
  },
  examples: ['veil lab up', 'veil lab up --name demo --nodes 2 --mtu 9000 --underlay-subnet 172.30.0.0/24 --pod-cidr 10.30.0.0/16'],
  async run({ values }) {
    const meta = await labUp({
      name: values.name ?? D.name,
      nodes: intFlag('--nodes', values.nodes),
      mtu: intFlag('--mtu', values.mtu),
      underlaySubnet: values['underlay-subnet'],
      podCIDR: values['pod-cidr'],
      etcdMembers: intFlag('--etcd-members', values['etcd-members']),
      etcdAuth: etcdAuthFlag(values['etcd-auth'], values['no-etcd-auth']),
      ipFamily: values['ip-family'] as LabIpFamily | undefined,
      underlayFamily: values['underlay-family'] as 'ipv4' | 'ipv6' | undefined,
    });
    const pods6 = formatCidr(ipv6PodRange(parseLabSubnet(meta.podCIDR)));
    const addressing = meta.ipFamily === 'ipv6'
      ? `IPv6 only: underlay ${formatCidr(ipv6Underlay(parseLabSubnet(meta.underlaySubnet)))} (MTU ${meta.mtu}), pods ${pods6}, a /64 per node`
      : `underlay ${meta.underlaySubnet} (MTU ${meta.mtu}), pods ${meta.podCIDR}${meta.ipFamily === 'dual' ? ` and IPv6 (dual stack: ${pods6}, a /64 per node; tunnels over ${meta.underlayFamily === 'ipv6' ? 'IPv6' : 'IPv4'})` : ''}`;
    console.log(`Lab cluster '${meta.name}' is up: ${meta.nodes} nodes, ${addressing}, etcd ${meta.etcdMembers === 1 ? '1 member' : `${meta.etcdMembers} members`}${meta.etcdAuth ? ' with auth (a user per node)' : ''}.`);
    console.log(`Next: 'veil lab get nodes', 'veil lab pod create NAME --node ${meta.name}-worker'.`);
    return 0;
  },
});

const down = command({
  name: 'veil lab down',
  summary: 'remove a cluster and everything it started',
  usage: ['veil lab down [--name NAME]'],
  about: `Removes the cluster (default: the current one): stops its processes, deletes its namespaces and
its state. Safe to re-run, also after a crash or a half-finished 'up'.`,
  flags: { name: { type: 'string', value: 'NAME', help: 'the cluster to remove (same as --cluster)' } },
  examples: ['veil lab down', 'veil lab down --name demo'],
  async run({ values }) {
    const cluster = currentCluster(values.name ?? values.cluster);
    const r = await labDown(cluster);
    if (!r.namespaces.length && !r.removedDir && !r.processes.length) {
      console.log(`Lab cluster '${cluster}': nothing to remove.`);
    } else {
      console.log(`Lab cluster '${cluster}' removed (${r.namespaces.length} namespaces, ${r.processes.length} processes stopped).`);
    }
    return 0;
  },
});

const get = command({
  name: 'veil lab get',
  summary: 'list nodes or pods (kubectl style)',
  usage: ['veil lab get nodes|pods [-o wide|json|yaml] [--cluster NAME]'],
  about: 'A node is Ready while a veil agent on it reports ready and holds its liveness lease (renewed every 5 s, lapses 15 s after the agent stops).',
  positionals: true,
  output: { choices: ['wide', 'json', 'yaml'] },
  examples: ['veil lab get nodes', 'veil lab get pods -o wide', 'veil lab get nodes -o json'],
  async run({ values, positionals }) {
    const what = positionals[0];
    const kind = what && ['nodes', 'node', 'no'].includes(what) ? 'Node' : what && ['pods', 'pod', 'po'].includes(what) ? 'Pod' : undefined;
    if (!kind || positionals.length > 1) throw new UsageError(`expected 'nodes' or 'pods', got '${positionals.join(' ')}'`, 'e.g. veil lab get nodes');
    const out = values.output ?? 'table';
    const cluster = currentCluster(values.cluster);
    const reg = openRegistry(cluster);
    let items: RegistryObject[];
    let leases: Map<string, RegistryObject>;
    let invalid: { key: string; reason: string }[];
    try { items = await reg.list(kind); leases = await leasesByName(reg); invalid = reg.invalidObjects?.() ?? []; } finally { reg.close(); }
    // garbage where an object should be: skipped, and named (on stderr: the list itself stays parseable)
    for (const o of invalid) console.error(`warning: ${o.key} is not a valid object, skipped: ${o.reason} (fix or delete it: etcdctl del ${o.key})`);
    if (out === 'json' || out === 'yaml') {
      printStructured({ apiVersion: 'v1', kind: 'List', items: items.map((o) => ({ apiVersion: 'v1', ...o })) }, out);
      return 0;
    }
    if (!items.length) {
      console.error(`No ${kind === 'Node' ? 'nodes' : 'pods'} in lab cluster '${cluster}'.`);
      return 0;
    }
    const now = Date.now();
    const rows: string[][] = [];
    if (kind === 'Node') {
      rows.push(['NAME', 'STATUS', 'ROLES', 'AGE', 'INTERNAL-IP', 'POD-CIDR']);
      for (const n of items) {
        const s = nodeSpec(n);
        rows.push([n.metadata.name, labNodeReady(cluster, n, leases.get(n.metadata.name)) ? 'Ready' : 'NotReady', nodeRoles(n), formatAge(n.metadata.creationTimestamp, now), (s.internalIPs ?? [s.internalIP]).join(','), (s.podCIDRs ?? [s.podCIDR]).join(',')]);
      }
    } else {
      const live = new Set(listNetns());
      rows.push(['NAME', 'READY', 'STATUS', 'AGE', ...(out === 'wide' ? ['IP', 'NODE'] : [])]);
      for (const p of items) {
        const s = podSpec(p);
        const phase = String(p.status?.['phase'] ?? 'Unknown');
        const running = phase === 'Running' && live.has(s.netns);
        rows.push([p.metadata.name, running ? '1/1' : '0/1', running || phase !== 'Running' ? phase : 'Unknown',
          formatAge(p.metadata.creationTimestamp, now), ...(out === 'wide' ? [(s.podIPs ?? [s.podIP]).join(','), s.node] : [])]);
      }
    }
    console.log(table(rows));
    return 0;
  },
});

const pod = command({
  name: 'veil lab pod',
  summary: 'create or delete a pod',
  usage: ['veil lab pod create NAME --node NODE [--cluster NAME]', 'veil lab pod delete NAME [--cluster NAME]'],
  about: `A pod is a namespace with a veth to its node, an address from the node's pod CIDR and a default
route via the node.`,
  positionals: true,
  flags: { node: { type: 'string', value: 'NODE', help: 'create: the node the pod runs on' } },
  examples: ['veil lab pod create pod-worker --node kind-worker', 'veil lab pod delete pod-worker'],
  async run({ values, positionals }) {
    const [action, name, ...extra] = positionals;
    if (!name || extra.length || (action !== 'create' && action !== 'delete')) {
      throw new UsageError(`expected 'pod create NAME --node NODE' or 'pod delete NAME'`, "run 'veil lab pod -h' for examples");
    }
    const cluster = currentCluster(values.cluster);
    if (action === 'create') {
      if (!values.node) throw new UsageError('pod create needs --node', `e.g. veil lab pod create ${name} --node ${cluster}-worker`);
      const p = await createPod(cluster, name, values.node);
      const ips = podSpec(p).podIPs ?? [podSpec(p).podIP];
      console.log(`pod/${name} created on ${values.node} with IP${ips.length > 1 ? 's' : ''} ${ips.join(', ')}`);
    } else {
      if (values.node) throw new UsageError('pod delete takes no --node', `e.g. veil lab pod delete ${name}`);
      await deletePod(cluster, name);
      console.log(`pod/${name} deleted`);
    }
    return 0;
  },
});

/** lab exec / node-exec: CMD after '--' runs in the pod's or the node's namespace. */
function execCommand(cmd: 'exec' | 'node-exec'): ReturnType<typeof command> {
  const what = cmd === 'exec' ? 'POD' : 'NODE';
  return command({
    name: `veil lab ${cmd}`,
    summary: cmd === 'exec' ? 'run a command in a pod' : 'run a command on a node',
    usage: [`veil lab ${cmd} ${what} [--cluster NAME] -- CMD [ARGS...]`],
    about: `Runs CMD inside the ${cmd === 'exec' ? "pod's" : "node's"} namespace; exits with CMD's status.`,
    positionals: true,
    passThrough: true,
    examples: cmd === 'exec'
      ? ['veil lab exec pod-worker -- ping -c 3 10.244.2.2', 'veil lab exec pod-worker -- ip addr']
      : ['veil lab node-exec kind-worker -- tcpdump -ni eth0 icmp', 'veil lab node-exec kind-control-plane -- ip route'],
    run({ values, positionals, rest }) {
      if (!rest) throw new UsageError('no command given', `put it after '--', e.g. veil lab ${cmd} ${what} -- ip addr`);
      if (positionals.length !== 1) throw new UsageError(`expected one ${what.toLowerCase()} name before '--'`, `run 'veil lab ${cmd} -h' for examples`);
      const cluster = currentCluster(values.cluster);
      return cmd === 'exec' ? execInPod(cluster, positionals[0]!, rest) : execOnNode(cluster, positionals[0]!, rest);
    },
  });
}

/** The supervisor of one node's agent (the lab starts it; not listed in the help). */
const supervise = command({
  name: 'veil lab supervise',
  usage: ['veil lab supervise NODE --cluster NAME'],
  about: "Runs NODE's agent and restarts it with a backoff when it dies (the lab's systemd). Started by 'veil install'.",
  positionals: true,
  examples: ['veil lab supervise kind-worker --cluster kind'],
  async run({ values, positionals }) {
    const node = positionals[0];
    if (!node || positionals.length > 1) throw new UsageError('expected one node name', 'e.g. veil lab supervise kind-worker --cluster kind');
    const cluster = currentCluster(values.cluster);
    process.title = `veil-supervisor-${node}`;
    return superviseAgent({
      cluster, node, nodeDir: nodeStateDir(cluster, node), command: () => agentCommand(cluster, node),
      logFile: agentLogPath(cluster, node), pidName: agentPidName(node), stopPost: () => agentStopPostCommand(cluster, node),
    });
  },
});

export const { run } = group({
  name: 'veil lab',
  about: 'veil lab: a local cluster of network namespaces (like kind)',
  commands: { up, down, get, pod, exec: execCommand('exec'), 'node-exec': execCommand('node-exec'), supervise: { ...supervise, hidden: true } },
});
