// What a fuzz harness is: one parser (or sans-I/O core) that sees outside input, a fast-check
// property over hostile inputs for it, and how many cases `npm run fuzz` runs (CI runs ciRuns of
// every harness in test/fuzz/fuzz.test.ts). A property fails by throwing (node:assert) or returning
// false; a failure is shrunk by fast-check and kept, fixed, as a regression test.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { VeilError } from '../../src/util/errors.js';

export interface Harness {
  /** Short name: `npm run fuzz -- --only NAME`. */
  name: string;
  /** What it feeds, for the README table and the run's report. */
  target: string;
  /** Cases in `npm run fuzz`. */
  runs: number;
  /** Cases in CI's short pass (npm test). */
  ciRuns: number;
  /** A fresh property (harnesses with state build it anew per run). */
  property(): fc.IProperty<never> | fc.IAsyncProperty<never>;
  /** After a run: what the cases exercised (drop reasons counted, results seen), for the report. */
  report?(): string;
}

/** Declares a harness over one property (typed by its arbitraries). */
export function harness<Ts extends unknown[]>(
  h: Omit<Harness, 'property'> & { property(): fc.IProperty<Ts> | fc.IAsyncProperty<Ts> },
): Harness {
  return h as unknown as Harness;
}

/** Runs fn and returns what it threw (undefined when it returned). */
export function thrown(fn: () => unknown): unknown {
  try {
    fn();
    return undefined;
  } catch (e) {
    return e;
  }
}

/**
 * The error contract for bad input: nothing, or a VeilError whose code is one of `codes` and
 * whose message is a sentence (so the user reads what is wrong); anything else (a TypeError from
 * a missed case, a RangeError) is a bug. Returns the error for further checks.
 */
export function expectClearError(e: unknown, codes: readonly string[], what: string): VeilError | undefined {
  if (e === undefined) return undefined;
  if (!(e instanceof VeilError)) throw new Error(`${what} threw a non-VeilError: ${(e as Error)?.stack ?? String(e)}`);
  if (!codes.includes(e.code)) throw new Error(`${what} threw ${e.code} (expected one of ${codes.join(', ')}): ${e.message}`);
  if (e.message.trim().length < 8) throw new Error(`${what} threw ${e.code} with no useful message: '${e.message}'`);
  return e;
}

/** Bytes that look like a given sample: the sample with a few bytes changed, cut or extended, or random bytes. */
export function mutated(samples: readonly Uint8Array[], maxRandom = 200): fc.Arbitrary<Uint8Array> {
  const random = fc.uint8Array({ maxLength: maxRandom });
  if (samples.length === 0) return random;
  const edit = fc.record({
    sample: fc.constantFrom(...samples),
    flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }),
    cut: fc.oneof({ arbitrary: fc.constant(null), weight: 4 }, { arbitrary: fc.nat(), weight: 1 }),
    tail: fc.uint8Array({ maxLength: 8 }),
  }).map(({ sample, flips, cut, tail }) => {
    const b = Uint8Array.from(sample);
    for (const [at, x] of flips) if (b.length) b[at % b.length] ^= x;
    const cutAt = cut === null ? b.length : cut % (b.length + 1);
    return Uint8Array.from([...b.subarray(0, cutAt), ...(cut === null ? [] : tail)]);
  });
  return fc.oneof({ arbitrary: edit, weight: 3 }, { arbitrary: random, weight: 1 });
}

const scratch = new Set<string>();
process.on('exit', () => { for (const d of scratch) rmSync(d, { recursive: true, force: true }); });

/** A new temporary directory for a harness's files, removed when the process exits. */
export function scratchDir(name: string): string {
  const d = mkdtempSync(join(tmpdir(), `veil-fuzz-${name}-`));
  scratch.add(d);
  return d;
}
