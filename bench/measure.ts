// One mode's measurements between the two bench pods: iperf3 TCP (1 stream both ways, 4 streams)
// with per-second throughput (stalls), ping RTT idle and while the single stream runs, UDP at a
// fixed offered rate and the highest rate with < 1 % loss (doubling, then bisecting; once with the
// default socket buffers, once with 4 MiB ones so the receiving application is not the limit), and CPU
// seconds of the datapath processes per GB.
import type { LabPod } from './bench-lab.js';
import { cpuSeconds, exec, peakRssBytes, realtimeThreads, sleep, startChild, stopChild } from './proc.js';
import { median } from './stats.js';
import { measureColdPings, type ColdPingFigures } from './cold-ping.js';

export interface MeasureOptions {
  seconds: number;
  /** Offered UDP rate, iperf3 -b syntax (e.g. 400M). */
  udpRate: string;
  pings: number;
  /**
   * Pings sent (10 ms apart) and not counted before the idle RTT is measured, in every mode alike:
   * veil's packet path runs V8's baseline-tier code until it has carried some packets, where
   * wireguard-go (compiled) needs no warm-up, so without it the bench compares veil's first
   * seconds with wireguard-go's steady state.
   */
  warmupPings: number;
  /** Search the highest UDP rate with < 1 % loss (skipped by --smoke). */
  udpSearch: boolean;
  /** Idle ping RTT only (--latency): no TCP, UDP or CPU figures (they stay NaN / null). */
  latencyOnly?: boolean;
  /** Cold pings per mode and round after the idle RTT (cold-ping.ts; 0 or absent: none). */
  coldPings?: number;
}

/** Loss below which an offered UDP rate counts as carried. */
export const UDP_MAX_LOSS_PCT = 1;
const UDP_SEARCH_START_MBPS = 200;
const UDP_SEARCH_CAP_MBPS = 12_800;
/** Bisection steps after the doubling found a rate that loses too much. */
const UDP_SEARCH_BISECT_STEPS = 3;
const UDP_SEARCH_TRIAL_SECONDS = 2;
/**
 * The socket buffer (iperf3 -w: both ends) of the second search. With the default receive buffer
 * (net.core.rmem_default, 208 KiB here) the receiving iperf3 itself overflows first: plain routing
 * between two namespaces loses >= 1 % from ~650 Mbit/s on this machine, all of it the server
 * socket's RcvbufErrors, so that search cannot tell a tunnel's ceiling from the application's.
 * With 4 MiB (an application sized for bursts; capped by net.core.rmem_max) plain carries what
 * one iperf3 sender can send (~1.7 Gbit/s here) without loss.
 */
export const UDP_TUNED_BUFFER = '4M';

