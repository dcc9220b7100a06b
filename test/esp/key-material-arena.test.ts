// The IPsec mode's key material arena: peers' packed keys one after the other in shared chunks,
// append only (bytes handed out never change), a new chunk when one is full, and a message to the
// worker carries a chunk once however many transforms of it it holds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KeyMaterialArena } from '../../src/esp/key-material-arena.js';
import { createOutboundSa, holdsTransform } from '../../src/esp/security-association.js';
import { OutboundSequence } from '../../src/esp/sequence-store.js';
import { AEAD_GCM, packedMaterial, type GcmTransform, type PackedTransform } from '../../src/esp/esp-transform.js';

const gcmOf = (fill: number): GcmTransform => ({ kind: 'aead', name: AEAD_GCM, key: new Uint8Array(16).fill(fill), salt: new Uint8Array(4).fill(fill + 1), icvLength: 16 });
const bytes = (t: PackedTransform) => [...packedMaterial(t)];

test('peers\' keys share a chunk, each at its own place; bytes handed out never change; a full chunk makes a new one', () => {
  const arena = new KeyMaterialArena(100); // two peers of 2 × 20 bytes, not three
  const a = arena.pack([gcmOf(1), gcmOf(3)]);
  const b = arena.pack([gcmOf(5), gcmOf(7)]);
  assert.equal(a[0]!.material, b[1]!.material, 'one chunk');
  assert.deepEqual([a[0]!.at, a[1]!.at, b[0]!.at, b[1]!.at], [0, 20, 40, 60]);
  assert.deepEqual(bytes(a[1]!), [...new Uint8Array(16).fill(3), 4, 4, 4, 4]);
  const c = arena.pack([gcmOf(9), gcmOf(11)]);
  assert.notEqual(c[0]!.material, a[0]!.material, 'a new chunk');
  assert.equal(c[0]!.at, 0);
  const d = arena.pack([gcmOf(13)]);
  assert.equal(d[0]!.material, c[0]!.material);
  assert.deepEqual([bytes(a[0]!), bytes(b[0]!)], [[...new Uint8Array(16).fill(1), 2, 2, 2, 2], [...new Uint8Array(16).fill(5), 6, 6, 6, 6]], 'earlier keys as they were');
  const big = arena.pack([gcmOf(1), gcmOf(2), gcmOf(3), gcmOf(4), gcmOf(5), gcmOf(6)]); // 120 bytes: more than a chunk
  assert.equal(big[0]!.material.length, 120, 'a set larger than a chunk: a buffer of its own');
  assert.equal(arena.pack([gcmOf(15)])[0]!.material, d[0]!.material, 'and the chunk in use stays in use');
});

test('a message carries a chunk once; the worker\'s SA takes the transform\'s own bytes', () => {
  const arena = new KeyMaterialArena();
  const specs = Array.from({ length: 50 }, (_, i) => arena.pack([gcmOf(i), gcmOf(100 + i)]));
  const copy = structuredClone(specs);
  const chunks = (xs: PackedTransform[][]) => new Set(xs.flat().map((t) => t.material)).size;
  assert.ok(chunks(specs) > 1 && chunks(specs) < 50, 'a few chunks for 50 peers');
  assert.equal(chunks(copy), chunks(specs), 'one copy of each chunk in the message');
  const t = copy[17]![1]!;
  const sa = createOutboundSa({ spi: 3, src: '10.0.0.1', dst: '10.0.0.2', transform: t, nowMs: 0, sequence: new OutboundSequence(0) });
  assert.deepEqual([...(sa.transform as GcmTransform).key], [...new Uint8Array(16).fill(117)]);
  assert.ok(holdsTransform(sa.transform, t) && !holdsTransform(sa.transform, copy[17]![0]!));
});

test('a bad chunk size is refused', () => {
  assert.throws(() => new KeyMaterialArena(0), RangeError);
});
