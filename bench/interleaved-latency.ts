// --latency: the idle ping RTT of several modes measured side by side. Each mode runs in its own
// 2-node lab (its own subnets), all are up at once, and the pings alternate among the labs in short
// batches. Measured one after the other, each mode had its own ~10-s slot, and on this shared 2-core
// machine the load of other work changes from slot to slot: an A/A of one build read 0.69-1.18 per
// round that way (session 25, lat26), against 0.88-1.03 side by side. Which lab a mode runs in, the
// order the modes are installed in and the order of each batch rotate, so the labs' own differences
// and those of the order cancel.
import type { ActiveMode, BenchLab, Mode } from './bench-lab.js';
import { measureColdPings } from './cold-ping.js';
import { coldFigures, idleRttFigures, percentile, pingRtts, pingRttsBySeq, waitForTraffic, type ModeFigures } from './measure.js';
import { cpuSeconds, machineTicks, realtimeThreads, runQueueWaitSeconds, schedByThread } from './proc.js';
import { median } from './stats.js';

/** One round's arrangement, as indices into the modes. */
export interface LatencyRoundPlan {
  /** labOf[m]: the lab mode m runs in. */
  labOf: number[];
  /** The order the modes are installed (and warmed up) in. */
  installOrder: number[];
  /** Per batch, the order the modes are pinged in. */
  batchOrders: number[][];
}

/**
 * Round r's plan for n modes. Mode m runs in lab (m + r) mod n, so over n rounds each mode runs in
 * every lab once. The installs start at mode r mod n. Batch k pings the modes in the rotation that
 * starts at mode (k + r) mod n, reversed in every other cycle of n batches: over 2n batches each mode
 * goes first and last equally often, and (with up to three modes) follows each other mode equally often.
 */
export function latencyRoundPlan(n: number, round: number, batches: number): LatencyRoundPlan {
  if (!(Number.isInteger(n) && n >= 1)) throw new Error(`latency plan: ${n} modes (at least 1)`);
  if (!(Number.isInteger(round) && round >= 0) || !(Number.isInteger(batches) && batches >= 1)) throw new Error(`latency plan: round ${round}, ${batches} batches`);
  const rotation = (start: number) => Array.from({ length: n }, (_, j) => (start + j) % n);
  const batchOrders = Array.from({ length: batches }, (_, k) => {
    const order = rotation((k + round) % n);
    return Math.floor(k / n) % 2 ? order.reverse() : order;
  });
  return { labOf: rotation(round % n), installOrder: rotation(round % n), batchOrders };
}

export interface InterleavedLatencyOptions {
  rounds: number;
  /** Measured pings per mode and round (rounded up to whole batches). */
  pings: number;
  /** Pings per batch. */
  batch: number;
  /** Pings per mode not counted, after all modes are up and before the batches. */
  warmupPings: number;
  /** Pings at the start of every batch not counted (every mode alike), before the batch's counted ones (default 0). */
  batchWarmupPings?: number;
  /** Cold pings per mode and round, after the warm-up and before the batches (cold-ping.ts; 0 or absent: none). */
  coldPings?: number;
}

export interface InterleavedLatencyRun {
  /** Per round, each mode's figures (the idle RTT ones; a mode that failed that round is absent). */
  rounds: Partial<Record<Mode, ModeFigures>>[];
  failures: { round: number; mode: Mode; error: string }[];
  plans: LatencyRoundPlan[];
}

/**
 * Measures the modes' idle RTT side by side in labs (one per mode, created), round by round; every
 * mode is installed afresh each round. `actives` holds what is up, for a signal handler to tear down.
 */
