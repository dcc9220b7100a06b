// Slab slots: zeroed when taken, independent of their neighbours, wiped when released and handed
// out again; byte slabs by length.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ByteSlabs, Slab } from '../../src/util/slab.js';

test('a slab hands out zeroed, independent slots across chunks and wipes a released one before reuse', () => {
  const slab = new Slab<Uint32Array>((n) => new Uint32Array(n), 32);
  const slots = Array.from({ length: 600 }, () => slab.take()); // more than two chunks
  assert.equal(slab.inUse, 600);
  slots.forEach((s, i) => { assert.equal(s.length, 32); assert.ok(s.every((w) => w === 0)); s.fill(i + 1); });
  slots.forEach((s, i) => assert.ok(s.every((w) => w === i + 1), `slot ${i} kept its own words`));
  const released = slots[7]!;
  slab.release(released);
  assert.equal(slab.inUse, 599);
  assert.ok(released.every((w) => w === 0), 'wiped on release');
  const again = slab.take();
  assert.equal(again, released, 'a released slot is handed out again');
  assert.ok(again.every((w) => w === 0));
  assert.ok(slots[6]!.every((w) => w === 7) && slots[8]!.every((w) => w === 9), 'its neighbours untouched');
});

test('byte slabs copy into a slot of the bytes\' own length and wipe it on release', () => {
  const slabs = new ByteSlabs();
  const key = new Uint8Array(16).map((_, i) => i + 1), salt = new Uint8Array([9, 9, 9, 9]);
  const k = slabs.copy(key), s = slabs.copy(salt);
  assert.deepEqual([...k], [...key]);
  assert.deepEqual([...s], [...salt]);
  key.fill(0);
  assert.equal(k[0], 1, 'a copy, not the caller\'s array');
  assert.equal(slabs.inUse, 2);
  slabs.release(k);
  assert.ok(k.every((b) => b === 0));
  assert.deepEqual([...s], [9, 9, 9, 9]);
  assert.equal(slabs.inUse, 1);
});
