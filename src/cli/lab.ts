// veil lab: the local cluster of network namespaces. Argument parsing and printing only; the work
// is in src/lab/.
import { parseArgs } from 'node:util';
import { printStructured } from './output.js';
import { table } from '../util/text-table.js';
import { VeilError } from '../util/errors.js';
import { currentCluster, openRegistry } from '../control/cluster.js';
import type { RegistryObject } from '../control/registry.js';
import { LAB_DEFAULTS, labDown, labUp } from '../lab/lifecycle.js';
import { createPod, deletePod, execInPod, execOnNode } from '../lab/pods.js';
import { formatAge, nodeReady, nodeRoles, nodeSpec, podSpec } from '../lab/objects.js';
import { listNetns } from '../lab/netns.js';

const HELP: Record<string, string> = {
  '': `veil lab: a local cluster of network namespaces (like kind)

Usage: veil lab <command> [flags]

Commands:
  up          create a cluster (nodes, underlay, plaintext pod routing)
  down        remove a cluster and everything it started
  get         list nodes or pods (kubectl style)
  pod         create or delete a pod
  exec        run a command in a pod
  node-exec   run a command on a node

Run 'veil lab <command> -h' for its flags and examples.`,
  up: `Usage: veil lab up [--name kind] [--nodes 4] [--mtu 1500] [--underlay-subnet 172.18.0.0/16] [--pod-cidr 10.244.0.0/16]

Creates nodes <name>-control-plane, <name>-worker, <name>-worker2, ... Each node is a network
namespace with eth0 on a shared bridge; node i gets the (i+2)-th address of the underlay subnet and
the i-th /24 of the pod CIDR (control-plane 10.244.0.0/24, worker 10.244.1.0/24, ...).

Examples:
  veil lab up
  veil lab up --name demo --nodes 2 --mtu 9000 --underlay-subnet 172.30.0.0/24 --pod-cidr 10.30.0.0/16`,
  down: `Usage: veil lab down [--name NAME]

Removes the cluster (default: the current one): stops its processes, deletes its namespaces and
its state. Safe to re-run, also after a crash or a half-finished 'up'.

Examples:
  veil lab down
  veil lab down --name demo`,
  get: `Usage: veil lab get nodes|pods [-o wide|json|yaml] [--cluster NAME]

A node is Ready while a veil agent on it reports ready (heartbeat younger than 30 s).

Examples:
  veil lab get nodes
  veil lab get pods -o wide
  veil lab get nodes -o json`,
  pod: `Usage: veil lab pod create NAME --node NODE [--cluster NAME]
       veil lab pod delete NAME [--cluster NAME]

A pod is a namespace with a veth to its node, an address from the node's pod CIDR and a default
route via the node.

Examples:
  veil lab pod create pod-worker --node kind-worker
  veil lab pod delete pod-worker`,
  exec: `Usage: veil lab exec POD [--cluster NAME] -- CMD [ARGS...]

Runs CMD inside the pod's namespace; exits with CMD's status.

Examples:
  veil lab exec pod-worker -- ping -c 3 10.244.2.2
  veil lab exec pod-worker -- ip addr`,
  'node-exec': `Usage: veil lab node-exec NODE [--cluster NAME] -- CMD [ARGS...]

Runs CMD inside the node's namespace; exits with CMD's status.

Examples:
  veil lab node-exec kind-worker -- tcpdump -ni eth0 icmp
  veil lab node-exec kind-control-plane -- ip route`,
};

function help(cmd: string): number {
  console.log(HELP[cmd] ?? HELP['']);
  return 0;
}

function wantsHelp(args: string[]): boolean {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).some((a) => a === '-h' || a === '--help');
}

export async function run(args: string[]): Promise<number> {
  const [cmd, ...rest] = args;
  if (!cmd || cmd === '-h' || cmd === '--help' || cmd === 'help') return help('');
  if (!(cmd in HELP)) {
    throw new VeilError('BAD_FLAG', `unknown lab command '${cmd}'`, "run 'veil lab -h' for the list");
  }
  if (wantsHelp(rest)) return help(cmd);
  switch (cmd) {
    case 'up': return up(rest);
    case 'down': return down(rest);
    case 'get': return get(rest);
    case 'pod': return pod(rest);
    case 'exec':
    case 'node-exec': return exec(cmd, rest);
  }
  return help('');
}

function intFlag(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new VeilError('BAD_FLAG', `${flag} must be a whole number, not '${v}'`, `run 'veil lab up -h' for examples`);
  return Number(v);
}

async function up(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args, strict: true, allowPositionals: false,
    options: {
      name: { type: 'string' }, nodes: { type: 'string' }, mtu: { type: 'string' },
      'underlay-subnet': { type: 'string' }, 'pod-cidr': { type: 'string' },
    },
  });
  const meta = await labUp({
    name: values.name ?? LAB_DEFAULTS.name,
    nodes: intFlag('--nodes', values.nodes),
    mtu: intFlag('--mtu', values.mtu),
    underlaySubnet: values['underlay-subnet'],
    podCIDR: values['pod-cidr'],
  });
  console.log(`Lab cluster '${meta.name}' is up: ${meta.nodes} nodes, underlay ${meta.underlaySubnet} (MTU ${meta.mtu}), pods ${meta.podCIDR}.`);
  console.log(`Next: 'veil lab get nodes', 'veil lab pod create NAME --node ${meta.name}-worker'.`);
  return 0;
}

