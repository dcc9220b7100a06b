// What the scale bench reads of a real agent: its status socket (the datapath's peers and SAs, as
// `veil` reads them), and from /proc its CPU time (every thread, nanoseconds) and resident memory.
import { request } from 'node:http';
import { readdirSync, readFileSync } from 'node:fs';
import { AGENT_API, type AgentMemory, type IpsecSasReport, type WireGuardEncryptStatus } from '../../src/agent/api.js';
import { statField } from '../../src/util/proc-stat.js';

/** USER_HZ: Linux reports process times in /proc in these (100 on every architecture it runs on). */
const CLOCK_TICKS_PER_SECOND = 100;

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

  /** The WireGuard datapath's status (GET /encrypt, as `veil encrypt status`): every peer listed, its counters and probes. */
  encryptStatus(): Promise<WireGuardEncryptStatus> {
    return this.get<WireGuardEncryptStatus>(AGENT_API.encrypt);
  }

  /** The WireGuard datapath's peers: each peer's node name and public key. */
  async wireGuardPeers(): Promise<{ node?: string; publicKey: string }[]> {
    const st = await this.encryptStatus();
    return (st.wireguard.interfaces[0]?.peers ?? []).map((p) => ({ node: p.node, publicKey: p['public-key'] }));
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
    const t = this.cpuByThread();
    return t.main + t.worker + t.helpers;
  }

  /**
   * CPU time by thread (µs): the main thread (its tid is the pid), the agent's own other threads
   * (named after the process: the datapath worker and its crypto threads), and Node's helpers
   * (named `node`: V8's GC and compiler threads, libuv's pool), which do the main thread's garbage
   * collection in parallel.
   */
  cpuByThread(): { main: number; worker: number; helpers: number } {
    const out = { main: 0, worker: 0, helpers: 0 };
    for (const t of readdirSync(`/proc/${this.pid}/task`)) {
      try {
        const us = Number(readFileSync(`/proc/${this.pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]) / 1000;
        if (Number(t) === this.pid) out.main += us;
        else if (readFileSync(`/proc/${this.pid}/task/${t}/comm`, 'utf8').trim() === 'node') out.helpers += us;
        else out.worker += us;
      } catch { /* the thread ended */ }
    }
    return out;
  }

  /**
   * CPU time of the agent's child processes it waited for (the `ip` processes of its route
   * updates and reads), in µs: from /proc/<pid>/stat (cutime + cstime, in clock ticks: 10 ms steps).
   */
  childrenCpuMicros(): number {
    const stat = readFileSync(`/proc/${this.pid}/stat`, 'utf8');
    return (Number(statField(stat, 16)) + Number(statField(stat, 17))) * (1e6 / CLOCK_TICKS_PER_SECOND); // cutime + cstime
  }

  /** The process's resident memory by kind (anonymous: heaps and native allocations; file: code), from /proc. */
  memoryDetail(): string {
    const st = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    return ['VmRSS', 'RssAnon', 'RssFile', 'VmData'].map((k) => `${k} ${new RegExp(`${k}:\\s+(\\d+) kB`).exec(st)?.[1] ?? '?'} kB`).join(', ');
  }

  /**
   * Resident memory by mapping, from /proc/<pid>/smaps (MB): file-backed (code, libraries), the main
   * malloc arena ([heap], brk), the other threads' malloc arenas (glibc maps each as a 64 MiB region
   * aligned to 64 MiB: the part in use read-write, the rest PROT_NONE), thread stacks, and every
   * other anonymous mapping (V8's heap pages above all; its code space, the addon's buffers).
   */
  rssByMapping(): { file: number; mallocMain: number; mallocArenas: number; stacks: number; otherAnon: number } {
    const out = { file: 0, mallocMain: 0, mallocArenas: 0, stacks: 0, otherAnon: 0 };
    const ARENA = 64 * 1024 * 1024;
    const maps: { start: bigint; end: bigint; perms: string; path: string; rss: number }[] = [];
    for (const line of readFileSync(`/proc/${this.pid}/smaps`, 'utf8').split('\n')) {
      const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
      if (m) { maps.push({ start: BigInt(`0x${m[1]}`), end: BigInt(`0x${m[2]}`), perms: m[3]!, path: m[4]!, rss: 0 }); continue; }
      const r = /^Rss:\s+(\d+) kB/.exec(line);
      if (r && maps.length) maps[maps.length - 1]!.rss = Number(r[1]) / 1024;
    }
    for (const [i, m] of maps.entries()) {
      const next = maps[i + 1];
      const aligned = m.start % BigInt(ARENA) === 0n;
      const arenaEnd = m.start + BigInt(ARENA);
      const arena = !m.path && aligned && (m.end === arenaEnd || (next !== undefined && next.start === m.end && next.perms.startsWith('---') && next.end === arenaEnd));
      if (m.path === '[heap]') out.mallocMain += m.rss;
      else if (m.path.startsWith('[stack')) out.stacks += m.rss;
      else if (m.path && !m.path.startsWith('[')) out.file += m.rss;
      else if (arena) out.mallocArenas += m.rss;
      else out.otherAnon += m.rss;
    }
    return out;
  }

  /** Resident memory of the whole process, bytes. */
  rssBytes(): number {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  }
}
