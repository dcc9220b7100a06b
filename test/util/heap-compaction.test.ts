// The agent's heap compaction: when it decides to compact (pure, with a given clock and heap size),
// that a compacting collection gives back pages a full collection keeps (real V8), and that what it
// freed off the heap goes back to the kernel at the next quiet check (real glibc).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { getHeapSpaceStatistics } from 'node:v8';
import { CompactionPolicy, HeapCompactor, QUIET_PACKETS_PER_SECOND, datapathQuiet, heapHeldBytes } from '../../src/util/heap-compaction.js';
import { returnFreedMalloc } from '../../src/native/malloc-trim.js';
import { fullCollection, heapFigures } from '../../src/util/heap-figures.js';

const MB = 1 << 20;
const thresholds = { growth: 1.25, minGrowthBytes: 4 * MB, checkIntervalMs: 10_000, quietChecks: 1 };

test('compaction policy: checks every interval, compacts a quiet heap grown past both thresholds, measures from the last compaction', () => {
  const p = new CompactionPolicy(40 * MB, 0, thresholds);
  assert.equal(p.checkDue(9_999), false);
  assert.equal(p.checkDue(10_000), true);
  assert.equal(p.due(10_000, 60 * MB, false), false, 'grown but busy: a burst under way');
  assert.equal(p.checkDue(19_999), false, 'a check sets the next one an interval later');
  assert.equal(p.due(20_000, 50 * MB, true), false, 'quiet, grown by 10 MB but not by 25 %');
  assert.equal(p.due(30_000, 50.5 * MB, true), true, 'quiet and grown past 25 %');
  p.compacted(42 * MB);
  assert.equal(p.floor, 42 * MB);
  assert.equal(p.due(40_000, 50.5 * MB, true), false, 'measured from the heap after the compaction');
  const small = new CompactionPolicy(8 * MB, 0, thresholds);
  assert.equal(small.due(10_000, 11.9 * MB, true), false, 'a small heap: 25 % is less than 4 MB');
  assert.equal(small.due(20_000, 12.1 * MB, true), true);
});

test('compaction pending: a heap grown past the thresholds, whether or not the thread is quiet yet; heapFigures reports it', () => {
  const p = new CompactionPolicy(40 * MB, 0, thresholds);
  assert.equal(p.grown(50 * MB), false);
  assert.equal(p.grown(50.5 * MB), true, 'pending: it compacts at the next quiet check');
  p.compacted(50.5 * MB);
  assert.equal(p.grown(50.5 * MB), false, 'compacted: nothing pending');
  assert.equal(heapFigures(false).compactionPending, undefined, 'no compactor on this thread yet');
  const c = new HeapCompactor(0, returnFreedMalloc, { ...thresholds, minGrowthBytes: 2 ** 40 });
  assert.equal(heapFigures(false).compactionPending, false, 'a compactor whose heap has not grown');
  assert.equal(c.count, 0);
});

test('compaction policy: with quietChecks, only after that many quiet checks in a row', () => {
  const p = new CompactionPolicy(40 * MB, 0, { ...thresholds, quietChecks: 3 });
  assert.equal(p.due(10_000, 60 * MB, true), false, 'one quiet check');
  assert.equal(p.due(20_000, 60 * MB, true), false, 'two');
  assert.equal(p.due(30_000, 60 * MB, false), false, 'busy again: the count starts over');
  assert.equal(p.due(40_000, 60 * MB, true), false);
  assert.equal(p.due(50_000, 60 * MB, true), false);
  assert.equal(p.due(60_000, 60 * MB, true), true, 'three quiet checks in a row');
});

test('datapath worker: quiet only without control requests and while the tunnel carries little, never under a flow', () => {
  assert.equal(datapathQuiet(0, 0, 2_000), true, 'idle');
  assert.equal(datapathQuiet(0, 400, 2_000), true, 'health probes and a 100/s ping');
  assert.equal(datapathQuiet(1, 0, 2_000), false, 'a peer table update: a burst under way');
  assert.equal(datapathQuiet(0, 2 * QUIET_PACKETS_PER_SECOND, 2_000), false, 'a flow at the threshold');
  assert.equal(datapathQuiet(0, 200_000, 2_000), false, 'one TCP stream: a compaction there would be a stall');
  assert.equal(datapathQuiet(0, 2 * QUIET_PACKETS_PER_SECOND - 1, 2_000), true);
  assert.equal(datapathQuiet(0, QUIET_PACKETS_PER_SECOND, 500), false, 'a rate, not a count: a short interval');
});

