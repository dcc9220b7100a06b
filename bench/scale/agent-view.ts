// What the scale bench reads of a real agent: its status socket (the datapath's peers and SAs, as
// `veil` reads them), and from /proc its CPU time (every thread, nanoseconds) and resident memory.
import { request } from 'node:http';
import { readdirSync, readFileSync } from 'node:fs';
import { AGENT_API, type AgentMemory, type IpsecSasReport } from '../../src/agent/api.js';

export class AgentView {
  constructor(readonly node: string, readonly pid: number, private readonly socketPath: string) {}

  private get<T>(path: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const req = request({ socketPath: this.socketPath, path, method: 'GET', timeout: 30_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode !== 200) reject(new Error(`GET ${path} on ${this.node}: ${res.statusCode} ${body.slice(0, 200)}`));
          else resolve(JSON.parse(body) as T);
        });
      });
      req.on('timeout', () => req.destroy(new Error(`GET ${path} on ${this.node} timed out`)));
      req.on('error', reject);
      req.end();
    });
  }

  /** The ESP datapath's SAs: one peer's (with key material), or all. */
  sas(peer?: string, keys = false): Promise<IpsecSasReport> {
    const q = new URLSearchParams();
    if (keys) q.set('keys', '1');
    if (peer) q.set('peer', peer);
    return this.get(`/ipsec/sas?${q}`);
  }

  /** The agent's RSS and both threads' heaps; `collect`: after a full garbage collection on both. */
  memory(collect: boolean): Promise<AgentMemory> {
    return this.get(`${AGENT_API.memory}${collect ? '?collect=1' : ''}`);
  }

  /** Peers in the datapath (a cheap question: one peer's SAs are listed, the count is of all). */
  async datapathPeers(): Promise<number> {
    return (await this.sas('-')).peerCount;
  }

  /** CPU time of every thread of the agent (main, datapath worker, libuv), in µs. */
  cpuMicros(): number {
    let ns = 0;
    for (const t of readdirSync(`/proc/${this.pid}/task`)) {
      try { ns += Number(readFileSync(`/proc/${this.pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]); } catch { /* the thread ended */ }
    }
    return ns / 1000;
  }

  /** The process's resident memory by kind (anonymous: heaps and native allocations; file: code), from /proc. */
  memoryDetail(): string {
    const st = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    return ['VmRSS', 'RssAnon', 'RssFile', 'VmData'].map((k) => `${k} ${new RegExp(`${k}:\\s+(\\d+) kB`).exec(st)?.[1] ?? '?'} kB`).join(', ');
  }

  /** Resident memory of the whole process, bytes. */
  rssBytes(): number {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  }
}
