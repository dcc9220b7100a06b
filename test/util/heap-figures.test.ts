// The agent's /memory figures for one thread: with a collection, garbage no longer counts as heap
// in use (what the scale bench's live-heap slope rests on); without one, it still does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { heapFigures } from '../../src/util/heap-figures.js';

test('heap figures: a full collection leaves only live objects in usedBytes; without one, garbage still counts', () => {
  const base = heapFigures(true);
  assert.equal(base.collected, true);
  let kept: { i: number; s: string }[] | undefined = Array.from({ length: 400_000 }, (_, i) => ({ i, s: `peer-${i}` }));
  const holding = heapFigures(true);
  assert.ok(holding.usedBytes - base.usedBytes > 10e6, `400,000 live objects add at least 10 MB of live heap (${holding.usedBytes - base.usedBytes})`);
  assert.equal(kept.length, 400_000);
  kept = undefined;
  const uncollected = heapFigures(false);
  assert.equal(uncollected.collected, false);
  assert.ok(uncollected.usedBytes - base.usedBytes > 10e6, 'dropped but not collected: still counted');
  const collected = heapFigures(true);
  assert.ok(collected.usedBytes - base.usedBytes < 2e6, `collected: back to the base (${collected.usedBytes - base.usedBytes} bytes above)`);
  for (const f of [base, holding, uncollected, collected]) {
    assert.ok(f.totalBytes >= f.usedBytes && f.youngBytes > 0 && f.youngBytes < f.totalBytes, JSON.stringify(f));
  }
});
