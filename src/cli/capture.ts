// veil capture NODE: tcpdump in a node's namespace, on its underlay (eth0) or its tunnel device.
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { currentCluster, openRegistry } from '../control/cluster.js';
import { TUNNEL_DEVICES } from '../agent/installer.js';
import { nodeSpec } from '../lab/objects.js';
import { registerPid, unregisterPid } from '../lab/pids.js';
import { preflight } from '../lab/preflight.js';
import { run as runCommand } from '../util/exec.js';
import { VeilError } from '../util/errors.js';

const HELP = `Usage: veil capture NODE [--iface underlay|tunnel] [-c N] [-w FILE] [FILTER...]

Runs tcpdump -n in NODE's network namespace: on the underlay (eth0, what the wire between nodes
carries: WireGuard or ESP when encrypted) or on the tunnel device (veil_wg0 / veil_ipsec0: the
pod packets before encryption). Stops after N packets, or on Ctrl-C. 'veil lab down' stops
captures left running.

Flags:
  --iface WHICH      underlay (default) or tunnel
  -c N               stop after N packets
  -w FILE            write a pcap file instead of printing (read it with tshark -r FILE)
  -X                 print payloads in hex and ASCII
  --cluster NAME     the cluster (default: the current one)
  FILTER...          a pcap filter, e.g. icmp, 'udp port 51871', esp

Examples:
  veil capture kind-worker -c 5 icmp
  veil capture kind-worker --iface tunnel -c 4 icmp
  veil capture kind-worker -c 10 -w /tmp/underlay.pcap 'udp port 4500'`;

/** The node's tunnel device: whichever of veil_wg0 / veil_ipsec0 exists. */
function tunnelDevice(netns: string, node: string): string {
  for (const dev of TUNNEL_DEVICES) if (runCommand(['ip', '-n', netns, 'link', 'show', dev]).status === 0) return dev;
  throw new VeilError('NO_TUNNEL', `node ${node} has no tunnel device (${TUNNEL_DEVICES.join(' or ')})`, "is encryption installed? ('veil status'); capture the underlay with --iface underlay");
}

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true,
    options: {
      iface: { type: 'string', default: 'underlay' }, count: { type: 'string', short: 'c' }, write: { type: 'string', short: 'w' },
      hex: { type: 'boolean', short: 'X' }, cluster: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { console.log(HELP); return 0; }
  const [node, ...filter] = positionals;
  if (!node) throw new VeilError('BAD_ARGS', 'which node?', "name one, e.g. 'veil capture kind-worker -c 5 icmp'");
  if (values.iface !== 'underlay' && values.iface !== 'tunnel') throw new VeilError('BAD_FLAG', `--iface must be underlay or tunnel, not '${values.iface}'`);
  if (values.count !== undefined && !/^[1-9]\d*$/.test(values.count)) throw new VeilError('BAD_FLAG', `-c must be a positive number, not '${values.count}'`);
  preflight('veil capture');
  runCommand(['tcpdump', '--version']); // a missing tcpdump is a clear error naming the package
  const cluster = currentCluster(values.cluster);
  const reg = openRegistry(cluster);
  let netns: string, iface: string;
  try {
    const obj = await reg.get('Node', node);
    if (!obj) throw new VeilError('UNKNOWN_NODE', `unknown node '${node}'`, "see the nodes with 'veil lab get nodes'");
    netns = nodeSpec(obj).netns;
    iface = values.iface === 'tunnel' ? tunnelDevice(netns, node) : nodeSpec(obj).underlayInterface;
  } finally {
    reg.close();
  }
  const argv = ['tcpdump', '-n', '-i', iface];
  if (values.count) argv.push('-c', values.count);
  if (values.hex) argv.push('-X');
  // -U: each packet reaches the file at once (a killed capture keeps what it saw); -Z root: write where asked.
  if (values.write) argv.push('-U', '-Z', 'root', '-w', resolve(values.write));
  else argv.push('-l');
  argv.push(...filter);
  const child = spawn('ip', ['netns', 'exec', netns, ...argv], { stdio: 'inherit' });
  const record = `capture-${node}-${process.pid}`;
  if (child.pid) registerPid(cluster, record, child.pid);
  // Ctrl-C reaches tcpdump too (same process group); let it finish its summary.
  const ignore = () => undefined;
  process.on('SIGINT', ignore);
  process.on('SIGTERM', () => child.kill('SIGTERM'));
  try {
    return await new Promise<number>((res, rej) => {
      child.on('error', (e) => rej(new VeilError('EXEC_FAILED', `could not start tcpdump: ${e.message}`)));
      child.on('exit', (code, signal) => res(signal ? (signal === 'SIGINT' || signal === 'SIGTERM' ? 0 : 1) : code ?? 1));
    });
  } finally {
    process.off('SIGINT', ignore);
    unregisterPid(cluster, record);
  }
}
