// `npm run fuzz`: every harness for its stated number of cases (test/fuzz/all.ts), or a chosen one.
//   npm run fuzz                        all harnesses, full runs (millions of cases in all)
//   npm run fuzz -- --only wg-device    one harness
//   npm run fuzz -- --scale 0.1         a tenth of each harness's cases
//   npm run fuzz -- --seed 42           replay a failure CI printed (with --only)
// A failure prints fast-check's shrunk counterexample and seed; keep it as a regression test.
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import fc from 'fast-check';
import { allHarnesses } from './all.js';

const { values } = parseArgs({ options: { only: { type: 'string', multiple: true }, scale: { type: 'string' }, seed: { type: 'string' } } });
const scale = values.scale === undefined ? 1 : Number(values.scale);
if (!(scale > 0)) throw new Error(`--scale must be a positive number, not ${values.scale}`);
const chosen = values.only ? allHarnesses.filter((h) => values.only!.includes(h.name)) : allHarnesses;
if (chosen.length === 0) throw new Error(`no harness named ${values.only?.join(', ')}; known: ${allHarnesses.map((h) => h.name).join(', ')}`);

let failed = 0;
let total = 0;
const started = performance.now();
for (const h of chosen) {
  const runs = Math.max(1, Math.round(h.runs * scale));
  const seed = values.seed === undefined ? Date.now() ^ (Math.random() * 2 ** 31) : Number(values.seed);
  const t0 = performance.now();
  const details = await fc.check(h.property(), { numRuns: runs, seed });
  const s = (performance.now() - t0) / 1000;
  total += details.numRuns;
  const rate = Math.round(details.numRuns / s);
  if (details.failed) {
    failed++;
    console.log(`FAIL ${h.name} after ${details.numRuns} cases (seed ${seed})`);
    console.log(fc.defaultReportMessage(details));
  } else {
    console.log(`ok   ${h.name.padEnd(16)} ${String(details.numRuns).padStart(9)} cases  ${s.toFixed(1).padStart(6)} s  ${String(rate).padStart(7)}/s  seed ${seed}  ${h.target}`);
  }
  const report = h.report?.();
  if (report) console.log(`     ${report}`);
}
console.log(`${total} cases in ${((performance.now() - started) / 1000).toFixed(0)} s`);
console.log(`${chosen.length - failed} passed, ${failed} failed`);
process.exitCode = failed ? 1 : 0;
