// The one-or-more lists (a peer's one address or pod CIDR kept as the string itself): a string is
// one element, never its characters.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { eachOf, listOf, oneOrMore, sameElements } from '../../src/util/one-or-more.js';

test('one element is the element itself, more (or none) an exact copy', () => {
  const two = ['10.244.1.0/24', 'fd10::/64'];
  assert.equal(oneOrMore(['10.244.1.0/24']), '10.244.1.0/24');
  assert.deepEqual(oneOrMore(two), two);
  assert.notEqual(oneOrMore(two), two);
  assert.deepEqual(oneOrMore([]), []);
  assert.deepEqual(listOf('10.244.1.0/24'), ['10.244.1.0/24']);
});

test('sameElements compares elements in order, whichever form holds them', () => {
  assert.ok(sameElements('a', 'a'));
  assert.ok(sameElements('a', ['a']));
  assert.ok(sameElements(['a'], 'a'));
  assert.ok(sameElements(['a', 'b'], ['a', 'b']));
  assert.ok(sameElements([], []));
  assert.ok(!sameElements('a', 'b'));
  assert.ok(!sameElements('ab', ['a', 'b']), 'a string is one element, not its characters');
  assert.ok(!sameElements(['a', 'b'], 'ab'));
  assert.ok(!sameElements(['a', 'b'], ['b', 'a']));
  assert.ok(!sameElements('a', []));
  assert.ok(!sameElements(['a', 'b'], ['a']));
});

test('eachOf visits the one element once, and every element of an array in order', () => {
  const seen: string[] = [];
  eachOf('10.0.0.1', (v) => seen.push(v));
  eachOf(['10.0.0.2', 'fd00::2'], (v) => seen.push(v));
  eachOf([] as string[], (v) => seen.push(v));
  assert.deepEqual(seen, ['10.0.0.1', '10.0.0.2', 'fd00::2']);
});
