// SlottedTable: values that carry their own slot, marked pass after pass; what a pass did not mark
// goes at its end, exactly as forgetUnmarked() over a Map of marked records; the slots of the
// entries in the table are distinct, an entry keeps its slot while it stays (a value that replaces
// it takes it), and a freed slot is handed out again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SlottedTable } from '../../src/util/slotted-table.js';
import { forgetUnmarked } from '../../src/util/forget-unmarked.js';

interface V { v: number; slot: number }
const val = (v: number): V => ({ v, slot: -1 });

test('a value takes the slot of the one it replaces or a free one; marks by value; a forgotten value is out of every slot', () => {
  const t = new SlottedTable<string, V>();
  const a = val(1), b = val(2);
  t.set('a', a, 1); t.set('b', b, 1);
  assert.deepEqual([a.slot, b.slot], [0, 1]);
  const a2 = val(10);
  t.set('a', a2, 2);
  assert.equal(a2.slot, 0, "a's new value takes its slot");
  t.mark(b, 2);
  assert.deepEqual([t.marked(a2, 2), t.marked(b, 2), t.marked(b, 3)], [true, true, false]);
  assert.deepEqual(t.forgetUnmarked(2), [], 'all marked');
  t.mark(a2, 3);
  assert.deepEqual(t.forgetUnmarked(3), ['b']);
  assert.equal(b.slot, -1);
  assert.throws(() => t.mark(b, 4), /slot -1 is free/);
  assert.throws(() => t.set('c', val(3), 0), /pass number must be positive/);
  const c = val(3);
  t.set('c', c, 4);
  assert.equal(c.slot, 1, "c takes b's freed slot");
  assert.equal(t.get('c'), c);
  assert.equal(t.size, 2);
});

test('random passes: the same keys and values as forgetUnmarked over a Map of records, the slots distinct and kept, across growth', () => {
  let seed = 3;
  const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) >>> 0; return seed % n; };
  const t = new SlottedTable<number, V>();
  const m = new Map<number, { v: number; pass: number }>();
  for (let pass = 1; pass <= 200; pass++) {
    const slotsBefore = new Map<number, number>();
    t.forEach((v, k) => slotsBefore.set(k, v.slot));
    const n = rnd(300);
    for (let i = 0; i < n; i++) {
      const k = rnd(400);
      const had = t.get(k);
      if (had && rnd(2) === 0) { t.mark(had, pass); m.get(k)!.pass = pass; continue; }
      const v = rnd(1000);
      t.set(k, val(v), pass);
      m.set(k, { v, pass });
    }
    if (pass % 5 === 0) t.forEach((v, k) => { t.mark(v, pass); m.get(k)!.pass = pass; }); // every entry marked: nothing to forget
    assert.deepEqual(t.forgetUnmarked(pass).sort((x, y) => x - y), forgetUnmarked(m, pass).sort((x, y) => x - y));
    const kept: [number, number][] = [], slots = new Set<number>();
    t.forEach((v, k) => {
      kept.push([k, v.v]);
      slots.add(v.slot);
      if (slotsBefore.has(k)) assert.equal(v.slot, slotsBefore.get(k), `key ${k} kept its slot`);
    });
    assert.deepEqual(kept.sort((x, y) => x[0] - y[0]), [...m].map(([k, r]): [number, number] => [k, r.v]).sort((x, y) => x[0] - y[0]));
    assert.equal(slots.size, t.size, 'distinct slots');
    assert.ok(Math.max(-1, ...slots) < 400, 'freed slots are handed out again');
  }
});
