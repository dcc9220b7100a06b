// Where the IPsec mode keeps its peers' derived key material: packed transforms (esp-transform.ts)
// whose bytes sit one after the other in shared chunks. A buffer per peer cost ~224 B (a typed
// array, an ArrayBuffer and its backing store's bookkeeping) for 40 bytes of keys; here a peer's
// keys cost their bytes, and every transform of a chunk holds the same view of it.
//
// Append only: bytes once handed out are never written again, so a transform's key material never
// changes under it and two transforms at the same place of the same chunk hold the same keys (the
// tunnel tells an unchanged spec by deep equality, the worker may still be applying an older one).
// A chunk goes when no transform in it is held any more. A message to the datapath worker carries
// each chunk its transforms use once (the structured clone keeps one copy of a buffer per message).
import { keyParts, packTransforms, type EspTransform, type PackedTransform } from './esp-transform.js';

/**
 * 1 KB: ~25 peers' keys (one key: 2 × 20 bytes for AES-128-GCM), ~9 B a peer of chunk overhead, and
 * what a one-peer message copies (a key change at a time: each one a backing store in the worker
 * until its next collection).
 */
export const KEY_CHUNK_BYTES = 1024;

export class KeyMaterialArena {
  #chunk: Uint8Array | undefined;
  #used = 0;

  constructor(private readonly chunkBytes = KEY_CHUNK_BYTES) {
    if (!Number.isInteger(chunkBytes) || chunkBytes <= 0) throw new RangeError('key chunk size must be a positive whole number');
  }

  /**
   * Copies of the transforms with their key material one after the other in the current chunk (a
   * new one when it is full; a set larger than a chunk gets a buffer of its own). The originals
   * are not touched: wiping them is the caller's.
   */
  pack(ts: readonly EspTransform[]): PackedTransform[] {
    let length = 0;
    for (const t of ts) for (const part of keyParts(t)) length += part.length;
    if (length > this.chunkBytes) return packTransforms(ts);
    if (!this.#chunk || this.#used + length > this.chunkBytes) {
      this.#chunk = new Uint8Array(this.chunkBytes);
      this.#used = 0;
    }
    const packed = packTransforms(ts, this.#chunk, this.#used);
    this.#used += length;
    return packed;
  }
}
