// `npm run bench`: plain / wireguard-go / veil WireGuard / veil IPsec on a 2-node lab, rounds
// interleaved so that drift hits every mode alike; one table with ratios, JSON in bench/results/.
// --latency measures the modes' idle RTT side by side instead, each in its own lab
// (interleaved-latency.ts): one after the other, each mode's slot carried its own load.
// Cleans up (veil uninstall, wireguard-go, lab down, temp VEIL_HOME) also on SIGINT/SIGTERM.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, release } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../src/util/exec.js';
import { benchFlags } from './bench-flags.js';
import { BenchLab, MODES, benchLabSubnets, type ActiveMode, type Mode } from './bench-lab.js';
import { measureLatencyInterleaved, type LatencyRoundPlan } from './interleaved-latency.js';
import { measureMode, waitForTraffic, type MeasureOptions, type ModeFigures } from './measure.js';
import { liveChildren } from './proc.js';
import { formatRealtimeWorkers, formatRoundRatios, formatTable, ratiosToWireGuardGo, roundRatiosToWireGuardGo, stalls, summarize } from './report.js';

/** Idle pings not counted before the RTT is measured (3 s: veil's packet path tiers up; every mode alike). */
const WARMUP_PINGS = 300;
/** --latency: pings per batch, the modes taking turns (short enough that a few seconds' load hits every mode). */
const LATENCY_BATCH = 50;
/**
 * --latency: pings at the start of each batch not counted (every mode alike). After the ~1-2 s a
 * mode waits while the others are pinged, the first ping of its batch read 1.3-1.6x the median RTT
 * in every mode (the second on no longer differed; session 27, lat28), and 10 such pings of 500
 * sit at the p99: they measured the interleaving, not the mode.
 */
const LATENCY_BATCH_WARMUP = 1;

const HELP = `Usage: node dist/bench/run.js [--rounds N] [--seconds S] [--modes a,b] [--udp-rate R] [--crypto-threads T] [--warmup-pings N] [--smoke | --latency [--batch N] [--batch-warmup N]] [--cold N] [--out FILE] [--name CLUSTER]

Modes: ${MODES.join(', ')} (default: all, in that order, interleaved over the rounds).
  --rounds N     rounds (default 3; the table shows the median per figure)
  --seconds S    seconds per iperf3 test (default 5; UDP search trials take at most 2)
  --udp-rate R   offered UDP rate, iperf3 -b syntax (default 400M); the bench also searches the
                 highest rate with < 1 % loss (doubling from 200M, then bisecting), once with
                 the default socket buffers and once with 4 MiB ones (iperf3 -w)
  --crypto-threads T
                 veil's datapath.cryptoThreads (default: the install default, 1)
  --warmup-pings N
                 idle pings sent and not counted before the RTT is measured, in every mode
                 (default ${WARMUP_PINGS}: 3 s; veil's packet path is JIT-compiled while it works,
                 wireguard-go needs no warm-up; 0 under --smoke)
  --smoke        1 round of 1-second tests, no UDP search or handshake figures: each mode must
                 pass traffic; no JSON unless --out
  --latency      idle ping RTT only (default 500 pings a mode and round, 10 ms apart, 5 rounds)
                 and the handshake figures: the quick check of a latency change. The modes are
                 up at once, each in its own lab (CLUSTER-0, -1, ...: 172.18+i.0.0/16, pods
                 10.244+i.0.0/16), and take turns in batches of pings; lab, install order and
                 batch order rotate by round
  --batch N      --latency: pings per batch (default ${LATENCY_BATCH})
  --batch-warmup N
                 --latency: pings sent at the start of each batch and not counted, in every
                 mode alike (default ${LATENCY_BATCH_WARMUP})
  --cold N       N cold pings per mode and round (default 0: none), after the warm-up: each
                 right after the mode's datapath processes' accessed bits were cleared
                 (/proc/PID/clear_refs, what this machine's DAMON passes do to the pages they
                 sample), with the KB those processes touched by mapping kind, a warm ping
                 and a control ping inside the client pod each time (bench/cold-ping.ts)
  --out FILE     where the JSON goes (default bench/results/<date>.json)
  --name CLUSTER lab cluster name (default vb<pid>)
Exit status: 0 when every mode passed traffic in every round, 1 otherwise, 130 when interrupted.`;

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