test('heap compaction: a compacting collection gives back the old-generation pages a full collection keeps around scattered survivors', () => {
  fullCollection(true);
  const c = new HeapCompactor(0, returnFreedMalloc, { ...thresholds, checkIntervalMs: 0 }); // its floor: the heap before the burst
  // A burst whose objects live long enough to reach the old generation, then mostly die: one in 16
  // lives on, so every page it filled keeps a few.
  const burst: ({ i: number; s: string; a: number[] } | undefined)[] = Array.from({ length: 1_000_000 }, (_, i) => ({ i, s: `peer-${i}`, a: [i, i + 1] }));
  fullCollection();
  for (let i = 0; i < burst.length; i++) if (i % 16 !== 0) burst[i] = undefined;
  fullCollection();
  const kept = oldSpace();
  let told = 0;
  const before = () => { told++; };
  assert.equal(c.check(1, false, before), false, 'not while busy');
  assert.equal(told, 0, 'a check that does not compact does not tell');
  assert.equal(c.check(2, true, before), true, `held ${heapHeldBytes()} B, past the floor ${c.policy.floor} B`);
  assert.equal(told, 1, 'told right before the compaction');
  const compacted = oldSpace();
  assert.equal(c.count, 1);
  assert.equal(c.policy.floor, heapHeldBytes());
  assert.ok(kept.held - kept.live > 30 * MB, `a full collection keeps the pages of scattered survivors (old space held ${kept.held} B, live ${kept.live} B)`);
  assert.ok(compacted.held - compacted.live < (kept.held - kept.live) / 4, `compacted: old space held ${compacted.held} B around ${compacted.live} B (before: ${kept.held} around ${kept.live})`);
  assert.equal(burst.filter(Boolean).length, 1_000_000 / 16);
});

function oldSpace(): { held: number; live: number } {
  const s = getHeapSpaceStatistics().find((x) => x.space_name === 'old_space')!;
  return { held: s.space_size, live: s.space_used_size };
}

test('malloc trim: once per compaction, at the first quiet check after it, never at a busy one', () => {
  const p = new CompactionPolicy(40 * MB, 0, thresholds);
  assert.equal(p.trimDue(true), false, 'nothing compacted yet: nothing to give back');
  p.compacted(42 * MB);
  assert.equal(p.trimDue(false), false, 'busy: waits');
  assert.equal(p.trimDue(true), true, 'the first quiet check');
  assert.equal(p.trimDue(true), false, 'once per compaction');
  p.compacted(42 * MB);
  p.compacted(42 * MB);
  assert.equal(p.trimDue(true), true, 'two compactions before a quiet check: one trim');
  assert.equal(p.trimDue(true), false);
});

test('heap compaction: what it freed off the V8 heap goes back to the kernel at the next quiet check (malloc trimmed)', () => {
  fullCollection(true);
  returnFreedMalloc(); // from a trimmed start
  const c = new HeapCompactor(0, returnFreedMalloc, { growth: 1, minGrowthBytes: 8 * MB, checkIntervalMs: 0, quietChecks: 1 });
  // The burst: 64 MB of ArrayBuffers (malloc'd, 8 KB blocks, resident), every 64th living on (the
  // compaction's collection frees the rest, glibc keeps the holes between the survivors), and
  // enough objects on the V8 heap that it grows past the compaction's threshold.
  let blocks: Uint8Array[] | undefined = Array.from({ length: 8192 }, (_, i) => new Uint8Array(8192).fill(i & 0xff));
  const kept = blocks.filter((_, i) => i % 64 === 63);
  blocks = undefined;
  const onHeap = Array.from({ length: 400_000 }, (_, i) => ({ i, s: `peer-${i}` }));
  const before = rssAnonKb();
  assert.equal(c.check(1, true), true, `compacted: held ${heapHeldBytes()} B, floor ${c.policy.floor} B`);
  assert.equal(c.check(2, false), false);
  assert.ok(rssAnonKb() - before > -16 * 1024, 'a busy check gives nothing back');
  fullCollection(); // by the next full collection V8's helper thread has freed the dead buffers' memory
  assert.equal(c.check(3, true), false, 'a quiet check: the trim, no compaction');
  const after = rssAnonKb();
  assert.ok(before - after > 32 * 1024, `at least 32 of the 63 MB freed go back: RssAnon ${before} -> ${after} kB`);
  assert.ok(kept.every((b, j) => b.every((x) => x === ((j * 64 + 63) & 0xff))), 'the survivors are untouched');
  assert.equal(onHeap.length, 400_000);
});

function rssAnonKb(): number {
  return Number(/RssAnon:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1]);
}
