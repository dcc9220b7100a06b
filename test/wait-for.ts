// The tests' one poll loop: ask until a condition holds, and when it never does, fail saying what
// was awaited and what the last probe saw (its value, or the error it threw).
import assert from 'node:assert/strict';
import { inspect } from 'node:util';

type NotYet = undefined | null | false | 0 | '';

export interface WaitOptions {
  /** The pause between probes (default 250 ms). */
  everyMs?: number;
  /**
   * A probe that throws counts as "not yet" and is asked again (e.g. an agent still starting); its
   * last error is in the failure message. Off by default: an assertion inside a probe fails at once.
   */
  retryErrors?: boolean;
}

/**
 * Asks probe every `everyMs` until it returns something truthy, and returns that. Fails after
 * timeoutMs naming `what` (a function is asked only then, e.g. to describe the state reached) and
 * the last value or error seen.
 */
export async function waitFor<T>(
  what: string | (() => string),
  probe: () => T | NotYet | Promise<T | NotYet>,
  timeoutMs = 10_000,
  { everyMs = 250, retryErrors = false }: WaitOptions = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: { value: unknown } | { error: unknown } = { value: undefined };
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
      last = { value: v };
    } catch (error) {
      if (!retryErrors) throw error;
      last = { error };
    }
    if (Date.now() > deadline) {
      const seen = 'error' in last ? `the last probe threw ${String(last.error)}` : `the last probe returned ${inspect(last.value, { depth: 3, breakLength: Infinity }).slice(0, 2000)}`;
      assert.fail(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}; ${seen}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** waitFor, resolving to how long the wait took (ms): for tests that log it or bound it. */
export async function timedWaitFor(what: string | (() => string), probe: () => unknown, timeoutMs = 10_000, options: WaitOptions = {}): Promise<number> {
  const t0 = Date.now();
  await waitFor(what, probe, timeoutMs, options);
  return Date.now() - t0;
}
