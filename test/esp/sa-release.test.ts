// SAs keep their key material and replay windows in an engine's slabs: copies of what they were
// given, wiped and taken back when the SA retires, so a retired key does not stay in memory and
// its slots serve the next SA with that SA's own key. A handed-over window resumes in its slot.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createInboundSa, createOutboundSa, releaseSa, SaSlabs } from '../../src/esp/security-association.js';
import { EspReplayWindow } from '../../src/esp/replay-window.js';
import { OutboundSequence } from '../../src/esp/sequence-store.js';
import type { GcmTransform } from '../../src/esp/esp-transform.js';
import { gcm } from './esp-helpers.js';

const params = (transform: GcmTransform) => ({ spi: 3, src: '10.0.0.1', dst: '10.0.0.2', transform, nowMs: 0 });

test('a retired SA\'s key, salt and window are wiped and their slots serve the next SA with its own key', () => {
  const slabs = new SaSlabs();
  const t1 = gcm(32) as GcmTransform, t2 = { ...gcm(32), key: new Uint8Array(32).fill(0x5a) } as GcmTransform;
  const out = createOutboundSa({ ...params(t1), sequence: new OutboundSequence(0) }, slabs);
  const inb = createInboundSa(params(t1), slabs);
  assert.equal(slabs.inUse, 2, 'two slots of key || salt; the window comes with the first packet');
  const outKey = (out.transform as GcmTransform).key, inKey = (inb.transform as GcmTransform).key, inSalt = (inb.transform as GcmTransform).salt;
  assert.deepEqual([...outKey], [...t1.key]);
  assert.deepEqual([...inSalt], [...t1.salt]);
  assert.notEqual(outKey.buffer, t1.key.buffer, 'a copy, not the spec\'s array');
  const window = inb.replay.storage;
  assert.equal(slabs.inUse, 3, 'and a window');
  assert.ok(inb.replay.accept(5) && inb.replay.accept(1000));

  releaseSa(inb);
  assert.ok(inKey.every((b) => b === 0) && inSalt.every((b) => b === 0), 'key material wiped');
  assert.ok(window.every((w) => w === 0), 'window wiped');
  assert.deepEqual([...outKey], [...t1.key], 'the other SA keeps its key');
  assert.equal(slabs.inUse, 1);

  const next = createInboundSa(params(t2), slabs);
  const nextKey = (next.transform as GcmTransform).key;
  assert.ok(nextKey.buffer === inKey.buffer && nextKey.byteOffset === inKey.byteOffset, 'the slot is reused');
  assert.deepEqual([...(next.transform as GcmTransform).key], [...t2.key], 'holding the new SA\'s own key');
  assert.equal(next.replay.top, 0);
  assert.ok(next.replay.check(5), 'a fresh window: nothing of the retired SA\'s is seen');
  releaseSa(out);
  releaseSa(next);
  assert.equal(slabs.inUse, 0);
});

test('made without slabs (a slab of its own), a retired SA\'s key material is wiped', () => {
  const t = gcm(16) as GcmTransform;
  const sa = createOutboundSa({ ...params(t), sequence: new OutboundSequence(0) });
  releaseSa(sa);
  assert.ok((sa.transform as GcmTransform).key.every((b) => b === 0));
  assert.deepEqual([...t.key], [...(gcm(16) as GcmTransform).key], 'the caller\'s transform untouched');
});

test('a handed-over window resumes exactly in its slot when not below the persisted mark; otherwise the mark\'s window', () => {
  const slabs = new SaSlabs();
  const old = new EspReplayWindow();
  for (const s of [1, 2, 3, 7, 9]) old.accept(s);
  const resumed = createInboundSa({ ...params(gcm(16) as GcmTransform), replayTop: 9, window: old.save() }, slabs);
  assert.equal(resumed.replay.top, 9);
  assert.deepEqual([4, 5, 6, 7, 8].map((s) => resumed.replay.check(s)), [true, true, true, false, true], 'numbers below the top not yet seen stay acceptable');
  const behind = createInboundSa({ ...params(gcm(16) as GcmTransform), replayTop: 50, window: old.save() }, slabs);
  assert.equal(behind.replay.top, 50, 'a mark above the handed-over top wins');
  assert.equal(behind.replay.check(20), false);
  const bad = createInboundSa({ ...params(gcm(16) as GcmTransform), replayTop: 4, window: { top: 9, bits: [1, 2] } }, slabs);
  assert.equal(bad.replay.top, 4, 'a window of another size is not taken');
  assert.equal(slabs.windows.inUse, 3);
});

test('an inbound SA makes its window and mark at first use, holding what they would have held from the start', () => {
  const slabs = new SaSlabs();
  const idle = createInboundSa({ ...params(gcm(16) as GcmTransform), replayTop: 40, nowMs: 7 }, slabs);
  assert.equal(idle.replayLive, false);
  assert.equal(idle.replayTop, 40, 'the persisted top, without a window');
  assert.deepEqual(idle.saveReplay(), new EspReplayWindow(1024, 40).save(), 'a handover of it carries the persisted top');
  assert.equal(idle.replayLive, false, 'saving made no window');
  assert.equal(slabs.inUse, 1, 'its key only');
  assert.deepEqual([1, 39, 40, 41].map((s) => idle.replay.check(s)), [false, false, false, true], 'up to the persisted top counts as seen');
  assert.equal(idle.replayLive, true);
  assert.equal(slabs.inUse, 2, 'a window slot at first use');
  assert.equal(idle.replayMark.durable, 40, 'the mark starts at the persisted top');
  assert.equal(idle.replayMark.movedSince(40), false);
  assert.ok(idle.replay.accept(41));
  assert.equal(idle.replayTop, 41);

  const fresh = createInboundSa(params(gcm(16) as GcmTransform), slabs);
  assert.equal(fresh.replayTop, 0);
  releaseSa(fresh);
  releaseSa(idle);
  assert.equal(slabs.inUse, 0, 'a window never made is never released; a made one is');
});

test('an idle inbound SA lets its window go: its slot back wiped, its top kept, nothing up to it accepted again, its mark kept', () => {
  const slabs = new SaSlabs();
  const sa = createInboundSa(params(gcm(16) as GcmTransform), slabs);
  assert.ok(sa.replay.accept(10) && sa.replay.accept(12));
  const mark = sa.replayMark;
  const window = sa.replay.storage;
  assert.equal(slabs.inUse, 2);
  sa.idleWindow();
  assert.equal(sa.replayLive, false);
  assert.equal(slabs.inUse, 1, 'the window slot went back');
  assert.ok(window.every((w) => w === 0), 'wiped');
  assert.equal(sa.replayTop, 12, 'the top stays');
  assert.equal(sa.replayMark, mark, 'the mark stays');
  assert.deepEqual([10, 11, 12, 13].map((s) => sa.replay.check(s)), [false, false, false, true], 'up to the top counts as seen (11 too: stricter, never looser)');
  assert.equal(slabs.inUse, 2, 'the next packet makes a window');
  assert.ok(sa.replay.accept(13) && !sa.replay.accept(13));
  sa.idleWindow();
  sa.idleWindow();
  releaseSa(sa);
  assert.equal(slabs.inUse, 0);
});
