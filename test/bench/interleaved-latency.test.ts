// The interleaved latency bench's arrangement: over its rounds every mode runs in every lab, is
// installed first, and goes first in its share of batches, so neither a lab nor a place in the
// order leans one mode's RTT; and the labs it puts up at once have subnets of their own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { latencyRoundPlan } from '../../bench/interleaved-latency.js';
import { benchLabSubnets } from '../../bench/bench-lab.js';

test('latency plan: within a round the modes have distinct labs; over n rounds each mode runs in every lab and is installed first once', () => {
  for (const n of [1, 2, 3, 5]) {
    const plans = Array.from({ length: n }, (_, r) => latencyRoundPlan(n, r, 10));
    for (const p of plans) {
      assert.deepEqual([...p.labOf].sort(), Array.from({ length: n }, (_, i) => i).sort(), `n=${n}: one lab per mode`);
      assert.deepEqual([...p.installOrder].sort(), [...p.labOf].sort(), `n=${n}: every mode installed`);
    }
    for (let m = 0; m < n; m++) {
      assert.deepEqual(plans.map((p) => p.labOf[m]).sort(), Array.from({ length: n }, (_, i) => i).sort(), `n=${n}: mode ${m} visits every lab`);
    }
    assert.deepEqual(plans.map((p) => p.installOrder[0]).sort(), Array.from({ length: n }, (_, i) => i).sort(), `n=${n}: each mode installed first once`);
  }
});

test('latency plan: over 2n batches each mode goes first and last equally often, and with three modes follows each other mode equally often', () => {
  const n = 3;
  const { batchOrders } = latencyRoundPlan(n, 1, 2 * n);
  assert.equal(batchOrders.length, 2 * n);
  for (const order of batchOrders) assert.deepEqual([...order].sort(), [0, 1, 2], 'every mode once per batch');
  const count = (xs: number[]) => xs.reduce((c, x) => (c[x]++, c), [0, 0, 0]);
  assert.deepEqual(count(batchOrders.map((o) => o[0]!)), [2, 2, 2], 'first');
  assert.deepEqual(count(batchOrders.map((o) => o.at(-1)!)), [2, 2, 2], 'last');
  const follows = new Map<string, number>();
  for (const o of batchOrders) for (let j = 1; j < n; j++) follows.set(`${o[j - 1]}>${o[j]}`, (follows.get(`${o[j - 1]}>${o[j]}`) ?? 0) + 1);
  assert.deepEqual([...follows.values()], Array(6).fill(2), `each ordered pair alike: ${[...follows].join(' ')}`);
  // two modes: a b, b a, b a, a b (session 25's ab3.mjs alternated a b / b a)
  assert.deepEqual(latencyRoundPlan(2, 0, 4).batchOrders, [[0, 1], [1, 0], [1, 0], [0, 1]]);
});

test('latency plan: bad input is refused with the reason', () => {
  assert.throws(() => latencyRoundPlan(0, 0, 10), /0 modes/);
  assert.throws(() => latencyRoundPlan(3, -1, 10), /round -1/);
  assert.throws(() => latencyRoundPlan(3, 0, 0), /0 batches/);
});

test('bench labs up at once: lab 0 has the lab defaults, the others subnets of their own', () => {
  assert.deepEqual(benchLabSubnets(0), { underlay: '172.18.0.0/16', pods: '10.244.0.0/16' });
  assert.deepEqual(benchLabSubnets(2), { underlay: '172.20.0.0/16', pods: '10.246.0.0/16' });
  const all = Array.from({ length: 10 }, (_, i) => benchLabSubnets(i));
  assert.equal(new Set(all.flatMap((s) => [s.underlay, s.pods])).size, 20, 'no two labs share a subnet');
  assert.throws(() => benchLabSubnets(10), /0 to 9/);
});
