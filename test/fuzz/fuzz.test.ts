// CI's short pass of every fuzz harness (test/fuzz/*.fuzz.ts): ciRuns cases each, a fresh random
// seed every run (printed on failure with the counterexample, to replay with
// `npm run fuzz -- --only NAME --seed SEED`). `npm run fuzz` runs the long pass.
import { test } from 'node:test';
import fc from 'fast-check';
import { allHarnesses } from './all.js';

for (const h of allHarnesses) {
  test(`fuzz ${h.name}: ${h.ciRuns} cases (${h.target})`, async () => {
    await fc.assert(h.property(), { numRuns: h.ciRuns });
  });
}