function machine(): Record<string, unknown> {
  const model = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpus()[0]?.model;
  const commit = run(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD']).stdout.trim();
  // caps the 4 MiB socket buffers of the second UDP search (a lower cap lowers that figure)
  const rmemMax = Number(readFileSync('/proc/sys/net/core/rmem_max', 'utf8').trim());
  return { nproc: cpus().length, cpu: model, kernel: release(), node: process.version, commit, rmemMax };
}

// 1,000 handshakes, 3 counted rounds after 3 warm-up rounds (V8's one-off compilation, kept apart)
const HANDSHAKE_ARGS = ['1000', '3', '3'];

/** The handshake micro-benchmark's figures (one core, sans-I/O), or null when it failed. */
function handshakeFigures(): Record<string, number> | null {
  const r = run([process.execPath, join(ROOT, 'dist', 'bench', 'wireguard-handshake.js'), ...HANDSHAKE_ARGS], { timeout: 120_000 });
  try {
    return JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as Record<string, number>;
  } catch {
    console.error(`handshake benchmark failed: ${r.stderr.trim()}`);
    return null;
  }
}

async function main(): Promise<number> {
  const values = benchFlags({
    rounds: { type: 'string' }, seconds: { type: 'string' }, modes: { type: 'string' }, 'udp-rate': { type: 'string' }, 'crypto-threads': { type: 'string' },
    'warmup-pings': { type: 'string' }, batch: { type: 'string' }, 'batch-warmup': { type: 'string' }, cold: { type: 'string' }, smoke: { type: 'boolean' }, latency: { type: 'boolean' }, out: { type: 'string' }, name: { type: 'string' },
  }, HELP);
  const smoke = !!values.smoke;
  const latencyOnly = !smoke && !!values.latency;
  const rounds = Number(values.rounds ?? (smoke ? 1 : latencyOnly ? 5 : 3));
  const opts: MeasureOptions = {
    seconds: Number(values.seconds ?? (smoke ? 1 : 5)), udpRate: values['udp-rate'] ?? '400M', pings: smoke ? 20 : latencyOnly ? 500 : 200,
    warmupPings: smoke ? 0 : Number(values['warmup-pings'] ?? WARMUP_PINGS),
    udpSearch: !smoke && !latencyOnly, latencyOnly, coldPings: Number(values.cold ?? 0),
  };
  const modes = (values.modes ? values.modes.split(',') : [...MODES]) as Mode[];
  const bad = modes.filter((m) => !MODES.includes(m));
  const cryptoThreads = values['crypto-threads'] === undefined ? undefined : Number(values['crypto-threads']);
  const badThreads = cryptoThreads !== undefined && !(Number.isInteger(cryptoThreads) && cryptoThreads >= 1 && cryptoThreads <= 8);
  const badWarmup = !(Number.isInteger(opts.warmupPings) && opts.warmupPings >= 0);
  const batch = Number(values.batch ?? LATENCY_BATCH);
  const batchWarmupPings = Number(values['batch-warmup'] ?? LATENCY_BATCH_WARMUP);
  const badBatch = !(Number.isInteger(batch) && batch >= 1);
  const badBatchWarmup = !(Number.isInteger(batchWarmupPings) && batchWarmupPings >= 0);
  const badCold = !(Number.isInteger(opts.coldPings) && opts.coldPings! >= 0);
  const badLabs = latencyOnly && (new Set(modes).size !== modes.length || modes.length > 10);
  if (bad.length || !(rounds >= 1) || !(opts.seconds >= 1) || badThreads || badWarmup || badBatch || badBatchWarmup || badCold || badLabs) {
    console.error(`bad options: ${bad.length ? `unknown mode(s) ${bad.join(', ')}` : badThreads ? '--crypto-threads must be 1 to 8' : badWarmup ? '--warmup-pings must be a whole number >= 0'
      : badBatch ? '--batch must be a whole number >= 1' : badBatchWarmup ? '--batch-warmup must be a whole number >= 0' : badCold ? '--cold must be a whole number >= 0' : badLabs ? '--latency: each mode once (a lab each)' : '--rounds and --seconds must be >= 1'}\n\n${HELP}`);
    return 2;
  }

  const home = mkdtempSync(join(tmpdir(), 'veil-bench-'));
  process.env['VEIL_HOME'] = home; // for the registry reads (agent pids) in this process
  const name = values.name ?? `vb${process.pid}`;
  // --latency: a lab per mode, all up at once; otherwise one lab that the modes take in turn
  const labs = latencyOnly ? modes.map((_, i) => new BenchLab(`${name}-${i}`, home, cryptoThreads, benchLabSubnets(i))) : [new BenchLab(name, home, cryptoThreads)];
  const actives = new Set<ActiveMode>();
  let cleaning: Promise<void> | undefined;
  const cleanup = () => cleaning ??= (async () => {
    for (const a of actives) await a.teardown().catch(() => undefined);
    for (const lab of labs) await lab.destroy();
    rmSync(home, { recursive: true, force: true });
  })();
  const onSignal = (sig: NodeJS.Signals) => {
    console.error(`\n${sig}: cleaning up`);
    for (const c of liveChildren) c.kill('SIGKILL');
    void cleanup().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let results: Partial<Record<Mode, ModeFigures>>[] = [];
  const failures: { round: number; mode: Mode; error: string }[] = [];
  let plans: LatencyRoundPlan[] | undefined;
  const started = new Date();
  try {
    for (const lab of labs) {
      console.error(`creating lab ${lab.cluster} (VEIL_HOME=${home})`);
      await lab.create();
    }
    if (latencyOnly) {
      const run = await measureLatencyInterleaved(labs, modes, home, { rounds, pings: opts.pings, batch, warmupPings: opts.warmupPings, batchWarmupPings, coldPings: opts.coldPings }, actives, (l) => console.error(l));
      results = run.rounds;
      failures.push(...run.failures);
      plans = run.plans;
    } else {
      const lab = labs[0]!;
      const [client, server] = lab.pods as [typeof lab.pods[0], typeof lab.pods[0]];
      for (let r = 0; r < rounds; r++) {
        const round: Partial<Record<Mode, ModeFigures>> = {};
        for (const mode of modes) {
          const t0 = Date.now();
          let active: ActiveMode | undefined;
          try {
            active = await lab.activate(mode, home);
            actives.add(active);
            if (!(await waitForTraffic(client, server))) throw new Error(`no traffic passes from ${client.ip} to ${server.ip}`);
            round[mode] = await measureMode(client, server, active.datapathPids, opts);
            const f = round[mode]!;
            console.error(`round ${r + 1}/${rounds} ${mode}: tcp ${f.tcp1Gbps.toFixed(2)} / -R ${f.tcp1RGbps.toFixed(2)} / -P4 ${f.tcp4Gbps.toFixed(2)} Gbit/s ` +
              `(slowest second ${f.tcpSlowestSecondRatio.toFixed(2)}× median), udp ${f.udpRxGbps.toFixed(3)} (${f.udpLossPct.toFixed(1)} % lost), ` +
              `< 1 % loss up to ${f.udpMaxRateMbps ?? '–'} Mbit/s (${f.udpMaxRateTunedMbps ?? '–'} with 4 MiB buffers), rtt p50 ${f.rttP50Us.toFixed(0)} µs idle / ${f.rttLoadedP50Us.toFixed(0)} µs loaded (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
          } catch (e) {
            const error = e instanceof Error ? e.message : String(e);
            failures.push({ round: r + 1, mode, error });
            console.error(`round ${r + 1}/${rounds} ${mode}: FAILED: ${error}`);
          } finally {
            if (active) {
              actives.delete(active);
              await active.teardown();
            }
          }
        }
        results.push(round);
      }
    }
  } finally {
    await cleanup();
  }

  const summary = summarize(results);
  const table = formatTable(summary);
  const info = machine();
  const stalled = stalls(results);
  const roundRatios = roundRatiosToWireGuardGo(results);
  const handshakes = smoke ? null : handshakeFigures();
  console.log(`\nveil bench ${started.toISOString().slice(0, 10)}: ${rounds} round(s) × ${opts.seconds} s, UDP offered ${opts.udpRate}; ` +
    `${info['nproc']} × ${info['cpu']}; medians over rounds (÷wg-go, ÷plain)\n`);
  console.log(table);
  const roundLines = [...formatRoundRatios(roundRatios), ...formatRealtimeWorkers(results)];
  if (roundLines.length) console.log(`\n${roundLines.join('\n')}`);
  if (handshakes) console.log(`\nWireGuard handshakes on one core (node dist/bench/wireguard-handshake.js ${HANDSHAKE_ARGS.join(' ')}): ` +
    `${handshakes['fullHandshakesPerSecond']} full handshakes/s (both sides' work; ${handshakes['fullHandshakesPerCpuSecond']} per CPU second), ` +
    `${handshakes['responderPerSecond']} initiations answered/s; the warm-up rounds ${handshakes['warmupFullHandshakesPerCpuSecond']} per CPU second`);
  for (const s of stalled) console.log(`STALL round ${s.round} ${s.mode} ${s.test}: per-second Gbit/s ${s.seconds.map((x) => x.toFixed(2)).join(' ')}`);
  for (const f of failures) console.log(`FAILED round ${f.round} ${f.mode}: ${f.error}`);
  if (!smoke || values.out) {
    const stamp = started.toISOString().replace(/:/g, '').slice(0, 17);
    const file = values.out ?? join(ROOT, 'bench', 'results', `${stamp}.json`);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, JSON.stringify({
      date: started.toISOString(), machine: info, options: { rounds, ...opts, modes, cryptoThreads: cryptoThreads ?? 'default' },
      method: latencyOnly
        ? { kind: 'interleaved', labs: labs.map((l) => ({ cluster: l.cluster, ...l.subnets })), batch, batchWarmupPings, batchesPerRound: Math.ceil(opts.pings / batch), plans }
        : { kind: 'sequential', lab: labs[0]!.cluster },
      summary, ratiosToWireGuardGo: ratiosToWireGuardGo(summary), roundRatiosToWireGuardGo: roundRatios, stalls: stalled, handshakes, rounds: results, failures, table,
    }, null, 2) + '\n');
    console.log(`\nJSON: ${file}`);
  }
  return failures.length ? 1 : 0;
}

main().then((code) => process.exit(code), (e) => { console.error(e instanceof Error ? e.stack : e); process.exit(1); });
