// The writer of an agent's own fields against a store whose write is held open at will: writes go in
// call order, the same fields are not written twice, a store that no longer says what the agent asked
// for last gets it again, and our own newest write seen (by the watch) before its write call returned
// is not mistaken for a clobber: the older fields are never written over it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OwnFieldsWriter } from '../../src/agent/own-fields-writer.js';
import type { OwnFields } from '../../src/agent/node-source.js';

const fields = (key: number): OwnFields => ({
  agent: { ready: true, pid: 1, bootID: 'b', startedAt: 't', health: { state: 'Ok', problems: [] } },
  annotations: {}, encryptionKey: key,
});

/** A store of one node's fields; each write lands at once, its call returns when released. */
class HeldStore {
  stored?: number;
  writes: number[] = [];
  private held: (() => void)[] = [];
  hold = false;

  readonly write = (f: OwnFields): Promise<void> => {
    this.stored = f.encryptionKey;
    this.writes.push(f.encryptionKey!);
    if (!this.hold) return Promise.resolve();
    return new Promise((r) => this.held.push(r));
  };

  release(): void {
    for (const r of this.held.splice(0)) r();
  }
}

const settle = () => new Promise((r) => setImmediate(r));
const says = (store: HeldStore) => (f: OwnFields) => f.encryptionKey === store.stored;

test('our newest write seen before its call returned is no clobber: the older fields are not written over it', async () => {
  const store = new HeldStore();
  const w = new OwnFieldsWriter(store.write);
  await w.publish(fields(3));
  store.hold = true;
  const p = w.publish(fields(4));
  await settle();
  assert.equal(store.stored, 4, 'key 4 is in the store; its write call has not returned yet');
  w.reassert(says(store)); // the watch delivers the object with key 4
  store.release();
  await p;
  store.hold = false;
  await w.publish(fields(4)); // whatever was queued behind it has run
  assert.equal(store.stored, 4, 'key 4 stays in the store');
  assert.deepEqual(store.writes, [3, 4], 'nothing written after key 4');
  assert.equal(w.published()?.encryptionKey, 4);
});

test('a clobber is written over with the fields asked for last; the same fields are written once', async () => {
  const store = new HeldStore();
  const w = new OwnFieldsWriter(store.write);
  await w.publish(fields(3));
  await w.publish(fields(3));
  assert.deepEqual(store.writes, [3], 'the same fields are written once');
  store.stored = undefined; // someone else rewrote the object
  w.reassert(says(store));
  await w.publish(fields(3));
  assert.equal(store.stored, 3, 'written again');
  // the store holds older fields of ours again: the newest go in, never older ones
  await w.publish(fields(4));
  store.stored = 3;
  w.reassert(says(store));
  await w.publish(fields(4));
  assert.equal(store.stored, 4);
  assert.deepEqual(store.writes, [3, 3, 4, 4]);
});
