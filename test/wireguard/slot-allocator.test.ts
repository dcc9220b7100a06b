// The shared byte slots keypairs and peers keep their bytes in: handed out once each, zeroed and
// reused when released (a freed slot is kept as a number), a slot of another allocator refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SlotAllocator, type Slot } from '../../src/wireguard/slot-allocator.js';

test('slots across chunks are distinct; a released slot is zeroed and handed out again, last freed first', () => {
  const a = new SlotAllocator(64, 4);
  const slots: Slot[] = Array.from({ length: 10 }, () => a.alloc());
  const seen = new Set(slots.map((s) => `${[...new Set(slots.map((x) => x.chunk))].indexOf(s.chunk)}:${s.offset}`));
  assert.equal(seen.size, 10);
  assert.equal(new Set(slots.map((s) => s.chunk)).size, 3);
  for (const [i, s] of slots.entries()) s.chunk.fill(i + 1, s.offset, s.offset + 64);
  a.release({ chunk: slots[1]!.chunk, offset: slots[1]!.offset });
  a.release({ chunk: slots[6]!.chunk, offset: slots[6]!.offset });
  for (const i of [1, 6]) assert.ok(slots[i]!.chunk.subarray(slots[i]!.offset, slots[i]!.offset + 64).every((b) => b === 0));
  assert.ok(slots[2]!.chunk.subarray(slots[2]!.offset, slots[2]!.offset + 64).every((b) => b === 3), 'a neighbour untouched');
  const again = [a.alloc(), a.alloc()];
  assert.deepEqual(again.map((s) => [s.chunk, s.offset]), [[slots[6]!.chunk, slots[6]!.offset], [slots[1]!.chunk, slots[1]!.offset]]);
  const fresh = a.alloc();
  assert.ok(slots.every((s) => s.chunk !== fresh.chunk || s.offset !== fresh.offset), 'then a new slot');
});

test('a slot of another allocator, or not at a slot boundary, is refused', () => {
  const a = new SlotAllocator(64, 4), b = new SlotAllocator(64, 4);
  const s = b.alloc();
  assert.throws(() => a.release(s), /not a slot of this allocator/);
  const t = a.alloc();
  assert.throws(() => a.release({ chunk: t.chunk, offset: t.offset + 1 }), /not a slot of this allocator/);
});
