// Freed malloc'd memory goes back to the kernel (native/malloc-trim.c): buffers a burst allocated
// off the V8 heap and then dropped, leaving holes under a few that live on (as a burst of peer work
// leaves them), stay resident until mallocTrim() releases the free pages of every arena; the live
// ones keep their bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { native } from '../../src/native/addon.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function rssAnonKb(): number {
  return Number(/RssAnon:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1]);
}

test('mallocTrim gives the free pages between live blocks back, the live blocks keep their bytes', () => {
  const n = native();
  n.mallocTrim(); // from a trimmed start
  // 64 MB in 8 KB blocks (malloc'd from an arena, under the mmap threshold), written so they are resident; every 64th lives on
  let blocks: Uint8Array[] | undefined = Array.from({ length: 8192 }, (_, i) => new Uint8Array(8192).fill(i & 0xff));
  const kept = blocks.filter((_, i) => i % 64 === 63);
  blocks = undefined;
  for (let k = 0; k < 3; k++) gc();
  const before = rssAnonKb();
  assert.equal(n.mallocTrim(), 1, 'memory was given back');
  const after = rssAnonKb();
  assert.ok(before - after > 32 * 1024, `at least 32 of the 63 MB freed go back: RssAnon ${before} -> ${after} kB`);
  assert.ok(kept.every((b, j) => b.length === 8192 && b.every((x) => x === ((j * 64 + 63) & 0xff))), 'the live blocks are untouched');
});
