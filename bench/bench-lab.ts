// The bench's 2-node lab and its modes: plain routing, Debian's wireguard-go on both nodes
// (configured with `wg`, same MTU and routes as veil), veil WireGuard and veil IPsec (ESP in UDP, and raw ESP). A mode is
// set up, measured, and torn down again, so that rounds can interleave the modes.
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../src/util/exec.js';
import { listPids, isRecordedProcessAlive } from '../src/lab/pids.js';
import { exec, mustExec, sleep, startChild, stopChild } from './proc.js';

export const MODES = ['plain', 'wireguard-go', 'veil-wireguard', 'veil-ipsec', 'veil-ipsec-esp'] as const;
export type Mode = (typeof MODES)[number];

const MAIN_JS = resolve(dirname(fileURLToPath(import.meta.url)), '../src/cli/main.js');
/** Same MTU for wireguard-go as veil WireGuard uses (underlay 1500 - 80). */
const WG_GO_MTU = 1420;
const WG_GO_PORT = 51900;

export interface LabNode {
  name: string;
  netns: string;
  internalIP: string;
  podCIDR: string;
}

export interface LabPod {
  name: string;
  netns: string;
  ip: string;
}

/** A lab's own underlay and pod subnets, so that several labs can be up at once (the interleaved latency bench). */
export interface LabSubnets {
  underlay: string;
  pods: string;
}

/** Lab i's subnets: 172.18+i.0.0/16 and 10.244+i.0.0/16 (lab 0 has `veil lab up`'s defaults). */
export function benchLabSubnets(i: number): LabSubnets {
  if (!(Number.isInteger(i) && i >= 0 && i < 10)) throw new Error(`bench lab index ${i}: 0 to 9`);
  return { underlay: `172.${18 + i}.0.0/16`, pods: `10.${244 + i}.0.0/16` };
}

export interface ActiveMode {
  mode: Mode;
  /** Processes that move the packets (agents or wireguard-go), for CPU and memory. */
  datapathPids: number[];
  teardown(): Promise<void>;
}

export class BenchLab {
  nodes: LabNode[] = [];
  /** pods[0] on the first node (client), pods[1] on the second (server). */
  pods: LabPod[] = [];
  private up = false;

  /**
   * cryptoThreads: veil's datapath.cryptoThreads for both veil modes (undefined: the default).
   * subnets: the lab's own (undefined: `veil lab up`'s defaults).
   */
  constructor(readonly cluster: string, readonly home: string, readonly cryptoThreads?: number, readonly subnets?: LabSubnets) {}

  private veil(args: string[], timeoutMs = 180_000): Promise<string> {
    return mustExec([process.execPath, MAIN_JS, ...args], timeoutMs, { ...process.env, VEIL_HOME: this.home });
  }

  async create(): Promise<void> {
    this.up = true;
    const subnets = this.subnets ? ['--underlay-subnet', this.subnets.underlay, '--pod-cidr', this.subnets.pods] : [];
    await this.veil(['lab', 'up', '--name', this.cluster, '--nodes', '2', ...subnets]);
    const nodes = JSON.parse(await this.veil(['lab', 'get', 'nodes', '-o', 'json', '--cluster', this.cluster])) as { items: { metadata: { name: string }; spec: Record<string, string> }[] };
    this.nodes = nodes.items.map((n) => ({ name: n.metadata.name, netns: n.spec['netns']!, internalIP: n.spec['internalIP']!, podCIDR: n.spec['podCIDR']! }));
    for (const [i, node] of this.nodes.entries()) {
      const name = i === 0 ? 'bench-client' : 'bench-server';
      await this.veil(['lab', 'pod', 'create', name, '--node', node.name, '--cluster', this.cluster]);
    }
    const pods = JSON.parse(await this.veil(['lab', 'get', 'pods', '-o', 'json', '--cluster', this.cluster])) as { items: { metadata: { name: string }; spec: Record<string, string> }[] };
    this.pods = ['bench-client', 'bench-server'].map((n) => {
      const p = pods.items.find((x) => x.metadata.name === n)!;
      return { name: n, netns: p.spec['netns']!, ip: p.spec['podIP']! };
    });
  }

