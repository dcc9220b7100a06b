// Slab slots: zeroed when taken, independent of their neighbours, wiped when released and handed
// out again; byte slabs by length.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ByteSlabs, Slab } from '../../src/util/slab.js';

test('a slab hands out zeroed, independent slots across chunks and wipes a released one before reuse', () => {
  const slab = new Slab<Uint32Array>((n) => new Uint32Array(n), 32);
  const slots = Array.from({ length: 600 }, () => slab.take()); // more than two chunks
  assert.equal(slab.inUse, 600);
  assert.equal(new Set(slots).size, 600);
  slots.forEach((s, i) => {
    const v = slab.view(s);
    assert.equal(v.length, 32);
    assert.equal(v.buffer, slab.array(s).buffer, 'a view into the slot\'s chunk');
    assert.equal(v.byteOffset, slab.array(s).byteOffset + slab.offset(s) * 4);
    assert.ok(v.every((w) => w === 0));
    slab.array(s).fill(i + 1, slab.offset(s), slab.offset(s) + 32);
  });
  slots.forEach((s, i) => assert.ok(slab.view(s).every((w) => w === i + 1), `slot ${i} kept its own words`));
  assert.ok(slots.every((s) => slab.slotOf(slab.view(s)) === s), 'a view tells its slot (slotOf)');
  assert.throws(() => slab.slotOf(new Uint32Array(32)), RangeError);
  const released = slots[7]!;
  const view = slab.view(released);
  slab.release(released);
  assert.equal(slab.inUse, 599);
  assert.ok(view.every((w) => w === 0), 'wiped on release');
  const again = slab.take();
  assert.equal(again, released, 'a released slot is handed out again');
  assert.ok(slab.view(again).every((w) => w === 0));
  assert.ok(slab.view(slots[6]!).every((w) => w === 7) && slab.view(slots[8]!).every((w) => w === 9), 'its neighbours untouched');
});

test('byte slabs keep a slab per slot length', () => {
  const slabs = new ByteSlabs();
  const k = slabs.of(16).take(), s = slabs.of(4).take(), k2 = slabs.of(16).take();
  assert.equal(slabs.of(16).slotLength, 16);
  assert.equal(slabs.of(4).slotLength, 4);
  assert.equal(slabs.inUse, 3);
  slabs.of(16).view(k).fill(1);
  slabs.of(4).view(s).fill(9);
  slabs.of(16).release(k);
  assert.ok(slabs.of(16).view(k).every((b) => b === 0));
  assert.deepEqual([...slabs.of(4).view(s)], [9, 9, 9, 9], 'another length\'s slot untouched');
  assert.equal(slabs.inUse, 2);
  slabs.of(16).release(k2);
  slabs.of(4).release(s);
  assert.equal(slabs.inUse, 0);
});
