// Small byte helpers shared by the protocol cores.
import { randomBytes as nodeRandomBytes, timingSafeEqual } from 'node:crypto';

/** Cryptographically secure random bytes. */
export function randomBytes(n: number): Uint8Array {
  const b = nodeRandomBytes(n);
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
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
