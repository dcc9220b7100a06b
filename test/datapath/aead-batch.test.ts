// Batch AEAD through the native addon, checked byte for byte against node:crypto single-shot.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, randomBytes, type CipherGCMTypes } from 'node:crypto';
import { AeadBatch, AeadKey, cryptoPoolBatches, setCryptoThreads } from '../../src/datapath/aead-batch.js';
import type { AeadAlgorithm } from '../../src/native/addon.js';
import { isVeilError } from '../../src/util/errors.js';

const KEY_LEN: Record<AeadAlgorithm, number> = { 'chacha20-poly1305': 32, 'aes-128-gcm': 16, 'aes-192-gcm': 24, 'aes-256-gcm': 32 };

function referenceSeal(alg: AeadAlgorithm, key: Buffer, nonce: Buffer, aad: Buffer, pt: Buffer, tagLen: number): Buffer {
  const c = createCipheriv(alg as CipherGCMTypes, key, nonce, { authTagLength: tagLen });
  if (aad.length) c.setAAD(aad, { plaintextLength: pt.length });
  return Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]);
}

function referenceOpen(alg: AeadAlgorithm, key: Buffer, nonce: Buffer, aad: Buffer, ct: Buffer, tagLen: number): Buffer {
  const d = createDecipheriv(alg as CipherGCMTypes, key, nonce, { authTagLength: tagLen });
  d.setAuthTag(ct.subarray(ct.length - tagLen));
  if (aad.length) d.setAAD(aad, { plaintextLength: ct.length - tagLen });
  return Buffer.concat([d.update(ct.subarray(0, ct.length - tagLen)), d.final()]);
}

// Lays out packets like the datapath does: [aad | nonce | data | tag] per 2 KiB slot.
const EDGE_SIZES = [0, 1, 15, 16, 17, 64, 1420, 1500];
// Mostly full packets: enough work (> 48 KiB of ChaCha20) for a batch to be shared with the pool.
const LARGE_SIZES = [0, 1, 15, 1420, 1500, 1500, 1420, 1500];

function layout(n: number, aadLen: number, sizeCycle = EDGE_SIZES) {
  const buf = Buffer.alloc(n * 2048);
  const sizes = Array.from({ length: n }, (_, i) => sizeCycle[i % sizeCycle.length]!);
  const slots = sizes.map((len, i) => ({ aad: i * 2048, nonce: i * 2048 + 32, data: i * 2048 + 64, len, aadLen }));
  for (const s of slots) {
    randomBytes(aadLen).copy(buf, s.aad);
    randomBytes(12).copy(buf, s.nonce);
    randomBytes(s.len).copy(buf, s.data);
  }
  return { buf, slots };
}

// threads = 3: the batch is shared with two crypto threads (work claimed in chunks), same bytes.
for (const threads of [1, 3]) for (const [alg, aadLen, tagLen] of [
  ['chacha20-poly1305', 0, 16], ['aes-128-gcm', 0, 16], ['aes-128-gcm', 8, 16], ['aes-256-gcm', 12, 16],
  ['aes-192-gcm', 8, 16], ['aes-128-gcm', 8, 12], ['chacha20-poly1305', 16, 16],
] as [AeadAlgorithm, number, number][]) {
  test(`sealBatch/openBatch ${alg} aad=${aadLen} tag=${tagLen}, ${threads} crypto thread(s), match node:crypto`, () => {
    setCryptoThreads(threads);
    const pooledBefore = cryptoPoolBatches();
    const keyBytes = randomBytes(KEY_LEN[alg]);
    const key = AeadKey.create(alg, keyBytes, tagLen);
    const n = threads > 1 ? 160 : 40;
    const { buf, slots } = layout(n, aadLen, threads > 1 ? LARGE_SIZES : EDGE_SIZES);
    const original = Buffer.from(buf);
    const batch = new AeadBatch(n);
    for (const s of slots) batch.add(key, s.data, s.len, s.nonce, s.aad, s.aadLen);
    assert.equal(batch.seal(buf), n);
    for (const s of slots) {
      const pt = original.subarray(s.data, s.data + s.len);
      const want = referenceSeal(alg, keyBytes, original.subarray(s.nonce, s.nonce + 12), original.subarray(s.aad, s.aad + aadLen), pt, tagLen);
      assert.deepEqual(buf.subarray(s.data, s.data + s.len + tagLen), want, `packet of ${s.len} bytes`);
      // node:crypto accepts what we sealed
      assert.deepEqual(referenceOpen(alg, keyBytes, buf.subarray(s.nonce, s.nonce + 12), buf.subarray(s.aad, s.aad + aadLen),
        buf.subarray(s.data, s.data + s.len + tagLen), tagLen), pt);
    }
    // Tamper: flip a tag bit in packet 3, a ciphertext bit in 5 (if it has data), an AAD bit in 7.
    buf[slots[3]!.data + slots[3]!.len] ^= 1;
    if (slots[5]!.len > 0) buf[slots[5]!.data] ^= 0x80;
    if (aadLen > 0) buf[slots[7]!.aad] ^= 2;
    const bad = new Set([3, ...(slots[5]!.len > 0 ? [5] : []), ...(aadLen > 0 ? [7] : [])]);
    const ok = batch.open(buf);
    assert.equal(ok, n - bad.size);
    slots.forEach((s, i) => {
      assert.equal(batch.ok[i], bad.has(i) ? 0 : 1, `ok flag of packet ${i}`);
      if (!bad.has(i)) assert.deepEqual(buf.subarray(s.data, s.data + s.len), original.subarray(s.data, s.data + s.len));
    });
    // Only ChaCha20 batches are worth a helper; AES-GCM stays on the calling thread.
    assert.equal(cryptoPoolBatches() - pooledBefore, threads > 1 && alg === 'chacha20-poly1305' ? 2 : 0, 'seal and open shared with the pool');
    setCryptoThreads(1);
    key.free();
  });
}

