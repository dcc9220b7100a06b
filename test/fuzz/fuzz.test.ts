// CI's short pass of every fuzz harness (test/fuzz/*.fuzz.ts): ciRuns cases each from a fixed seed,
// so the suite gives the same verdict on every machine and every run (a test that fails one run in
// fifty is noise, not a finding). New cases come from `npm run fuzz`, which draws a fresh seed each
// run; VEIL_FUZZ_SEED=random (or a number) makes this pass do the same. A failure prints the seed
// and the counterexample, to replay with `npm run fuzz -- --only NAME --seed SEED`.
import { test } from 'node:test';
import fc from 'fast-check';
import { allHarnesses } from './all.js';

const CI_SEED = 20261202;
const fromEnv = process.env.VEIL_FUZZ_SEED;
const seed = fromEnv === 'random' ? undefined : fromEnv ? Number(fromEnv) : CI_SEED;

for (const h of allHarnesses) {
  test(`fuzz ${h.name}: ${h.ciRuns} cases (${h.target})`, async () => {
    await fc.assert(h.property(), { numRuns: h.ciRuns, ...(seed === undefined ? {} : { seed }) });
  });
}
