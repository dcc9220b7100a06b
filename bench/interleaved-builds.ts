// An A/B of builds' idle RTT: --latency's method (interleaved-latency.ts: a lab per entry, all up at
// once, pings alternating in batches, the labs rotating among the entries round by round) with each
// entry a mode of a build of its own. A lab is made by the first build's CLI; every build then
// installs into it with its own CLI (a build's BenchLab runs the CLI relative to its own dist), so
// one build's mode may run in any lab. One build after the other is no A/B on this shared machine.
//
//   node dist/bench/interleaved-builds.js --entry base-wg=/tmp/veil-x-base:veil-wireguard \
//     --entry base-ipsec=/tmp/veil-x-base:veil-ipsec --entry chg-ipsec=/tmp/veil-x:veil-ipsec \
//     [--rounds 4] [--pings 500] [--batch 50] [--warmup-pings 300] [--out f.json]
// Measures time: under the lock (HELPERS.md).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { benchFlags } from './bench-flags.js';
import { MODES, benchLabSubnets, type ActiveMode, type BenchLab, type Mode } from './bench-lab.js';
import { measureLatencyInterleaved } from './interleaved-latency.js';
import { liveChildren } from './proc.js';

const USAGE = `Usage: node dist/bench/interleaved-builds.js --entry LABEL=BUILD_DIR:MODE --entry … (two or more)
  [--rounds 4] [--pings 500] [--batch 50] [--warmup-pings 300] [--batch-warmup 1] [--out FILE]
  MODE: ${MODES.join(', ')}; BUILD_DIR: a built clone (its dist/). Measures time: run it under the lock.`;

interface Entry { label: string; build: string; mode: Mode }

function parseEntry(s: string): Entry {
  const m = /^([\w.-]+)=(.+):([\w-]+)$/.exec(s);
  if (!m || !MODES.includes(m[3] as Mode)) throw new Error(`--entry ${s}: LABEL=BUILD_DIR:MODE, a mode of ${MODES.join(', ')}`);
  return { label: m[1]!, build: resolve(m[2]!), mode: m[3] as Mode };
}

type LabClass = typeof BenchLab;

async function main(): Promise<number> {
  const values = benchFlags({
    entry: { type: 'string', multiple: true }, rounds: { type: 'string', default: '4' }, pings: { type: 'string', default: '500' },
    batch: { type: 'string', default: '50' }, 'warmup-pings': { type: 'string', default: '300' }, 'batch-warmup': { type: 'string', default: '1' }, out: { type: 'string' },
  }, USAGE);
  let entries: Entry[];
  try {
    entries = (values.entry ?? []).map(parseEntry);
    if (entries.length < 2 || new Set(entries.map((e) => e.label)).size !== entries.length) throw new Error('at least two --entry, each label once');
  } catch (e) {
    console.error(`bad option: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const builds = [...new Set(entries.map((e) => e.build))];
  const classes = new Map<string, LabClass>();
  for (const b of builds) classes.set(b, (await import(join(b, 'dist/bench/bench-lab.js')) as { BenchLab: LabClass }).BenchLab);
  const home = mkdtempSync(join(tmpdir(), 'veil-bench-'));
  process.env['VEIL_HOME'] = home;
  const name = `vab${process.pid}`;
  // Lab i: made by the first build; each build's own BenchLab of the same cluster installs into it.
  const makers = entries.map((_, i) => new (classes.get(builds[0]!)!)(`${name}-${i}`, home, undefined, benchLabSubnets(i)));
  const actives = new Set<ActiveMode>();
  const cleanup = async () => {
    for (const a of actives) await a.teardown().catch(() => undefined);
    for (const lab of makers) await lab.destroy();
    rmSync(home, { recursive: true, force: true });
  };
  process.on('SIGINT', () => { for (const c of liveChildren) c.kill('SIGKILL'); void cleanup().finally(() => process.exit(130)); });
  try {
    for (const lab of makers) await lab.create();
    const labs = makers.map((maker) => {
      const own = new Map(builds.map((b) => {
        const l = new (classes.get(b)!)(maker.cluster, home, undefined, maker.subnets);
        l.nodes = maker.nodes; l.pods = maker.pods;
        return [b, l] as const;
      }));
      return {
        pods: maker.pods, nodes: maker.nodes, cluster: maker.cluster,
        activate: async (label: string, dir: string) => {
          const e = entries.find((x) => x.label === label)!;
          return { ...(await own.get(e.build)!.activate(e.mode, dir)), mode: label as Mode };
        },
      } as unknown as BenchLab;
    });
    const started = new Date();
    const run = await measureLatencyInterleaved(labs, entries.map((e) => e.label as Mode), home, {
      rounds: Number(values.rounds), pings: Number(values.pings), batch: Number(values.batch), warmupPings: Number(values['warmup-pings']), batchWarmupPings: Number(values['batch-warmup']),
    }, actives, (l) => console.error(l));
    const p50 = (r: number, label: string) => (run.rounds[r] as Record<string, { rttP50Us: number; rttP99Us: number }>)[label];
    const summary = run.rounds.map((_, r) => Object.fromEntries(entries.map((e) => [e.label, { p50: p50(r, e.label)?.rttP50Us, p99: p50(r, e.label)?.rttP99Us }])));
    console.log(JSON.stringify({ entries, summary }));
    if (values.out) writeFileSync(values.out, JSON.stringify({ started: started.toISOString(), entries, summary, ...run }, null, 2) + '\n');
    return run.failures.length ? 1 : 0;
  } finally {
    await cleanup();
  }
}

main().then((code) => process.exit(code), (e) => { console.error(e); process.exit(1); });
