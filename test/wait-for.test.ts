// The shared poll: what it returns, and what its failure says.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { timedWaitFor, waitFor } from './wait-for.js';

test('waitFor returns the first truthy value a probe gives, sync or async', async () => {
  let n = 0;
  assert.deepEqual(await waitFor('n to reach 3', () => ++n >= 3 && { n }, 1000, { everyMs: 1 }), { n: 3 });
  assert.equal(await waitFor('an async answer', async () => 'yes', 1000), 'yes');
  assert.ok(await timedWaitFor('at once', () => true) >= 0);
});

test('a timed-out waitFor names what was awaited and the last value the probe returned', async () => {
  let n = 0;
  await assert.rejects(waitFor('the count to reach 1000', () => { n++; return n >= 1000 ? n : 0; }, 30, { everyMs: 5 }),
    (e: Error) => e instanceof assert.AssertionError && /^timed out after 30 ms waiting for the count to reach 1000; the last probe returned 0$/.test(e.message));
  await assert.rejects(waitFor(() => `the state (n=${n})`, () => null, 10, { everyMs: 5 }), /waiting for the state \(n=\d+\); the last probe returned null/);
});

test('a probe error fails waitFor at once, unless errors are retried: then the last one is reported', async () => {
  let calls = 0;
  await assert.rejects(waitFor('never', () => { calls++; throw new Error('not reachable'); }, 1000, { everyMs: 1 }), /^Error: not reachable$/);
  assert.equal(calls, 1);
  let left = 3;
  assert.equal(await waitFor('a socket', () => { if (left-- > 0) throw new Error('ECONNREFUSED'); return 'up'; }, 1000, { everyMs: 1, retryErrors: true }), 'up');
  await assert.rejects(waitFor('the agent', () => { throw new Error('connect ECONNREFUSED'); }, 20, { everyMs: 5, retryErrors: true }),
    /waiting for the agent; the last probe threw Error: connect ECONNREFUSED/);
});
