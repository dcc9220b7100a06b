// One mode's measurements between the two bench pods: iperf3 TCP (1 stream both ways, 4 streams),
// UDP at a fixed offered rate, idle ping RTT, and CPU seconds of the datapath processes per GB.
import type { LabPod } from './bench-lab.js';
import { cpuSeconds, exec, peakRssBytes, sleep, startChild, stopChild } from './proc.js';

export interface MeasureOptions {
  seconds: number;
  /** Offered UDP rate, iperf3 -b syntax (e.g. 400M). */
  udpRate: string;
  pings: number;
}

export interface ModeFigures {
  tcp1Gbps: number;
  tcp1RGbps: number;
  tcp4Gbps: number;
  udpRxGbps: number;
  udpLossPct: number;
  rttP50Us: number;
  rttP99Us: number;
  /** CPU seconds of the datapath processes per GB through TCP (null: no such process, plain). */
  cpuSecPerGB: number | null;
  /** Largest VmHWM among the datapath processes, MB (null for plain). */
  peakRssMB: number | null;
}

const IPERF_PORT = 5299;

interface IperfResult {
  gbps: number;
  bytes: number;
  lossPct: number;
}

async function iperf(client: LabPod, server: LabPod, seconds: number, extra: string[]): Promise<IperfResult> {
  const srv = startChild(['ip', 'netns', 'exec', server.netns, 'iperf3', '-s', '-1', '-p', String(IPERF_PORT)]);
  try {
    let r = { status: 1, stdout: '', stderr: '' };
    for (let attempt = 0; attempt < 20; attempt++) {
      await sleep(100);
      r = await exec(['ip', 'netns', 'exec', client.netns, 'iperf3', '-c', server.ip, '-p', String(IPERF_PORT), '-t', String(seconds),
        '-J', '--connect-timeout', '3000', ...extra], (seconds + 20) * 1000);
      if (!/Connection refused/.test(r.stdout)) break;
    }
    const j = JSON.parse(r.stdout || '{}') as { error?: string; end?: Record<string, Record<string, number>> };
    if (j.error || !j.end) throw new Error(`iperf3 ${extra.join(' ')}: ${j.error ?? r.stderr.trim()}`);
    const e = j.end;
    if (extra.includes('-u')) {
      const s = e['sum_received'] ?? e['sum']!;
      const lossPct = e['sum']?.['lost_percent'] ?? s['lost_percent'] ?? 0;
      const gbps = e['sum_received'] ? s['bits_per_second']! / 1e9 : (s['bits_per_second']! * (1 - lossPct / 100)) / 1e9;
      return { gbps, bytes: s['bytes']!, lossPct };
    }
    return { gbps: e['sum_received']!['bits_per_second']! / 1e9, bytes: e['sum_received']!['bytes']!, lossPct: 0 };
  } finally {
    await stopChild(srv);
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function pingRtt(client: LabPod, server: LabPod, count: number): Promise<{ p50: number; p99: number; received: number }> {
  const r = await exec(['ip', 'netns', 'exec', client.netns, 'ping', '-n', '-c', String(count), '-i', '0.01', '-W', '1', server.ip], 60_000);
  const rtts = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]) * 1000).sort((a, b) => a - b);
  return { p50: percentile(rtts, 50), p99: percentile(rtts, 99), received: rtts.length };
}

/** Waits until a ping gets through (first handshake); false when nothing passes in timeoutMs. */
export async function waitForTraffic(client: LabPod, server: LabPod, timeoutMs = 15_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const r = await exec(['ip', 'netns', 'exec', client.netns, 'ping', '-n', '-c', '1', '-W', '1', server.ip], 5000);
    if (r.status === 0) return true;
    await sleep(100);
  }
  return false;
}

export async function measureMode(client: LabPod, server: LabPod, pids: number[], opts: MeasureOptions): Promise<ModeFigures> {
  const cpu = () => pids.reduce((s, p) => s + cpuSeconds(p), 0);
  let cpuUsed = 0, bytes = 0;
  const tcp = async (extra: string[]) => {
    const c0 = cpu();
    const r = await iperf(client, server, opts.seconds, extra);
    cpuUsed += cpu() - c0;
    bytes += r.bytes;
    return r.gbps;
  };
  const ping = await pingRtt(client, server, opts.pings);
  if (ping.received === 0) throw new Error('no ping answer');
  const tcp1Gbps = await tcp([]);
  const tcp1RGbps = await tcp(['-R']);
  const tcp4Gbps = await tcp(['-P', '4']);
  const udp = await iperf(client, server, opts.seconds, ['-u', '-b', opts.udpRate, '-l', '1360']);
  return {
    tcp1Gbps, tcp1RGbps, tcp4Gbps, udpRxGbps: udp.gbps, udpLossPct: udp.lossPct,
    rttP50Us: ping.p50, rttP99Us: ping.p99,
    cpuSecPerGB: pids.length ? cpuUsed / (bytes / 1e9) : null,
    peakRssMB: pids.length ? Math.max(...pids.map(peakRssBytes)) / (1 << 20) : null,
  };
}
