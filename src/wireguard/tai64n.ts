// TAI64N timestamps (12 bytes, big-endian): 8 bytes of TAI64 seconds (2^62 + 10 + Unix seconds,
// as wireguard-go) and 4 bytes of nanoseconds. Used only to order initiations from one peer.

export const TAI64N_SIZE = 12;
const TAI64_BASE = 0x4000_0000_0000_000an;
/** Nanoseconds are rounded down to ~16.7 ms (2^24 ns), so the timestamp leaks less about the clock. */
const WHITENER_MASK = 0x100_0000;

/** Timestamp for wall-clock time `unixMs` (milliseconds since the Unix epoch). */
export function tai64n(unixMs: number): Uint8Array {
  const out = new Uint8Array(TAI64N_SIZE);
  const v = new DataView(out.buffer);
  const seconds = Math.floor(unixMs / 1000);
  const nanos = Math.floor((unixMs - seconds * 1000) * 1e6);
  v.setBigUint64(0, TAI64_BASE + BigInt(seconds), false);
  v.setUint32(8, Math.floor(nanos / WHITENER_MASK) * WHITENER_MASK, false);
  return out;
}

/** True if timestamp a is strictly later than b (both 12 bytes; lexicographic = chronological). */
export function tai64nAfter(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < TAI64N_SIZE; i++) {
    if (a[i] !== b[i]) return a[i]! > b[i]!;
  }
  return false;
}
