// Large malloc'd blocks mapped on their own (native/malloc-trim.c's mallocMmapThreshold): with the
// threshold fixed they go back to the kernel as soon as they are freed, also after a larger block
// freed would have raised glibc's threshold. A file of its own: the threshold is process-wide, and
// it holds only for blocks the arenas' free chunks cannot serve (another test's freed megabytes would).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { native } from '../../src/native/addon.js';
import { MALLOC_MMAP_THRESHOLD_BYTES, mapLargeMallocBlocks } from '../../src/native/malloc-trim.js';
import { mallocStats } from '../../src/native/malloc-stats.js';
import { waitFor } from '../wait-for.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

test('mapLargeMallocBlocks: large blocks are mapped on their own and go back when freed, after a larger block freed too', async () => {
  const mapped = () => mallocStats().mmappedBytes;
  // glibc's default: a mapped block freed raises the threshold to its size, so later blocks below it come from an arena
  let raising: Uint8Array | undefined = new Uint8Array(16 << 20).fill(1);
  raising = undefined;
  for (let k = 0; k < 3; k++) gc();
  assert.equal(mapLargeMallocBlocks(), true, 'glibc took the threshold');
  const start = mapped();
  let blocks: Uint8Array[] | undefined = Array.from({ length: 32 }, (_, i) => new Uint8Array(MALLOC_MMAP_THRESHOLD_BYTES * 2).fill(i));
  const held = mapped();
  assert.ok(held - start >= 32 * MALLOC_MMAP_THRESHOLD_BYTES * 2, `32 blocks of twice the threshold mapped on their own: ${start} -> ${held} B`);
  assert.ok(blocks.every((b, i) => b[0] === i));
  blocks = undefined;
  // V8 frees dead ArrayBuffers' memory on a helper thread after a collection: asked until it has
  await waitFor(() => `unmapped once freed, no trim: ${held} -> ${mapped()} B`, () => {
    gc();
    return mapped() - start < MALLOC_MMAP_THRESHOLD_BYTES * 2;
  }, 30_000, { everyMs: 50 });
  assert.equal(raising, undefined);
});

test('mallocMmapThreshold: a threshold that is not a positive size is refused', () => {
  assert.throws(() => native().mallocMmapThreshold(0), RangeError);
  assert.throws(() => native().mallocMmapThreshold(-1), RangeError);
});