test('one batch mixes keys and algorithms; a freed or bogus handle fails only its packet', () => {
  const k1 = AeadKey.create('chacha20-poly1305', randomBytes(32));
  const k2 = AeadKey.create('aes-128-gcm', randomBytes(16));
  const k3 = AeadKey.create('aes-256-gcm', randomBytes(32));
  const buf = Buffer.alloc(4096);
  const batch = new AeadBatch(8);
  batch.add(k1, 100, 50, 0);
  batch.add(k2, 300, 50, 0);
  batch.add(k3, 500, 50, 0);
  k3.free();
  batch.add(k1, 4090, 50, 0); // runs past the buffer
  assert.equal(batch.seal(buf), 2);
  assert.deepEqual([...batch.ok.subarray(0, 4)], [1, 1, 0, 0]);
  batch.descs[0] = 9999;
  batch.count = 1;
  assert.equal(batch.seal(buf), 0);
  k1.free();
  k2.free();
});

// An ESP SA seals or opens, never both: its key holds only that direction's context (half the
// native memory). 3 threads: the pool's copies of a one-direction key are made for that direction.
for (const threads of [1, 3]) test(`a seal-only and an open-only key, ${threads} crypto thread(s): each works its way and fails the other`, () => {
  setCryptoThreads(threads);
  const keyBytes = randomBytes(32);
  const seal = AeadKey.create('chacha20-poly1305', keyBytes, 16, 'seal');
  const open = AeadKey.create('chacha20-poly1305', keyBytes, 16, 'open');
  const n = 160;
  const { buf, slots } = layout(n, 8, LARGE_SIZES);
  const original = Buffer.from(buf);
  const batch = new AeadBatch(n);
  const run = (key: AeadKey, how: 'seal' | 'open') => {
    batch.clear();
    for (const s of slots) batch.add(key, s.data, s.len, s.nonce, s.aad, s.aadLen);
    return how === 'seal' ? batch.seal(buf) : batch.open(buf);
  };
  assert.equal(run(open, 'seal'), 0, 'an open-only key seals nothing');
  assert.deepEqual(buf, original, 'and leaves the packets alone');
  assert.equal(run(seal, 'seal'), n);
  const s0 = slots[3]!;
  assert.deepEqual(buf.subarray(s0.data, s0.data + s0.len + 16),
    referenceSeal('chacha20-poly1305', keyBytes, original.subarray(s0.nonce, s0.nonce + 12), original.subarray(s0.aad, s0.aad + 8), original.subarray(s0.data, s0.data + s0.len), 16));
  assert.equal(run(seal, 'open'), 0, 'a seal-only key opens nothing');
  assert.equal(run(open, 'open'), n);
  for (const s of slots) assert.deepEqual(buf.subarray(s.data, s.data + s.len), original.subarray(s.data, s.data + s.len));
  setCryptoThreads(1);
  seal.free();
  open.free();
});

