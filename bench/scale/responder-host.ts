// The scale bench's side of the answering synthetic WireGuard peers: a namespace of their own on
// the lab bridge (veil-<cluster>_synthetic, so `lab down` takes it and its process with the lab)
// that owns the synthetic underlay addresses (an AnyIP `local` route: the kernel answers ARP for
// them and sockets bind to them), and the responder process in it (wireguard-responder-process.ts),
// fed each synthetic node's private key before the node is published.
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { readFileSync } from 'node:fs';
import { statField } from '../../src/util/proc-stat.js';
import { mustRun } from '../../src/util/exec.js';
import { addNetns, deleteNetns } from '../../src/lab/netns.js';
import { FABRIC_BRIDGE, UNDERLAY_IF, fabricNetns } from '../../src/lab/names.js';
import { labNetnsPrefix } from '../../src/control/cluster.js';
import type { SyntheticKey } from './synthetic-nodes.js';
import type { ResponderCounts } from './wireguard-responder.js';

const PROCESS_JS = join(dirname(fileURLToPath(import.meta.url)), 'wireguard-responder-process.js');
/** The fabric end of the responder's veth. */
const FABRIC_PORT = 'veil-syn0';
/** The synthetic nodes' underlay addresses (172.18.100.2 upward: synthetic-nodes.ts), up to 20,000 of them. */
const SYNTHETIC_RANGES = ['172.18.96.0/19', '172.18.128.0/18'];
/** The namespace's own address (below the ranges): its route to the real nodes. */
const OWN_ADDRESS = '172.18.95.254/16';
/** USER_HZ, as agent-view.ts reads /proc. */
const CLOCK_TICKS_PER_SECOND = 100;

export class ResponderHost {
  private readonly waiting: ((line: string) => void)[] = [];

  private constructor(private readonly ns: string, private readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (line) => this.waiting.shift()?.(line));
  }

  /**
   * agents: each real agent's WireGuard public key (base64) and endpoint; nodeNetns: the real nodes'
   * namespaces; answer false: count only (silent peers).
   */
  static start(cluster: string, agents: { publicKey: string; address: string; port: number }[], nodeNetns: string[], answer: boolean): ResponderHost {
    const ns = `${labNetnsPrefix(cluster)}synthetic`;
    addNetns(ns);
    const fabric = fabricNetns(cluster);
    mustRun(['ip', '-n', fabric, 'link', 'add', FABRIC_PORT, 'type', 'veth', 'peer', 'name', UNDERLAY_IF, 'netns', ns]);
    mustRun(['ip', '-n', fabric, 'link', 'set', FABRIC_PORT, 'master', FABRIC_BRIDGE, 'up']);
    mustRun(['ip', 'netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.ip_nonlocal_bind=1', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0']);
    mustRun(['ip', '-n', ns, 'addr', 'add', OWN_ADDRESS, 'dev', UNDERLAY_IF]);
    mustRun(['ip', '-n', ns, 'link', 'set', UNDERLAY_IF, 'up']);
    for (const r of SYNTHETIC_RANGES) mustRun(['ip', '-n', ns, 'route', 'add', 'local', r, 'dev', UNDERLAY_IF]);
    // The real nodes reach the synthetic ones through this namespace's own address: one neighbour
    // entry, not one a peer. The kernel's ARP table is one for every namespace (gc_thresh3 1024 by
    // default): 5,000 entries overflow it and most packets to the synthetic peers would be dropped.
    for (const node of nodeNetns) for (const r of SYNTHETIC_RANGES) mustRun(['ip', '-n', node, 'route', 'add', r, 'via', OWN_ADDRESS.split('/')[0]!, 'dev', UNDERLAY_IF]);
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, PROCESS_JS], { stdio: ['pipe', 'pipe', 'inherit'] });
    const host = new ResponderHost(ns, child);
    host.write({ op: 'agents', agents, answer });
    return host;
  }

  private write(o: object): void {
    this.child.stdin!.write(JSON.stringify(o) + '\n');
  }

  private ask<T>(o: object): Promise<T> {
    return new Promise((resolve, reject) => {
      if (this.child.exitCode !== null) { reject(new Error(`the WireGuard responder exited (${this.child.exitCode})`)); return; }
      this.waiting.push((line) => resolve(JSON.parse(line) as T));
      this.write(o);
    });
  }

  /** The synthetic nodes answer with these keys from now on (resolves when their sockets are bound). */
  async set(keys: SyntheticKey[]): Promise<void> {
    await this.ask({ op: 'set', peers: keys.map((k) => ({ address: k.address, name: k.name, privateKey: Buffer.from(k.privateKey).toString('base64') })) });
  }

  counts(): Promise<ResponderCounts & { peers: number }> {
    return this.ask({ op: 'counts' });
  }

  /** CPU time of the responder process (µs, all its threads): reported beside the agent's, never in it. */
  cpuMicros(): number {
    const stat = readFileSync(`/proc/${this.child.pid}/stat`, 'utf8');
    return ((Number(statField(stat, 14)) + Number(statField(stat, 15))) * 1e6) / CLOCK_TICKS_PER_SECOND;
  }

  stop(): void {
    this.child.kill('SIGTERM');
    deleteNetns(this.ns);
  }
}