export async function measureLatencyInterleaved(labs: BenchLab[], modes: Mode[], home: string, opts: InterleavedLatencyOptions,
  actives: Set<ActiveMode>, log: (line: string) => void): Promise<InterleavedLatencyRun> {
  if (labs.length !== modes.length) throw new Error(`interleaved latency: ${modes.length} modes need as many labs (got ${labs.length})`);
  const batches = Math.ceil(opts.pings / opts.batch);
  const batchWarmup = opts.batchWarmupPings ?? 0;
  const run: InterleavedLatencyRun = { rounds: [], failures: [], plans: [] };
  for (let r = 0; r < opts.rounds; r++) {
    const plan = latencyRoundPlan(modes.length, r, batches);
    run.plans.push(plan);
    const round: Partial<Record<Mode, ModeFigures>> = {};
    const up = new Map<number, ActiveMode>();
    const fail = (m: number, e: unknown) => {
      const error = e instanceof Error ? e.message : String(e);
      run.failures.push({ round: r + 1, mode: modes[m]!, error });
      log(`round ${r + 1}/${opts.rounds} ${modes[m]}: FAILED: ${error}`);
      up.delete(m);
    };
    const labOf = (m: number) => labs[plan.labOf[m]!]!;
    try {
      for (const m of plan.installOrder) {
        try {
          const a = await labOf(m).activate(modes[m]!, home);
          actives.add(a);
          up.set(m, a);
        } catch (e) { fail(m, e); }
      }
      for (const m of plan.installOrder) {
        const [client, server] = pair(labOf(m));
        if (up.has(m) && !(await waitForTraffic(client, server))) fail(m, new Error(`no traffic passes from ${client.ip} to ${server.ip}`));
      }
      const warmup = new Map<number, number[]>();
      for (const m of plan.installOrder) {
        if (up.has(m) && opts.warmupPings > 0) warmup.set(m, (await pingRtts(...pair(labOf(m)), opts.warmupPings)).sort((a, b) => a - b));
      }
      // each mode's cold pings while the other labs are idle (only its own processes are cleared)
      const cold = new Map<number, ReturnType<typeof coldFigures>>();
      for (const m of plan.installOrder) {
        const a = up.get(m);
        if (a && opts.coldPings && a.datapathPids.length) cold.set(m, coldFigures(await measureColdPings(...pair(labOf(m)), a.datapathPids, opts.coldPings)));
      }
      const rtStart = new Map([...up].map(([m, a]) => [m, a.datapathPids.map(realtimeThreads)]));
      const samples = new Map<number, number[]>([...up.keys()].map((m) => [m, []]));
      const batchP50 = new Map<number, number[]>([...up.keys()].map((m) => [m, []]));
      const batchMax = new Map<number, number[]>([...up.keys()].map((m) => [m, []]));
      const batchPings = new Map<number, (number | null)[][]>([...up.keys()].map((m) => [m, []]));
      const batchStart = new Map<number, number[]>([...up.keys()].map((m) => [m, []]));
      const batchWait = new Map<number, number[]>([...up.keys()].map((m) => [m, []]));
      const byThread = new Map<number, Map<string, { cpuUs: number; waitUs: number; runs: number }>>([...up.keys()].map((m) => [m, new Map()]));
      const roundStart = performance.now();
      // what else ran while a mode's batches did: the machine (both cores) and the other modes' datapath processes
      const load = new Map<number, { busy: number; total: number; othersCpu: number; seconds: number }>([...up.keys()].map((m) => [m, { busy: 0, total: 0, othersCpu: 0, seconds: 0 }]));
      for (const order of plan.batchOrders) {
        for (const m of order) {
          if (!up.has(m)) continue;
          const others = [...up].filter(([o]) => o !== m).flatMap(([, a]) => a.datapathPids);
          const othersCpu = () => others.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
          const ownWait = () => up.get(m)!.datapathPids.reduce((sum, pid) => sum + runQueueWaitSeconds(pid), 0);
          const th0 = schedByThread(up.get(m)!.datapathPids);
          const [t0, c0, q0, w0] = [machineTicks(), othersCpu(), ownWait(), performance.now()];
          const pings = await pingRttsBySeq(...pair(labOf(m)), batchWarmup + opts.batch);
          const [t1, c1, q1, w1] = [machineTicks(), othersCpu(), ownWait(), performance.now()];
          const acc = byThread.get(m)!;
          for (const [name, t] of schedByThread(up.get(m)!.datapathPids)) {
            const a = acc.get(name) ?? { cpuUs: 0, waitUs: 0, runs: 0 }, b = th0.get(name) ?? { cpuUs: 0, waitUs: 0, runs: 0 };
            a.cpuUs += t.cpuUs - b.cpuUs; a.waitUs += t.waitUs - b.waitUs; a.runs += t.runs - b.runs;
            acc.set(name, a);
          }
          const rtts = pings.slice(batchWarmup).filter((x): x is number => x !== null);
          const l = load.get(m)!;
          l.busy += t1.busy - t0.busy; l.total += t1.total - t0.total; l.othersCpu += c1 - c0; l.seconds += (w1 - w0) / 1000;
          batchPings.get(m)!.push(pings.map((x) => x === null ? null : Math.round(x)));
          batchStart.get(m)!.push(Math.round(w0 - roundStart));
          batchWait.get(m)!.push(Math.round((q1 - q0) * 1e6));
          samples.get(m)!.push(...rtts);
          batchP50.get(m)!.push(median(rtts));
          batchMax.get(m)!.push(Math.max(...rtts));
        }
      }
      for (const [m, a] of up) {
        const rtts = samples.get(m)!.sort((x, y) => x - y);
        if (!rtts.length) { fail(m, new Error('no ping answer')); continue; }
        const w = warmup.get(m) ?? [];
        round[modes[m]!] = {
          ...idleRttFigures({ p50: percentile(rtts, 50), p99: percentile(rtts, 99) }, { p50: percentile(w, 50), p99: percentile(w, 99) },
            { start: rtStart.get(m)!, end: a.datapathPids.map(realtimeThreads) }),
          rttLab: plan.labOf[m]!, rttBatchP50Us: batchP50.get(m)!.map((x) => Math.round(x)), rttBatchMaxUs: batchMax.get(m)!.map((x) => Math.round(x)),
          rttBatchUs: batchPings.get(m)!, rttBatchStartMs: batchStart.get(m)!, rttBatchRunQueueWaitUs: batchWait.get(m)!,
          rttThreadsPerPing: perPing(byThread.get(m)!, batchPings.get(m)!),
          rttLoad: loadShares(load.get(m)!), ...cold.get(m),
        };
      }
      for (const m of plan.installOrder) {
        const f = round[modes[m]!];
        if (f) log(`round ${r + 1}/${opts.rounds} ${modes[m]} (lab ${f.rttLab}): rtt p50 ${f.rttP50Us.toFixed(0)} µs, p99 ${f.rttP99Us.toFixed(0)} µs idle ` +
          `(during the warm-up: p50 ${f.rttWarmupP50Us.toFixed(0)}, p99 ${f.rttWarmupP99Us.toFixed(0)}; machine ${f.rttLoad!.machineBusy} busy, the others' datapath ${f.rttLoad!.othersCores} cores; its own datapath waited on a run queue ${waitPerPing(f)} µs a ping)` +
          (modes[m]!.startsWith('veil-') ? `, realtime threads at its start→end ${f.rttRealtimeThreads.start.join('+')}→${f.rttRealtimeThreads.end.join('+')}` : ''));
      }
    } finally {
      for (const a of [...actives].reverse()) {
        actives.delete(a);
        await a.teardown();
      }
    }
    run.rounds.push(round);
  }
  return run;
}

