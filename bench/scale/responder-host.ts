// The scale bench's side of the answering synthetic peers: the responder process
// (responder-process.ts) in the synthetic nodes' namespace (synthetic-underlay.ts), which owns their
// addresses, fed each synthetic node's private key (WireGuard) or boot id (IPsec) before the node
// is published, and in IPsec the cluster's key file at the start and after a rotation.
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { readFileSync } from 'node:fs';
import { statField } from '../../src/util/proc-stat.js';
import type { SyntheticKey } from './synthetic-nodes.js';
import type { ResponderCounts } from './synthetic-responder.js';
import type { SyntheticUnderlay } from './synthetic-underlay.js';

const PROCESS_JS = join(dirname(fileURLToPath(import.meta.url)), 'responder-process.js');
/** USER_HZ, as agent-view.ts reads /proc. */
const CLOCK_TICKS_PER_SECOND = 100;

/** Whom the synthetic peers answer: the real agents as the mode knows them. */
export type ResponderAgents =
  | { mode: 'wireguard'; agents: { publicKey: string; address: string; port: number }[] }
  | { mode: 'ipsec'; agents: { address: string; bootId: string }[]; keys: string };

export class ResponderHost {
  private readonly waiting: ((line: string) => void)[] = [];

  private constructor(private readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (line) => this.waiting.shift()?.(line));
  }

  /**
   * WireGuard: agents are each real agent's public key (base64) and endpoint. IPsec: each real
   * agent's underlay address and boot id, and the cluster's key file. underlay: the synthetic
   * nodes' namespace; answer false: count only (silent peers).
   */
  static start(underlay: SyntheticUnderlay, peers: ResponderAgents, answer: boolean): ResponderHost {
    const child = spawn('ip', ['netns', 'exec', underlay.netns, process.execPath, PROCESS_JS], { stdio: ['pipe', 'pipe', 'inherit'] });
    const host = new ResponderHost(child);
    host.write({ op: 'agents', ...peers, answer });
    return host;
  }

  /** IPsec: the cluster's key file from now on (resolves with its key ids when the responder holds them). */
  async setKeys(keyFile: string): Promise<number[]> {
    return (await this.ask<{ spis: number[] }>({ op: 'keys', keys: keyFile })).spis;
  }

  private write(o: object): void {
    this.child.stdin!.write(JSON.stringify(o) + '\n');
  }

  private ask<T>(o: object): Promise<T> {
    return new Promise((resolve, reject) => {
      if (this.child.exitCode !== null) { reject(new Error(`the synthetic peers' responder exited (${this.child.exitCode})`)); return; }
      this.waiting.push((line) => resolve(JSON.parse(line) as T));
      this.write(o);
    });
  }

  /** The synthetic nodes answer with these keys from now on (resolves when their sockets are bound). */
  async set(keys: SyntheticKey[]): Promise<void> {
    await this.ask({ op: 'set', peers: keys.map((k) => ({ address: k.address, name: k.name, ...('privateKey' in k ? { privateKey: Buffer.from(k.privateKey).toString('base64') } : { bootId: k.bootId }) })) });
  }

  counts(): Promise<ResponderCounts & { peers: number; espDrops?: Record<string, number> }> {
    return this.ask({ op: 'counts' });
  }

  /** CPU time of the responder process (µs, all its threads): reported beside the agent's, never in it. */
  cpuMicros(): number {
    const stat = readFileSync(`/proc/${this.child.pid}/stat`, 'utf8');
    return ((Number(statField(stat, 14)) + Number(statField(stat, 15))) * 1e6) / CLOCK_TICKS_PER_SECOND;
  }

  stop(): void {
    this.child.kill('SIGTERM');
  }
}
