// MarkedTable: a table kept across passes, its values and marks in columns by slot. What a pass did
// not mark goes at its end, exactly as forgetUnmarked() over a Map of marked records.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MarkedTable } from '../../src/util/marked-table.js';
import { forgetUnmarked } from '../../src/util/forget-unmarked.js';

test('entries a pass did not mark are forgotten and their slots reused; the values are the last set', () => {
  const t = new MarkedTable<string, { v: number }>();
  const a = { v: 1 }, b = { v: 2 }, c = { v: 3 };
  t.set('a', a, 1); t.set('b', b, 1); t.set('c', c, 1);
  assert.deepEqual(t.forgetUnmarked(1), []);
  t.set('a', { v: 10 }, 2); t.set('c', c, 2); // c marked again with its own value
  const gone: { v: number }[] = [];
  assert.deepEqual(t.forgetUnmarked(2, (v) => gone.push(v)), ['b']);
  assert.deepEqual(gone, [b]);
  assert.equal(t.size, 2);
  assert.equal(t.get('b'), undefined);
  assert.deepEqual(t.get('a'), { v: 10 });
  t.set('d', { v: 4 }, 3); // takes b's slot
  const seen: [string, number][] = [];
  t.forEach((v, k) => seen.push([k, v.v]));
  assert.deepEqual(seen.sort(), [['a', 10], ['c', 3], ['d', 4]]);
  assert.throws(() => t.set('e', { v: 5 }, 0), /pass number must be positive/);
});

test('random passes: the same keys and values as forgetUnmarked over a Map of records, across growth', () => {
  let seed = 7;
  const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) >>> 0; return seed % n; };
  const t = new MarkedTable<number, number>();
  const m = new Map<number, { v: number; pass: number }>();
  for (let pass = 1; pass <= 200; pass++) {
    const n = rnd(300);
    for (let i = 0; i < n; i++) {
      const k = rnd(400), v = rnd(1000);
      t.set(k, v, pass);
      const had = m.get(k);
      if (had) { had.v = v; had.pass = pass; } else m.set(k, { v, pass });
    }
    if (pass % 5 === 0) for (const [k, r] of m) { t.set(k, r.v, pass); r.pass = pass; } // a pass that marks every entry: nothing to forget
    const gone = t.forgetUnmarked(pass).sort((x, y) => x - y);
    assert.deepEqual(gone, forgetUnmarked(m, pass).sort((x, y) => x - y));
    const kept: [number, number][] = [];
    t.forEach((v, k) => kept.push([k, v]));
    assert.deepEqual(kept.sort((x, y) => x[0] - y[0]), [...m].map(([k, r]): [number, number] => [k, r.v]).sort((x, y) => x[0] - y[0]));
    assert.equal(t.size, m.size);
  }
});

test('by slot: an entry keeps its slot while it stays, a pass may mark it there, a freed slot reads empty until handed out again', () => {
  const t = new MarkedTable<string, string>();
  const a = t.set('a', 'A', 1), b = t.set('b', 'B', 1);
  assert.deepEqual([a, b, t.slotCount], [0, 1, 2]);
  assert.equal(t.set('a', 'A2', 1), a, 'set again: the same slot');
  assert.deepEqual([t.slotOf('b'), t.at(b), t.slotOf('x')], [b, 'B', undefined]);
  t.markAt(b, 2);
  assert.deepEqual([t.marked('b', 2), t.marked('a', 2), t.marked('x', 2)], [true, false, false]);
  assert.deepEqual([t.markedAt(b, 2), t.markedAt(a, 2), t.markedAt(a, 1), t.markedAt(99, 2)], [true, false, true, false], 'markedAt: marked() by slot');
  assert.deepEqual(t.forgetUnmarked(2), ['a'], 'a mark made by slot counts as one made by set');
  assert.equal(t.at(a), undefined, 'a freed slot');
  assert.throws(() => t.markAt(a, 3), /slot 0 is free/);
  assert.throws(() => t.markAt(b, 0), /pass number must be positive/);
  assert.equal(t.set('c', 'C', 3), a, "c takes a's slot");
  assert.equal(t.slotCount, 2);
});