/** Each thread name's wait and runs over the batches ÷ the pings sent in them (names that never ran left out). */
function perPing(acc: Map<string, { cpuUs: number; waitUs: number; runs: number }>, batches: (number | null)[][]): Record<string, { cpuUs: number; waitUs: number; runs: number }> {
  const pings = Math.max(1, batches.reduce((n, b) => n + b.length, 0));
  return Object.fromEntries([...acc].filter(([, t]) => t.runs > 0).map(([name, t]) =>
    [name, { cpuUs: +(t.cpuUs / pings).toFixed(1), waitUs: +(t.waitUs / pings).toFixed(1), runs: +(t.runs / pings).toFixed(3) }]));
}

/** The mode's datapath threads' run-queue wait over its batches ÷ the pings sent in them, µs. */
function waitPerPing(f: ModeFigures): string {
  const pings = (f.rttBatchUs ?? []).reduce((n, b) => n + b.length, 0);
  return ((f.rttBatchRunQueueWaitUs ?? []).reduce((a, w) => a + w, 0) / Math.max(1, pings)).toFixed(0);
}

/** The machine's busy share (of both cores) and the other modes' datapath CPU (cores) over a mode's batches. */
function loadShares(l: { busy: number; total: number; othersCpu: number; seconds: number }): { machineBusy: number; othersCores: number } {
  return { machineBusy: +(l.busy / Math.max(1, l.total)).toFixed(3), othersCores: +(l.othersCpu / Math.max(1e-9, l.seconds)).toFixed(3) };
}

function pair(lab: BenchLab): [BenchLab['pods'][0], BenchLab['pods'][0]] {
  return [lab.pods[0]!, lab.pods[1]!];
}
