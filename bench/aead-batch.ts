// Micro-benchmark: batch AEAD through the native addon (one crossing per 64 packets, one reused
// OpenSSL context per key) against node:crypto createCipheriv per packet, and the same batches
// shared with one extra crypto thread (the datapath's `datapath.cryptoThreads: 2`). Prints Gbit/s
// and ratios to node:crypto and to one thread.
// Run: npx tsc -p tsconfig.json && node dist/bench/aead-batch.js [packetBytes] [seconds] [batch]
import { createCipheriv, randomBytes, type CipherGCMTypes } from 'node:crypto';
import { AeadBatch, AeadKey, setCryptoThreads } from '../src/datapath/aead-batch.js';
import type { AeadAlgorithm } from '../src/native/addon.js';

const SIZE = Number(process.argv[2] ?? 1420);
const SECONDS = Number(process.argv[3] ?? 1.5);
const BATCH = Number(process.argv[4] ?? 64), SLOT = 2048;

function measure(fn: () => number): number {
  const end = performance.now() + SECONDS * 1000;
  let bytes = 0;
  while (performance.now() < end) bytes += fn();
  return (bytes * 8) / SECONDS / 1e9;
}

function perPacket(alg: AeadAlgorithm, key: Buffer): number {
  const pt = randomBytes(SIZE), nonce = Buffer.alloc(12);
  let ctr = 0;
  return measure(() => {
    for (let i = 0; i < BATCH; i++) {
      nonce.writeUInt32LE(ctr++, 4);
      const c = createCipheriv(alg as CipherGCMTypes, key, nonce, { authTagLength: 16 });
      c.update(pt);
      c.final();
      c.getAuthTag();
    }
    return BATCH * SIZE;
  });
}

function batched(alg: AeadAlgorithm, key: Buffer, withAad: boolean, threads: number): number {
  setCryptoThreads(threads);
  const k = AeadKey.create(alg, key);
  const buf = randomBytes(BATCH * SLOT);
  const batch = new AeadBatch(BATCH);
  let ctr = 0;
  const r = measure(() => {
    batch.clear();
    for (let i = 0; i < BATCH; i++) {
      const base = i * SLOT;
      buf.writeUInt32LE(ctr++, base + 20); // nonce at base+16, counter in it (as WireGuard / ESP IV)
      batch.add(k, base + 32, SIZE, base + 16, base, withAad ? 8 : 0);
    }
    batch.seal(buf);
    return BATCH * SIZE;
  });
  k.free();
  setCryptoThreads(1);
  return r;
}

console.log(`AEAD seal, ${SIZE}-byte packets, batches of ${BATCH}, one core, ${SECONDS}s each`);
console.log('algorithm           node:crypto/pkt   native batch   ratio   2 threads   ÷1 thread');
for (const alg of ['chacha20-poly1305', 'aes-128-gcm', 'aes-256-gcm'] as AeadAlgorithm[]) {
  const key = randomBytes(alg === 'aes-128-gcm' ? 16 : 32);
  const a = perPacket(alg, key);
  const b = batched(alg, key, alg !== 'chacha20-poly1305', 1);
  const c = batched(alg, key, alg !== 'chacha20-poly1305', 2);
  console.log(`${alg.padEnd(20)}${a.toFixed(2).padStart(10)} Gb/s${b.toFixed(2).padStart(10)} Gb/s${(b / a).toFixed(1).padStart(7)}x${c.toFixed(2).padStart(7)} Gb/s${(c / b).toFixed(2).padStart(8)}x`);
}