  async destroy(): Promise<void> {
    if (!this.up) return;
    this.up = false;
    await this.veil(['uninstall', '--cluster', this.cluster]).catch(() => undefined);
    await this.veil(['lab', 'down', '--name', this.cluster]).catch((e) => console.error(`lab down failed: ${String(e)}`));
  }

  async activate(mode: Mode, workDir: string): Promise<ActiveMode> {
    switch (mode) {
      case 'plain': return { mode, datapathPids: [], teardown: async () => undefined };
      case 'wireguard-go': return this.startWireGuardGo(workDir);
      case 'veil-wireguard': return this.installVeil(mode, ['--encryption', 'wireguard']);
      case 'veil-ipsec': return this.installVeil(mode, ['--encryption', 'ipsec', '--generate-key']);
      // raw ESP (IP protocol 50), as Cilium's nodes send it
      case 'veil-ipsec-esp': return this.installVeil(mode, ['--encryption', 'ipsec', '--generate-key', '--set', 'encryption.ipsec.encapsulation=esp']);
    }
  }

  private async installVeil(mode: Mode, flags: string[]): Promise<ActiveMode> {
    const threads = this.cryptoThreads === undefined ? [] : ['--set', `datapath.cryptoThreads=${this.cryptoThreads}`];
    await this.veil(['install', ...flags, ...threads, '--cluster', this.cluster]);
    const pids = listPids(this.cluster).filter((r) => r.name.startsWith('agent-') && isRecordedProcessAlive(r)).map((r) => r.pid);
    return {
      mode, datapathPids: pids,
      teardown: async () => { await this.veil(['uninstall', '--cluster', this.cluster]); },
    };
  }

  /** wireguard-go in the foreground on each node (the bench owns the pids), then `wg set`. */
  private async startWireGuardGo(workDir: string): Promise<ActiveMode> {
    const devs = this.nodes.map((_, i) => `veil-bw${this.cluster.slice(-4)}${i}`.slice(0, 15));
    const children: ChildProcess[] = [];
    const restore = async () => {
      for (const c of children) await stopChild(c);
      for (const [i, n] of this.nodes.entries()) {
        const other = this.nodes[1 - i]!;
        run(['ip', '-n', n.netns, 'route', 'replace', other.podCIDR, 'via', other.internalIP, 'dev', 'eth0']);
      }
    };
    try {
      const keys = this.nodes.map((_, i) => {
        const priv = run(['wg', 'genkey']).stdout.trim();
        const file = join(workDir, `wg-go-${this.cluster}-${i}.key`); // labs up at once share workDir
        writeFileSync(file, priv + '\n', { mode: 0o600 });
        return { file, pub: run(['wg', 'pubkey'], { input: priv + '\n' }).stdout.trim() };
      });
      for (const [i, n] of this.nodes.entries()) {
        children.push(startChild(['ip', 'netns', 'exec', n.netns, 'wireguard-go', '-f', devs[i]!]));
      }
      for (const [i, n] of this.nodes.entries()) {
        for (let t = 0; run(['ip', '-n', n.netns, 'link', 'show', devs[i]!]).status !== 0; t++) {
          if (t > 100) throw new Error(`wireguard-go did not create ${devs[i]} in ${n.netns}`);
          await sleep(50);
        }
      }
      for (const [i, n] of this.nodes.entries()) {
        const other = this.nodes[1 - i]!;
        await mustExec(['ip', 'netns', 'exec', n.netns, 'wg', 'set', devs[i]!, 'listen-port', String(WG_GO_PORT), 'private-key', keys[i]!.file,
          'peer', keys[1 - i]!.pub, 'endpoint', `${other.internalIP}:${WG_GO_PORT}`, 'allowed-ips', other.podCIDR]);
        await mustExec(['ip', '-n', n.netns, 'link', 'set', devs[i]!, 'mtu', String(WG_GO_MTU), 'up']);
        await exec(['ip', 'netns', 'exec', n.netns, 'sysctl', '-q', '-w', `net.ipv4.conf.${devs[i]!.replace(/\./g, '/')}.rp_filter=0`]);
        await mustExec(['ip', '-n', n.netns, 'route', 'replace', other.podCIDR, 'dev', devs[i]!]);
      }
    } catch (e) {
      await restore();
      throw e;
    }
    return { mode: 'wireguard-go', datapathPids: children.map((c) => c.pid!), teardown: restore };
  }
}
