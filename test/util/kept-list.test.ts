// KeptList: the last pass's array handed back while a pass adds the same elements; otherwise a new
// array, and an array once handed out never changes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KeptList } from '../../src/util/kept-list.js';

function pass<T>(l: KeptList<T>, xs: T[]): T[] {
  l.start();
  for (const x of xs) l.add(x);
  return l.end();
}

test('kept list: the same array while nothing changes, a new one for a change, shorter or longer', () => {
  const a = {}, b = {}, c = {}, d = {};
  const l = new KeptList<object>();
  const first = pass(l, [a, b, c]);
  assert.deepEqual(first, [a, b, c]);
  assert.equal(pass(l, [a, b, c]), first, 'unchanged: the same array');

  const changed = pass(l, [a, d, c]);
  assert.notEqual(changed, first);
  assert.deepEqual(changed, [a, d, c]);
  assert.deepEqual(first, [a, b, c], 'the array handed out before is untouched');

  const shorter = pass(l, [a, d]);
  assert.deepEqual(shorter, [a, d]);
  assert.deepEqual(changed, [a, d, c]);
  const longer = pass(l, [a, d, c, b]);
  assert.deepEqual(longer, [a, d, c, b]);
  assert.deepEqual(shorter, [a, d]);
  assert.equal(pass(l, [a, d, c, b]), longer);
  assert.deepEqual(pass(l, []), []);
  assert.deepEqual(pass(l, [b]), [b]);
  assert.ok(Object.keys(pass(l, [b, c])).length === 2, 'no holes');
});
