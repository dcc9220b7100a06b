// Small byte helpers shared by the protocol cores.
import { randomFillSync, timingSafeEqual } from 'node:crypto';

// Small random values (indexes, nonces, cookie secrets) come from a pool refilled 4 KiB at a
// time: one call into OpenSSL's CSPRNG per ~1000 indexes instead of one each. Bytes handed out
// are wiped from the pool.
const pool = new Uint8Array(4096);
let poolUsed = pool.length;

function take(n: number): number {
  if (poolUsed + n > pool.length) {
    randomFillSync(pool);
    poolUsed = 0;
  }
  const at = poolUsed;
  poolUsed += n;
  return at;
}

/** Cryptographically secure random bytes. */
export function randomBytes(n: number): Uint8Array {
  if (n > 256) return randomFillSync(new Uint8Array(n));
  const at = take(n);
  const out = pool.slice(at, at + n);
  pool.fill(0, at, at + n);
  return out;
}

/** A cryptographically secure random 32-bit unsigned integer. */
export function randomUint32(): number {
  const at = take(4);
  const v = (pool[at]! | (pool[at + 1]! << 8) | (pool[at + 2]! << 16) | (pool[at + 3]! << 24)) >>> 0;
  pool.fill(0, at, at + 4);
  return v;
}

/** Constant-time equality of two byte arrays (false when lengths differ). */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** True if every byte is zero (constant time over the length). */
export function isAllZero(a: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < a.length; i++) acc |= a[i]!;
  return acc === 0;
}

/** Overwrites secrets that are no longer needed. Cheap, so done wherever a key dies. */
export function zeroize(...arrays: (Uint8Array | null | undefined)[]): void {
  for (const a of arrays) a?.fill(0);
}