export interface ModeFigures {
  tcp1Gbps: number;
  tcp1RGbps: number;
  tcp4Gbps: number;
  udpRxGbps: number;
  udpLossPct: number;
  rttP50Us: number;
  rttP99Us: number;
  /** The warm-up pings' RTT (the first seconds after the mode came up; NaN without a warm-up). */
  rttWarmupP50Us: number;
  rttWarmupP99Us: number;
  /** Median RTT of a lone ping right after the datapath's accessed bits were cleared (cold-ping.ts; NaN: not measured). */
  coldPingUs: number;
  /** Median KB the datapath processes marked referenced from that clear to after the ping (NaN: not measured). */
  coldPagesTouchedKB: number;
  /** The cold-ping measure in full (by mapping kind, the control, each repetition); absent when not measured. */
  coldPing?: ColdPingFigures;
  /**
   * Per datapath process, its realtime (SCHED_FIFO) threads when the idle RTT's pings began and
   * when they ended: veil's worker is SCHED_FIFO while quiet (datapath.realtime), so a 0 in a veil
   * mode says its worker measured (part of) that RTT as a normal thread. Empty for plain.
   */
  rttRealtimeThreads: { start: number[]; end: number[] };
  /** Ping RTT while the single TCP stream runs through the same pair. */
  rttLoadedP50Us: number;
  rttLoadedP99Us: number;
  /** Of every TCP test: its slowest second ÷ its median second; the lowest here (1 = steady, near 0 = a stall). */
  tcpSlowestSecondRatio: number;
  /** Per TCP test, its per-second Gbit/s (iperf3 intervals), to see where a stall was. */
  tcpSeconds: Record<string, number[]>;
  /** Highest offered UDP rate with < 1 % loss, Mbit/s (null: not searched). */
  udpMaxRateMbps: number | null;
  /** The same with a 4 MiB socket buffer at both ends (UDP_TUNED_BUFFER): the path's ceiling, not the receiver's. */
  udpMaxRateTunedMbps: number | null;
  /** Every UDP trial of both searches: offered and received Mbit/s, loss %, the socket buffer asked for. */
  udpTrials: UdpTrial[];
  /** CPU seconds of the datapath processes per GB through TCP (null: no such process, plain). */
  cpuSecPerGB: number | null;
  /** Largest VmHWM among the datapath processes, MB (null for plain). */
  peakRssMB: number | null;
  /** --latency (interleaved): the lab the mode ran in this round, and the median and highest RTT of each of its batches, µs. */
  rttLab?: number;
  rttBatchP50Us?: number[];
  rttBatchMaxUs?: number[];
  /**
   * --latency: each batch's pings in the order sent, µs (null: no answer), the uncounted ones at
   * its start included (the run's `method.batchWarmupPings`), and when each batch began, ms after
   * the round's first batch: where in a batch, and how long after the mode's previous batch, a slow ping falls.
   */
  rttBatchUs?: (number | null)[][];
  rttBatchStartMs?: number[];
  /**
   * --latency: per batch, how long the mode's own datapath threads waited on a run queue (runnable,
   * not running), µs in all: a thread woken by a packet while the CPU runs other work waits here.
   */
  rttBatchRunQueueWaitUs?: number[];
  /** Per datapath thread name over the batches, a ping: on-CPU and run-queue wait (µs), times put on a CPU. */
  rttThreadsPerPing?: Record<string, { cpuUs: number; waitUs: number; runs: number }>;
  /**
   * --latency: over the mode's batches, the machine's busy share (of all cores) and the CPU the
   * other modes' datapath processes used (in cores): the others are up while a mode is measured.
   */
  rttLoad?: { machineBusy: number; othersCores: number };
}

export interface UdpTrial {
  mbps: number;
  rxMbps: number;
  lossPct: number;
  /** iperf3 -w of the trial (null: the default buffers). */
  buffer: string | null;
}

/**
 * What a trial fell short by, in %: its loss, or the share of the offered rate that was never
 * received when the sender itself could not send it (iperf3 counts loss of what it sent only, so
 * an offered rate above what one sender makes would otherwise count as carried).
 */
export function udpShortfallPct(offeredMbps: number, rxMbps: number, lossPct: number): number {
  return Math.max(lossPct, offeredMbps > 0 ? 100 * (1 - rxMbps / offeredMbps) : 0);
}

const IPERF_PORT = 5299;

interface IperfResult {
  gbps: number;
  bytes: number;
  lossPct: number;
  /** Gbit/s of each whole second (iperf3's intervals; a short last one is left out). */
  seconds: number[];
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
    const j = JSON.parse(r.stdout || '{}') as { error?: string; end?: Record<string, Record<string, number>>; intervals?: { sum: { seconds: number; bits_per_second: number } }[] };
    if (j.error || !j.end) throw new Error(`iperf3 ${extra.join(' ')}: ${j.error ?? r.stderr.trim()}`);
    const e = j.end;
    const perSecond = (j.intervals ?? []).filter((i) => i.sum.seconds >= 0.5).map((i) => i.sum.bits_per_second / 1e9);
    if (extra.includes('-u')) {
      const s = e['sum_received'] ?? e['sum']!;
      const lossPct = e['sum']?.['lost_percent'] ?? s['lost_percent'] ?? 0;
      const gbps = e['sum_received'] ? s['bits_per_second']! / 1e9 : (s['bits_per_second']! * (1 - lossPct / 100)) / 1e9;
      return { gbps, bytes: s['bytes']!, lossPct, seconds: perSecond };
    }
    return { gbps: e['sum_received']!['bits_per_second']! / 1e9, bytes: e['sum_received']!['bytes']!, lossPct: 0, seconds: perSecond };
  } finally {
    await stopChild(srv);
  }
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** `count` pings 10 ms apart from client to server: the RTT of each answer, µs, in the order sent. */
export async function pingRtts(client: LabPod, server: LabPod, count: number): Promise<number[]> {
  return (await pingRttsBySeq(client, server, count)).filter((x): x is number => x !== null);
}

