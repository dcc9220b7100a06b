// veil capture NODE: tcpdump in a node's namespace, on its underlay (eth0) or its tunnel device.
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { currentCluster, openRegistry } from '../control/cluster.js';
import { TUNNEL_DEVICES } from '../agent/installer.js';
import { nodeSpec } from '../lab/objects.js';
import { registerPid, unregisterPid } from '../lab/pids.js';
import { preflight } from '../lab/preflight.js';
import { run as runCommand } from '../util/exec.js';
import { VeilError } from '../util/errors.js';
import { command, UsageError } from './flags.js';
import { findNode, nodeName } from './node-arg.js';

/** The node's tunnel device: whichever of veil_wg0 / veil_ipsec0 exists. */
function tunnelDevice(netns: string, node: string): string {
  for (const dev of TUNNEL_DEVICES) if (runCommand(['ip', '-n', netns, 'link', 'show', dev]).status === 0) return dev;
  throw new VeilError('NO_TUNNEL', `node ${node} has no tunnel device (${TUNNEL_DEVICES.join(' or ')})`, "is encryption installed? ('veil status'); capture the underlay with --iface underlay");
}

export const { run } = command({
  name: 'veil capture',
  usage: ['veil capture NODE [--iface underlay|tunnel] [-c N] [-w FILE] [FILTER...]'],
  about: `Runs tcpdump -n in NODE's network namespace: on the underlay (eth0, what the wire between nodes
carries: WireGuard or ESP when encrypted) or on the tunnel device (veil_wg0 / veil_ipsec0: the
pod packets before encryption). Stops after N packets, or on Ctrl-C. 'veil lab down' stops
captures left running. FILTER... is a pcap filter, e.g. icmp, 'udp port 51871', esp; without one, the
underlay capture shows everything but the agents' etcd traffic ('not tcp port 2379').`,
  positionals: true,
  flags: {
    iface: { type: 'string', value: 'WHICH', choices: ['underlay', 'tunnel'], default: 'underlay', help: 'underlay (default) or tunnel' },
    count: { type: 'string', short: 'c', value: 'N', help: 'stop after N packets' },
    write: { type: 'string', short: 'w', value: 'FILE', help: 'write a pcap file instead of printing (read it with tshark -r FILE)' },
    hex: { type: 'boolean', short: 'X', help: 'print payloads in hex and ASCII' },
  },
  examples: [
    'veil capture kind-worker -c 5 icmp',
    'veil capture kind-worker --iface tunnel -c 4 icmp',
    "veil capture kind-worker -c 10 -w /tmp/underlay.pcap 'udp port 4500'",
  ],
  async run({ values, positionals }) {
    const [first, ...filter] = positionals;
    const node = nodeName(first, 'veil capture kind-worker -c 5 icmp');
    if (values.count !== undefined && !/^[1-9]\d*$/.test(values.count)) throw new UsageError(`-c must be a positive number, not '${values.count}'`, "e.g. 'veil capture kind-worker -c 5 icmp'");
    preflight('veil capture');
    runCommand(['tcpdump', '--version']); // a missing tcpdump is a clear error naming the package
    const cluster = currentCluster(values.cluster);
    const reg = openRegistry(cluster);
    let netns: string, iface: string;
    try {
      const obj = await findNode(reg, node);
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
    // the agents' etcd traffic crosses a lab node's underlay too: left out unless a filter asks for it
    argv.push(...(filter.length || values.iface === 'tunnel' ? filter : ['not', 'tcp', 'port', '2379']));
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
  },
});
