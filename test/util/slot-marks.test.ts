// SlotMarks: a slot holds a value while it has a mark; take hands out the slots given back first,
// then new ones; anyUnmarked tells whether a slot in use was not marked by a pass; the column grows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SlotMarks } from '../../src/util/slot-marks.js';

test('marks by slot, slots taken and given back, unmarked slots found, the column grown', () => {
  const m = new SlotMarks();
  const [a, b, c] = [m.take(), m.take(), m.take()];
  assert.deepEqual([a, b, c], [0, 1, 2]);
  assert.equal(m.inUse(a), false, 'taken, not marked yet');
  m.mark(a, 1); m.mark(b, 1); m.mark(c, 1);
  assert.deepEqual([m.inUse(a), m.marked(a, 1), m.marked(a, 2), m.anyUnmarked(1)], [true, true, false, false]);
  m.mark(a, 2); m.mark(c, 2);
  assert.equal(m.anyUnmarked(2), true, 'b was not marked by pass 2');
  m.release(b);
  assert.deepEqual([m.inUse(b), m.marked(b, 1), m.anyUnmarked(2)], [false, false, false]);
  assert.equal(m.take(), b, 'a slot given back is handed out first');
  assert.equal(m.take(), 3);
  m.mark(200, 5); // past the first 64: grown
  assert.deepEqual([m.inUse(200), m.marked(200, 5), m.slotCount], [true, true, 201]);
  m.clear(200);
  assert.equal(m.inUse(200), false);
  assert.equal(m.take(), 201, 'a cleared slot is not handed out again: its owner chose it');
  assert.equal(m.inUse(-1), false);
  assert.throws(() => m.mark(a, 0), /pass number must be positive/);
});
