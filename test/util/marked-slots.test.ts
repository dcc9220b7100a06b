// MarkedSlots: values kept by slot across passes, each with its pass mark; what a pass did not mark
// goes at its end, exactly as forgetUnmarked() over a Map of marked records keyed by slot.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MarkedSlots } from '../../src/util/marked-slots.js';
import { forgetUnmarked } from '../../src/util/forget-unmarked.js';

test('a slot set or marked by a pass stays; one it did not mark is told and emptied; bad slots and passes are refused', () => {
  const t = new MarkedSlots<string>();
  t.set(0, 'a', 1); t.set(3, 'd', 1);
  assert.deepEqual([t.length, t.at(1), t.at(3)], [4, undefined, 'd']);
  t.mark(3, 2);
  assert.deepEqual([t.marked(3, 2), t.marked(0, 2), t.marked(1, 2)], [true, false, false]);
  const gone: [string, number][] = [];
  t.forgetUnmarked(2, (v, s) => gone.push([v, s]));
  assert.deepEqual(gone, [['a', 0]]);
  assert.equal(t.at(0), undefined);
  assert.throws(() => t.mark(0, 3), /slot 0 is free/);
  assert.throws(() => t.set(1, 'b', 0), /pass number must be positive/);
  assert.throws(() => t.set(-1, 'b', 3), /slot must be an integer >= 0/);
  t.set(200, 'far', 3); // past the marks column's first size
  const seen: [string, number][] = [];
  t.forEach((v, s) => seen.push([v, s]));
  assert.deepEqual(seen, [['d', 3], ['far', 200]]);
});

test('random passes: the same slots and values as forgetUnmarked over a Map of records, across growth', () => {
  let seed = 11;
  const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) >>> 0; return seed % n; };
  const t = new MarkedSlots<number>();
  const m = new Map<number, { v: number; pass: number }>();
  for (let pass = 1; pass <= 200; pass++) {
    const n = rnd(300);
    for (let i = 0; i < n; i++) {
      const s = rnd(500), v = rnd(1000);
      if (rnd(3) === 0 && m.has(s)) { t.mark(s, pass); m.get(s)!.pass = pass; continue; }
      t.set(s, v, pass);
      m.set(s, { v, pass });
    }
    if (pass % 5 === 0) for (const [s, r] of m) { t.mark(s, pass); r.pass = pass; } // every slot marked: nothing to forget
    const gone: number[] = [];
    t.forgetUnmarked(pass, (_v, s) => gone.push(s));
    assert.deepEqual(gone, forgetUnmarked(m, pass).sort((x, y) => x - y));
    const kept: [number, number][] = [];
    t.forEach((v, s) => kept.push([s, v]));
    assert.deepEqual(kept, [...m].map(([s, r]): [number, number] => [s, r.v]).sort((x, y) => x[0] - y[0]));
  }
});
