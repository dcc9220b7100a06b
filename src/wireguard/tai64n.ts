// TAI64N timestamps (12 bytes, big-endian): 8 bytes of TAI64 seconds (2^62 + 10 + Unix seconds,
// as wireguard-go) and 4 bytes of nanoseconds. Used only to order initiations from one peer.

export const TAI64N_SIZE = 12;
/** TAI64's base 2^62 + 10 as its high word and the 10 (added to the Unix seconds). */
const TAI64_HIGH = 0x4000_0000;
const TAI64_LOW = 10;
/** Nanoseconds are rounded down to ~16.7 ms (2^24 ns), so the timestamp leaks less about the clock. */
const WHITENER_MASK = 0x100_0000;

/** Timestamp for wall-clock time `unixMs` (milliseconds since the Unix epoch). */
export function tai64n(unixMs: number): Uint8Array {
  return tai64nInto(new Uint8Array(TAI64N_SIZE), unixMs);
}

/** tai64n() into out (12 bytes), with no allocation (no DataView, no BigInt): each initiation takes one. */
export function tai64nInto(out: Uint8Array, unixMs: number): Uint8Array {
  const seconds = Math.floor(unixMs / 1000);
  const nanos = Math.floor((unixMs - seconds * 1000) * 1e6);
  const tai = TAI64_LOW + seconds; // below 2^53 for any date a clock gives
  writeU32be(out, 0, TAI64_HIGH + Math.floor(tai / 0x1_0000_0000));
  writeU32be(out, 4, tai >>> 0);
  writeU32be(out, 8, Math.floor(nanos / WHITENER_MASK) * WHITENER_MASK);
  return out;
}

function writeU32be(out: Uint8Array, off: number, v: number): void {
  out[off] = v >>> 24;
  out[off + 1] = (v >>> 16) & 0xff;
  out[off + 2] = (v >>> 8) & 0xff;
  out[off + 3] = v & 0xff;
}

/** True if timestamp a is strictly later than b (both 12 bytes; lexicographic = chronological). */
export function tai64nAfter(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < TAI64N_SIZE; i++) {
    if (a[i] !== b[i]) return a[i]! > b[i]!;
  }
  return false;
}
