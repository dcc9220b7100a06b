// The WireGuard engine wakes for its peers' timers on a TIMER_SLACK_MS grid: timers due within one
// step fire in one tick (one wake-up, one walk of the peers, their packets sent together), never
// before their deadline; a timer armed after the deadline was cached is still seen, by the loop's clock. A real engine,
// TUN device and sockets in a throwaway namespace, ticked as the worker loop ticks it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { deleteNetns, makeNetns, runScenario } from './fixtures/netns.js';

const SCENARIO = fileURLToPath(new URL('./fixtures/timer-slack-scenario.js', import.meta.url));
let ns: string | undefined;
after(() => { if (ns) deleteNetns(ns); });

interface Tick { at: number; wokeFor: number; fired: number[] }

test('peer timers due within one grid step fire in one tick, none early; a timer armed under a later cached deadline still fires', { timeout: 60_000 }, () => {
  ns = makeNetns('tts');
  const r = runScenario(ns, [], SCENARIO, 30_000) as unknown as { step: number; deadlines: number[]; spread: Tick[]; cached: number; late: number; armed: Tick[]; initiations: number; clock: { before: number; sooner: number; sameStep: number; nextStep: number } };
  const fired = r.spread.filter((t) => t.fired.length > 0);
  assert.equal(fired.length, 1, `ten timers 7 ms apart inside one step fire in one tick: ${JSON.stringify(r.spread)}`);
  assert.deepEqual(fired[0]!.fired, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.equal(fired[0]!.wokeFor % r.step, 0, 'the deadline the loop woke for is on the grid');
  assert.equal(fired[0]!.wokeFor, Math.ceil(r.deadlines.at(-1)! / r.step) * r.step, 'the first grid step at or after the last deadline');
  assert.ok(fired[0]!.at >= Math.max(...r.deadlines), 'no timer fired before its deadline');
  assert.ok(r.cached > r.late, `the cached deadline (${r.cached}) was later than the timer armed after it (${r.late})`);
  const armed = r.armed.filter((t) => t.fired.length > 0);
  assert.equal(armed.length, 1, `the timer armed under a later cached deadline fired: ${JSON.stringify(r.armed)}`);
  assert.ok(armed[0]!.at >= r.late, 'not before its deadline');
  assert.equal(armed[0]!.wokeFor, Math.ceil(r.late / r.step) * r.step, 'at the first grid step at or after it (the cache was refreshed before it was due)');
  assert.equal(r.initiations, 11, 'each fired timer sent its peer an initiation');
  const c = r.clock;
  assert.ok(c.before > Math.ceil(c.sooner / r.step) * r.step, `the cached deadline (${c.before}) is later than the timer armed after it (${c.sooner})`);
  assert.equal(c.sameStep, c.before, 'within a step of the refresh, by the loop\'s clock: the cached deadline');
  assert.equal(c.nextStep, Math.ceil(c.sooner / r.step) * r.step, 'a step later by the loop\'s clock: refreshed, though the engine\'s own clock moved less');
});