async function down(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, strict: true, allowPositionals: false, options: { name: { type: 'string' }, cluster: { type: 'string' } } });
  const cluster = currentCluster(values.name ?? values.cluster);
  const r = await labDown(cluster);
  if (!r.namespaces.length && !r.removedDir && !r.processes.length) {
    console.log(`Lab cluster '${cluster}': nothing to remove.`);
  } else {
    console.log(`Lab cluster '${cluster}' removed (${r.namespaces.length} namespaces, ${r.processes.length} processes stopped).`);
  }
  return 0;
}

function outputFlag(v: string | undefined): 'table' | 'wide' | 'json' | 'yaml' {
  if (v === undefined) return 'table';
  if (v === 'wide' || v === 'json' || v === 'yaml') return v;
  throw new VeilError('BAD_FLAG', `unsupported output format '${v}'`, 'use -o wide, -o json or -o yaml');
}

async function get(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, strict: true, allowPositionals: true,
    options: { output: { type: 'string', short: 'o' }, cluster: { type: 'string' } },
  });
  const what = positionals[0];
  const kind = what && ['nodes', 'node', 'no'].includes(what) ? 'Node' : what && ['pods', 'pod', 'po'].includes(what) ? 'Pod' : undefined;
  if (!kind || positionals.length > 1) throw new VeilError('BAD_FLAG', `expected 'nodes' or 'pods', got '${positionals.join(' ')}'`, 'e.g. veil lab get nodes');
  const out = outputFlag(values.output);
  const cluster = currentCluster(values.cluster);
  const reg = openRegistry(cluster);
  let items: RegistryObject[];
  try { items = await reg.list(kind); } finally { reg.close(); }
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
      rows.push([n.metadata.name, nodeReady(n, now) ? 'Ready' : 'NotReady', nodeRoles(n), formatAge(n.metadata.creationTimestamp, now), s.internalIP, s.podCIDR]);
    }
  } else {
    const live = new Set(listNetns());
    rows.push(['NAME', 'READY', 'STATUS', 'AGE', ...(out === 'wide' ? ['IP', 'NODE'] : [])]);
    for (const p of items) {
      const s = podSpec(p);
      const phase = String(p.status?.['phase'] ?? 'Unknown');
      const running = phase === 'Running' && live.has(s.netns);
      rows.push([p.metadata.name, running ? '1/1' : '0/1', running || phase !== 'Running' ? phase : 'Unknown',
        formatAge(p.metadata.creationTimestamp, now), ...(out === 'wide' ? [s.podIP, s.node] : [])]);
    }
  }
  console.log(table(rows));
  return 0;
}

async function pod(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, strict: true, allowPositionals: true,
    options: { node: { type: 'string' }, cluster: { type: 'string' } },
  });
  const [action, name, ...extra] = positionals;
  if (!name || extra.length || (action !== 'create' && action !== 'delete')) {
    throw new VeilError('BAD_FLAG', `expected 'pod create NAME --node NODE' or 'pod delete NAME'`, "run 'veil lab pod -h' for examples");
  }
  const cluster = currentCluster(values.cluster);
  if (action === 'create') {
    if (!values.node) throw new VeilError('BAD_FLAG', 'pod create needs --node', `e.g. veil lab pod create ${name} --node ${cluster}-worker`);
    const p = await createPod(cluster, name, values.node);
    console.log(`pod/${name} created on ${values.node} with IP ${podSpec(p).podIP}`);
  } else {
    if (values.node) throw new VeilError('BAD_FLAG', 'pod delete takes no --node', `e.g. veil lab pod delete ${name}`);
    await deletePod(cluster, name);
    console.log(`pod/${name} deleted`);
  }
  return 0;
}

async function exec(cmd: 'exec' | 'node-exec', args: string[]): Promise<number> {
  const sep = args.indexOf('--');
  if (sep < 0) throw new VeilError('BAD_FLAG', `no command given`, `put it after '--', e.g. veil lab ${cmd} ${cmd === 'exec' ? 'POD' : 'NODE'} -- ip addr`);
  const { values, positionals } = parseArgs({ args: args.slice(0, sep), strict: true, allowPositionals: true, options: { cluster: { type: 'string' } } });
  if (positionals.length !== 1) throw new VeilError('BAD_FLAG', `expected one ${cmd === 'exec' ? 'pod' : 'node'} name before '--'`, `run 'veil lab ${cmd} -h' for examples`);
  const cluster = currentCluster(values.cluster);
  const argv = args.slice(sep + 1);
  return cmd === 'exec' ? execInPod(cluster, positionals[0]!, argv) : execOnNode(cluster, positionals[0]!, argv);
}