/** As pingRtts, but each ping in its own place (index = its number in the run - 1): null where no answer came. */
export async function pingRttsBySeq(client: LabPod, server: LabPod, count: number): Promise<(number | null)[]> {
  // -c with -w: wait for every reply (-c alone stops two RTTs after the last request)
  const r = await exec(['ip', 'netns', 'exec', client.netns, 'ping', '-n', '-c', String(count), '-i', '0.01', '-W', '1', '-w', String(Math.ceil(count / 100) + 5), server.ip], 60_000);
  return parsePingReplies(r.stdout, count);
}

/** ping's output to the RTT (µs) of each of `count` requests by icmp_seq (1-based); null: no answer, a duplicate counts once. */
export function parsePingReplies(stdout: string, count: number): (number | null)[] {
  const rtts: (number | null)[] = Array(count).fill(null);
  for (const m of stdout.matchAll(/icmp_seq=(\d+)\b.*?time=([\d.]+) ms/g)) {
    const i = Number(m[1]) - 1;
    if (i >= 0 && i < count && rtts[i] === null) rtts[i] = Number(m[2]) * 1000;
  }
  return rtts;
}

async function pingRtt(client: LabPod, server: LabPod, count: number): Promise<{ p50: number; p99: number; received: number }> {
  const rtts = (await pingRtts(client, server, count)).sort((a, b) => a - b);
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

/** The slowest whole second of a test divided by its median second (NaN with no whole second). */
export function slowestSecondRatio(seconds: number[]): number {
  if (seconds.length === 0) return NaN;
  const m = median(seconds);
  return m > 0 ? Math.min(...seconds) / m : 0;
}

/**
 * The highest offered rate (Mbit/s) that loses < UDP_MAX_LOSS_PCT: doubling from a start rate until
 * a rate loses more (or the cap), then bisecting between the last good and the first bad rate.
 * `trial` offers a rate and answers what it fell short by, in % (udpShortfallPct). Null when even
 * the start rate falls short.
 */
export async function searchUdpRate(trial: (mbps: number) => Promise<number>, start = UDP_SEARCH_START_MBPS, cap = UDP_SEARCH_CAP_MBPS, steps = UDP_SEARCH_BISECT_STEPS): Promise<number | null> {
  let good: number | null = null, bad: number | null = null;
  for (let rate = start; rate <= cap; rate *= 2) {
    if ((await trial(rate)) < UDP_MAX_LOSS_PCT) good = rate;
    else { bad = rate; break; }
  }
  if (bad === null) return good;
  let lo = good ?? 0, hi = bad;
  for (let i = 0; i < steps; i++) {
    const mid = Math.round((lo + hi) / 2);
    if (mid <= 0 || mid === lo || mid === hi) break;
    if ((await trial(mid)) < UDP_MAX_LOSS_PCT) lo = mid;
    else hi = mid;
  }
  return lo > 0 ? lo : null;
}

/** The cold-ping measure as a mode's figures. */
export function coldFigures(c: ColdPingFigures): Pick<ModeFigures, 'coldPingUs' | 'coldPagesTouchedKB' | 'coldPing'> {
  return { coldPingUs: c.coldPingUs, coldPagesTouchedKB: c.coldPagesTouchedKB, coldPing: c };
}

/** A mode's figures when only the idle RTT was measured (--latency): the others NaN or null. */
export function idleRttFigures(idle: { p50: number; p99: number }, warmup: { p50: number; p99: number }, rttRealtimeThreads: ModeFigures['rttRealtimeThreads']): ModeFigures {
  return {
    tcp1Gbps: NaN, tcp1RGbps: NaN, tcp4Gbps: NaN, udpRxGbps: NaN, udpLossPct: NaN, rttP50Us: idle.p50, rttP99Us: idle.p99,
    rttWarmupP50Us: warmup.p50, rttWarmupP99Us: warmup.p99, coldPingUs: NaN, coldPagesTouchedKB: NaN, rttRealtimeThreads,
    rttLoadedP50Us: NaN, rttLoadedP99Us: NaN, tcpSlowestSecondRatio: NaN, tcpSeconds: {}, udpMaxRateMbps: null, udpMaxRateTunedMbps: null, udpTrials: [],
    cpuSecPerGB: null, peakRssMB: null,
  };
}

export async function measureMode(client: LabPod, server: LabPod, pids: number[], opts: MeasureOptions): Promise<ModeFigures> {
  const cpu = () => pids.reduce((s, p) => s + cpuSeconds(p), 0);
  let cpuUsed = 0, bytes = 0;
  const tcpSeconds: Record<string, number[]> = {};
  const tcp = async (name: string, extra: string[]) => {
    const c0 = cpu();
    const r = await iperf(client, server, opts.seconds, extra);
    cpuUsed += cpu() - c0;
    bytes += r.bytes;
    tcpSeconds[name] = r.seconds;
    return r.gbps;
  };
  const warmup = opts.warmupPings > 0 ? await pingRtt(client, server, opts.warmupPings) : { p50: NaN, p99: NaN };
  const rtStart = pids.map(realtimeThreads);
  const ping = await pingRtt(client, server, opts.pings);
  const rttRealtimeThreads = { start: rtStart, end: pids.map(realtimeThreads) };
  if (ping.received === 0) throw new Error('no ping answer');
  const cold = opts.coldPings && pids.length ? coldFigures(await measureColdPings(client, server, pids, opts.coldPings)) : {};
  if (opts.latencyOnly) return { ...idleRttFigures(ping, warmup, rttRealtimeThreads), ...cold };
  // RTT under load: pings at 100/s while the single stream runs (from a fifth of it, or 1 s, on).
  const startMs = Math.min(1000, opts.seconds * 200);
  const loadedPings = Math.max(10, Math.floor((opts.seconds * 1000 - startMs - 200) / 10));
  const [tcp1Gbps, loaded] = await Promise.all([tcp('tcp1', []), sleep(startMs).then(() => pingRtt(client, server, loadedPings))]);
  const tcp1RGbps = await tcp('tcp1R', ['-R']);
  const tcp4Gbps = await tcp('tcp4', ['-P', '4']);
  const udp = await iperf(client, server, opts.seconds, ['-u', '-b', opts.udpRate, '-l', '1360']);
  const udpTrials: UdpTrial[] = [];
  const search = (buffer: string | null) => !opts.udpSearch ? Promise.resolve(null) : searchUdpRate(async (mbps) => {
    const r = await iperf(client, server, Math.min(opts.seconds, UDP_SEARCH_TRIAL_SECONDS), ['-u', '-b', `${mbps}M`, '-l', '1360', ...(buffer ? ['-w', buffer] : [])]);
    const rxMbps = r.gbps * 1000;
    udpTrials.push({ mbps, rxMbps: Math.round(rxMbps), lossPct: r.lossPct, buffer });
    return udpShortfallPct(mbps, rxMbps, r.lossPct);
  });
  const udpMaxRateMbps = await search(null);
  const udpMaxRateTunedMbps = await search(UDP_TUNED_BUFFER);
  const ratios = Object.values(tcpSeconds).map(slowestSecondRatio).filter((x) => Number.isFinite(x));
  return {
    tcp1Gbps, tcp1RGbps, tcp4Gbps, udpRxGbps: udp.gbps, udpLossPct: udp.lossPct,
    rttP50Us: ping.p50, rttP99Us: ping.p99,
    rttWarmupP50Us: warmup.p50, rttWarmupP99Us: warmup.p99, coldPingUs: NaN, coldPagesTouchedKB: NaN, ...cold, rttRealtimeThreads,
    rttLoadedP50Us: loaded.p50, rttLoadedP99Us: loaded.p99,
    tcpSlowestSecondRatio: ratios.length ? Math.min(...ratios) : NaN,
    tcpSeconds,
    udpMaxRateMbps, udpMaxRateTunedMbps, udpTrials,
    cpuSecPerGB: pids.length ? cpuUsed / (bytes / 1e9) : null,
    peakRssMB: pids.length ? Math.max(...pids.map(peakRssBytes)) / (1 << 20) : null,
  };
}
