// The realtime worker's yield before work no packet waits for (idle-realtime.ts yieldToWoken; the
// worker loop calls it before the engine's tick() after a turn that moved packets). Real threads on
// the real scheduler: two worker threads made SCHED_FIFO and pinned to the first CPU as the datapath
// workers are (IdleRealtime.start), one woken by the other. No clock: the order is the scheduler's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { IdleRealtime } from '../../src/datapath/idle-realtime.js';

const POLICY = fileURLToPath(new URL('../../src/datapath/idle-realtime.js', import.meta.url));

/**
 * Thread "sleeper" waits on a shared word; thread "waker", realtime on the same CPU, wakes it and
 * then (with `yieldFirst`) calls yieldToWoken(), and records whether the sleeper has run by then.
 * Both start their realtime policy before either acts. Answers what the waker saw (true: it ran first).
 */
async function wakeThenLook(yieldFirst: boolean): Promise<{ sleeperRanFirst: boolean; refused: (string | null)[] }> {
  // [0] the sleeper's go, [1] the sleeper ran, [2] the sleeper is about to wait, [3] refusals seen
  const words = new Int32Array(new SharedArrayBuffer(16));
  const src = (role: string) => `
    const { workerData, parentPort } = require('node:worker_threads');
    import(${JSON.stringify(POLICY)}).then(({ IdleRealtime }) => {
      const w = workerData.words;
      const { policy, refused } = IdleRealtime.start(true, performance.now());
      if (refused) { parentPort.postMessage({ refused }); return; }
      if (${JSON.stringify(role)} === 'sleeper') {
        Atomics.store(w, 2, 1);
        Atomics.wait(w, 0, 0);
        Atomics.store(w, 1, 1);
        parentPort.postMessage({ refused: null });
      } else {
        while (Atomics.load(w, 2) === 0) Atomics.wait(w, 2, 0, 1); // until the sleeper waits (it runs on this CPU only when this one sleeps)
        Atomics.wait(w, 3, 0, 5); // sleep once more: the sleeper reaches its wait
        Atomics.store(w, 0, 1);
        Atomics.notify(w, 0);
        if (workerData.yieldFirst) policy.yieldToWoken();
        parentPort.postMessage({ refused: null, sleeperRan: Atomics.load(w, 1) === 1 });
      }
    });`;
  const start = (role: string) => new Worker(src(role), { eval: true, workerData: { words, yieldFirst } });
  const sleeper = start('sleeper');
  const waker = start('waker');
  const answer = (w: Worker) => new Promise<{ refused: string | null; sleeperRan?: boolean }>((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
  const [s, k] = await Promise.all([answer(sleeper), answer(waker)]);
  await Promise.all([sleeper.terminate(), waker.terminate()]);
  return { sleeperRanFirst: k.sleeperRan === true, refused: [s.refused, k.refused] };
}

test('yieldToWoken: a realtime thread woken on the worker\'s CPU runs before the worker goes on; without the yield it waits', { timeout: 60_000 }, async () => {
  const without = await wakeThenLook(false);
  assert.deepEqual(without.refused, [null, null], 'the test runs as root: SCHED_FIFO is allowed');
  // The premise: same-priority FIFO threads on one CPU do not preempt each other, so a woken worker
  // waited for whatever the waker did next (in a lab, the other node's worker for a marks refill).
  assert.equal(without.sleeperRanFirst, false, 'without the yield the woken thread has not run');
  const withYield = await wakeThenLook(true);
  assert.equal(withYield.sleeperRanFirst, true, 'with the yield the woken thread ran first');
});

test('yieldToWoken: only while realtime (SCHED_OTHER gives nothing up), and not once set aside', () => {
  let yields = 0;
  const policy = new IdleRealtime(true, 1_000, true, () => true, () => { yields++; });
  policy.yieldToWoken();
  assert.equal(yields, 1);
  policy.setAside(1_001); // control work: SCHED_OTHER until the next wait
  policy.yieldToWoken();
  assert.equal(yields, 1);
  policy.beforeWait(1_002);
  policy.yieldToWoken();
  assert.equal(yields, 2, 'realtime again after the wait');
  const off = new IdleRealtime(false, 1_000, false, () => true, () => { yields++; });
  off.yieldToWoken();
  assert.equal(yields, 2, 'datapath.realtime off: never');
});
