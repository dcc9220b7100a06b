// A lab for one e2e test file: its own cluster name and VEIL_HOME (machine-wide namespace names
// must not collide with another checkout's run), the CLI bound to them, captures on node devices,
// and the clean-up of everything it started.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { podNetns } from '../../src/lab/names.js';
import { ok, veilCli, type Result } from './cli.js';

export interface Capture { file: string; stop(): Promise<string> }

export class TestLab {
  readonly cluster: string;
  readonly home: string;
  readonly env: NodeJS.ProcessEnv;
  readonly nodes: string[];
  readonly veil: (...args: string[]) => Result;
  private readonly children = new Set<ChildProcess>();
  private up = false;

  constructor(prefix: string, nodeCount: number) {
    this.cluster = `${prefix}-${process.pid}`;
    this.home = mkdtempSync(join(tmpdir(), `veil-t-${prefix}-`));
    this.env = { ...process.env, VEIL_HOME: this.home };
    delete this.env['VEIL_CLUSTER'];
    this.nodes = ['control-plane', 'worker', ...Array.from({ length: nodeCount - 2 }, (_, i) => `worker${i + 2}`)].slice(0, nodeCount).map((s) => `${this.cluster}-${s}`);
    this.veil = veilCli(this.env, 90_000);
  }

  /** lab up (extra: more of its flags); the registry helpers of src/ read VEIL_HOME from this process's environment. */
  start(...extra: string[]): void {
    process.env['VEIL_HOME'] = this.home;
    ok(this.veil('lab', 'up', '--name', this.cluster, '--nodes', String(this.nodes.length), ...extra));
    this.up = true;
  }

  stop(): void {
    for (const c of this.children) c.kill('SIGKILL');
    if (process.env['VEIL_TEST_KEEP']) { // keep agent logs and pcaps for a post-mortem
      spawnSync('cp', ['-r', this.home, `${this.home}-kept`]);
      console.log(`# lab state kept in ${this.home}-kept`);
    }
    if (this.up) this.veil('lab', 'down', '--name', this.cluster);
    rmSync(this.home, { recursive: true, force: true });
  }

  netns(node: string): string {
    return `veil-${this.cluster}_${node.slice(this.cluster.length + 1)}`;
  }

  /** A command in a node's namespace, synchronously. */
  onNode(node: string, ...argv: string[]): Result {
    return spawnSync('ip', ['netns', 'exec', this.netns(node), ...argv], { encoding: 'utf8', timeout: 30_000 });
  }

  /** A long-running process this lab kills at the end (e.g. something holding a port). */
  spawn(argv: string[]): ChildProcess {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    this.children.add(child);
    child.on('close', () => this.children.delete(child));
    return child;
  }

  /** tcpdump -w on a device of a node; stop() ends it and returns the file. */
  async capture(node: string, dev: string, filter: string): Promise<Capture> {
    const file = join(this.home, `cap-${node}-${dev}-${Date.now()}.pcap`);
    const child = this.spawn(['ip', 'netns', 'exec', this.netns(node), 'tcpdump', '-n', '-U', '--immediate-mode', '-i', dev, '-w', file, filter]);
    const exited = new Promise<void>((res) => child.on('close', () => res()));
    let err = '';
    await new Promise<void>((res, rej) => {
      const t = setTimeout(() => rej(new Error(`tcpdump on ${node}/${dev} did not start: ${err}`)), 10_000);
      child.stderr!.on('data', (d) => { err += d; if (err.includes('listening on')) { clearTimeout(t); res(); } });
      child.on('close', () => rej(new Error(`tcpdump on ${node}/${dev} exited: ${err}`)));
    });
    return { file, stop: async () => { child.kill('SIGINT'); await exited; return file; } };
  }

  /** Every node's routing table (main), sorted: to compare before and after. */
  routes(): Record<string, string[]> {
    return Object.fromEntries(this.nodes.map((n) => [n, this.onNode(n, 'ip', 'route', 'show').stdout.split('\n').filter(Boolean).sort()]));
  }

  /** The pid recorded under `name` in the lab's pid records (e.g. supervisor-NODE). */
  recordedPid(name: string): number | undefined {
    try { return (JSON.parse(readFileSync(join(this.home, 'clusters', this.cluster, 'pids', `${name}.pid`), 'utf8')) as { pid: number }).pid; } catch { return undefined; }
  }
}

/** What `veil verify -o json` reports. */
export interface VerifyJson { ok: boolean; problems: string[]; pairs: { from: string; to: string; family?: 6; icmp: boolean; tcp: boolean; udp: boolean; leaked: number; outer: string[]; ok: boolean }[] }

/** veil verify on the lab, its exit status checked (0: passed, 1: failed); the report. */
export function verifyJson(lab: TestLab, expectPass: boolean): VerifyJson {
  const r = lab.veil('verify', '--timeout', '10s', '-o', 'json');
  assert.equal(r.status, expectPass ? 0 : 1, `verify exit ${r.status}: ${r.stderr}\n${r.stdout.slice(0, 3000)}`);
  return JSON.parse(r.stdout) as VerifyJson;
}

/** ping from a pod (in its namespace, as `veil lab exec` runs it, without a CLI start: it is polled): the received count (0 when all are lost). */
export function pingCount(lab: TestLab, pod: string, dst: string, count = 3): number {
  const r = spawnSync('ip', ['netns', 'exec', podNetns(lab.cluster, pod), 'ping', '-c', String(count), '-i', '0.2', '-W', '2', dst], { encoding: 'utf8', timeout: 30_000 });
  return Number(/(\d+) received/.exec(r.stdout)?.[1] ?? 0);
}

/** What a stopped ping sent and which of its judged requests got no reply. */
export interface PingRun {
  sent: number;
  /** Requests 1..judged are judged: all but the last `inFlight`, whose replies ping did not wait for. */
  judged: number;
  /** icmp_seq -> the reply's time (ms since the epoch). */
  replies: Map<number, number>;
  /** The judged requests without a reply. */
  missing: number[];
  /** ping's output (with -D timestamps). */
  out: string;
}

/**
 * ping -D from a namespace every `intervalS` until stop() (SIGINT; -w 300 bounds a stop that never
 * comes). ping does not wait for the replies in flight when it stops: its last `inFlight` requests
 * are not judged. lastReplied() is the highest icmp_seq answered so far, to wait for traffic past a
 * moment before stopping.
 */
export function pingUntilStopped(ns: string, dst: string, intervalS: number, inFlight: number): { pid: number; lastReplied: () => number; running: () => boolean; stop: () => Promise<PingRun> } {
  const p = spawn('ip', ['netns', 'exec', ns, 'ping', '-D', '-i', String(intervalS), '-w', '300', dst], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let running = true;
  p.stdout.on('data', (d) => { out += d; });
  p.stderr.on('data', (d) => { out += d; });
  p.on('exit', () => { running = false; });
  // 'close', not 'exit': only then has everything ping wrote (its summary last) been read
  const exited = new Promise<void>((res) => p.on('close', () => res()));
  const replies = () => new Map([...out.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)/gm)].map((r) => [Number(r[2]), Number(r[1]) * 1000]));
  return {
    pid: p.pid!,
    lastReplied: () => Math.max(0, ...replies().keys()),
    running: () => running,
    stop: async () => {
      p.kill('SIGINT');
      await exited;
      const sent = Number(/(\d+) packets transmitted/.exec(out)?.[1] ?? 0), judged = Math.max(0, sent - inFlight);
      const got = replies();
      return { sent, judged, replies: got, missing: Array.from({ length: judged }, (_, k) => k + 1).filter((k) => !got.has(k)), out };
    },
  };
}
