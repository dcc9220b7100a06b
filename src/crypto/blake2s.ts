// BLAKE2s-256 hash, HMAC-BLAKE2s, keyed BLAKE2s-128 (WireGuard's MAC) and the Noise KDF.
// Native (native/noise-crypto.c) when the addon is built: one crossing, no objects. Otherwise
// node:crypto's 'blake2s256' for hash and HMAC and @noble/hashes for keyed BLAKE2s (node:crypto
// has none). The *Into forms write into a caller's buffer, for the handshake's hot path.
import { createHash, createHmac } from 'node:crypto';
import { blake2s } from '@noble/hashes/blake2.js';
import { noise } from './native-backend.js';

export const BLAKE2S_SIZE = 32;
export const BLAKE2S_128_SIZE = 16;

const EMPTY = new Uint8Array(0);

function asBytes(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}

/** out = BLAKE2s-256(a || b || c). */
export function hashInto(out: Uint8Array, a: Uint8Array, b: Uint8Array = EMPTY, c: Uint8Array = EMPTY): Uint8Array {
  if (noise) {
    noise.noiseBlake2s(out, EMPTY, a, b, c);
    return out;
  }
  out.set(createHash('blake2s256').update(a).update(b).update(c).digest());
  return out;
}

/** BLAKE2s-256 of the concatenation of parts. */
export function hash(...parts: Uint8Array[]): Uint8Array {
  if (parts.length <= 3) return hashInto(new Uint8Array(BLAKE2S_SIZE), parts[0] ?? EMPTY, parts[1], parts[2]);
  const h = createHash('blake2s256');
  for (const p of parts) h.update(p);
  return asBytes(h.digest());
}

/** Keyed BLAKE2s with a 16-byte output: WireGuard's MAC(key, input) for mac1, mac2 and cookies. */
export function mac128(key: Uint8Array, input: Uint8Array, out: Uint8Array = new Uint8Array(BLAKE2S_128_SIZE)): Uint8Array {
  if (noise) noise.noiseBlake2s(out, key, input, EMPTY, EMPTY);
  else out.set(blake2s(input, { key, dkLen: BLAKE2S_128_SIZE }));
  return out;
}

/** HMAC-BLAKE2s-256 (RFC 2104 over BLAKE2s, 64-byte block). */
export function hmacBlake2s(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  const h = createHmac('blake2s256', key);
  for (const p of parts) h.update(p);
  return asBytes(h.digest());
}

const ONE = Uint8Array.of(1);
const TWO = Uint8Array.of(2);
const THREE = Uint8Array.of(3);

/**
 * Noise's HKDF over HMAC-BLAKE2s into out (32, 64 or 96 bytes: 1..3 outputs back to back),
 * derived from chaining key and input. out may alias the chaining key.
 */
export function kdfInto(out: Uint8Array, chainingKey: Uint8Array, input: Uint8Array): Uint8Array {
  if (noise) {
    noise.noiseKdf(out, chainingKey, input);
    return out;
  }
  const prk = hmacBlake2s(chainingKey, input);
  const t1 = hmacBlake2s(prk, ONE);
  out.set(t1, 0);
  if (out.length >= 64) {
    const t2 = hmacBlake2s(prk, t1, TWO);
    out.set(t2, 32);
    if (out.length >= 96) out.set(hmacBlake2s(prk, t2, THREE), 64);
    t2.fill(0);
  }
  t1.fill(0);
  prk.fill(0);
  return out;
}

/** Noise's HKDF: n (1..3) separate 32-byte outputs. */
export function kdf(n: 1 | 2 | 3, chainingKey: Uint8Array, input: Uint8Array): Uint8Array[] {
  const all = kdfInto(new Uint8Array(32 * n), chainingKey, input);
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) out.push(all.subarray(32 * i, 32 * i + 32));
  return out;
}