test('bad keys and tags are VeilErrors', () => {
  assert.throws(() => AeadKey.create('aes-128-gcm', new Uint8Array(32)), (e) => isVeilError(e) && /16-byte key/.test(e.message));
  assert.throws(() => AeadKey.create('chacha20-poly1305', new Uint8Array(32), 12), (e) => isVeilError(e) && /12-byte tag/.test(e.message));
});

test('freed handles are reused and stay independent', () => {
  const a = AeadKey.create('aes-128-gcm', randomBytes(16));
  const h = a.handle;
  a.free();
  const b = AeadKey.create('aes-128-gcm', randomBytes(16));
  assert.equal(b.handle, h);
  b.free();
});

test('crypto thread counts outside 1..8 are VeilErrors', () => {
  assert.throws(() => setCryptoThreads(0), (e) => isVeilError(e) && /from 1 to 8/.test(e.message));
  assert.throws(() => setCryptoThreads(2.5), (e) => isVeilError(e) && /whole number/.test(e.message));
});

// A ChaCha20-Poly1305 key has no cipher context of its own: each thread's shared context takes the
// key at the packet. Keys interleaved packet by packet and in runs, on 1 and 3 threads, seal and
// open as node:crypto does, each under its own key.
for (const threads of [1, 3]) test(`ChaCha20-Poly1305 keys interleaved in one batch, ${threads} crypto thread(s): each packet under its own key`, () => {
  setCryptoThreads(threads);
  const keyBytes = Array.from({ length: 5 }, () => randomBytes(32));
  const keys = keyBytes.map((k) => AeadKey.create('chacha20-poly1305', k));
  const n = 160;
  const { buf, slots } = layout(n, 0, LARGE_SIZES);
  const original = Buffer.from(buf);
  // packets 0-79 alternate keys one by one; 80-159 come in runs of 16 a key
  const which = (i: number) => (i < 80 ? i % keys.length : Math.floor((i - 80) / 16) % keys.length);
  const batch = new AeadBatch(n);
  slots.forEach((s, i) => batch.add(keys[which(i)]!, s.data, s.len, s.nonce, 0, 0));
  assert.equal(batch.seal(buf), n);
  slots.forEach((s, i) => {
    const want = referenceSeal('chacha20-poly1305', keyBytes[which(i)]!, original.subarray(s.nonce, s.nonce + 12), Buffer.alloc(0), original.subarray(s.data, s.data + s.len), 16);
    assert.deepEqual(buf.subarray(s.data, s.data + s.len + 16), want, `packet ${i} under key ${which(i)}`);
  });
  assert.equal(batch.open(buf), n);
  for (const s of slots) assert.deepEqual(buf.subarray(s.data, s.data + s.len), original.subarray(s.data, s.data + s.len));
  // a packet under the wrong key fails alone
  batch.clear();
  slots.forEach((s, i) => batch.add(keys[which(i)]!, s.data, s.len, s.nonce, 0, 0));
  batch.seal(buf);
  batch.descs[5 * 6] = keys[(which(5) + 1) % keys.length]!.handle;
  assert.equal(batch.open(buf), n - 1);
  assert.equal(batch.ok[5], 0);
  setCryptoThreads(1);
  for (const k of keys) k.free();
});

test('a freed ChaCha20-Poly1305 key\'s handle reused by a new key: the new key seals, not the old one', () => {
  const b1 = randomBytes(32), b2 = randomBytes(32);
  const { buf, slots } = layout(1, 0, [64]);
  const original = Buffer.from(buf);
  const s = slots[0]!;
  const batch = new AeadBatch(1);
  const k1 = AeadKey.create('chacha20-poly1305', b1);
  batch.add(k1, s.data, s.len, s.nonce, 0, 0);
  assert.equal(batch.seal(buf), 1);
  const h = k1.handle;
  k1.free();
  const k2 = AeadKey.create('chacha20-poly1305', b2);
  assert.equal(k2.handle, h, 'the handle is reused');
  original.copy(buf);
  batch.clear();
  batch.add(k2, s.data, s.len, s.nonce, 0, 0);
  assert.equal(batch.seal(buf), 1);
  assert.deepEqual(buf.subarray(s.data, s.data + s.len + 16),
    referenceSeal('chacha20-poly1305', b2, original.subarray(s.nonce, s.nonce + 12), Buffer.alloc(0), original.subarray(s.data, s.data + s.len), 16));
  k2.free();
});
