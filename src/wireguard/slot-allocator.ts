// Fixed-size byte slots carved from shared chunks. A peer keeps ~100 bytes (public key, handshake
// state, last mac1); in an ArrayBuffer of its own those bytes would cost ~250 more (the buffer
// object, its backing store record, its malloc) per peer. Freed slots are zeroed and reused.
export interface Slot {
  chunk: Uint8Array;
  offset: number;
}

export class SlotAllocator {
  private readonly chunks: Uint8Array[] = [];
  /** Each chunk's place in `chunks` (release() is given the chunk). */
  private readonly chunkNumbers = new Map<Uint8Array, number>();
  /** Slots handed out of the last chunk. */
  private used = 0;
  /**
   * Freed slots by number (chunk * slotsPerChunk + slot): a Smi each. A Slot object each was ~48 B a
   * freed slot, and a rekey frees one a peer.
   */
  private readonly free: number[] = [];

  constructor(readonly slotSize: number, readonly slotsPerChunk = 64) {}

  alloc(): Slot {
    const reused = this.free.pop();
    if (reused !== undefined) {
      return { chunk: this.chunks[Math.floor(reused / this.slotsPerChunk)]!, offset: (reused % this.slotsPerChunk) * this.slotSize };
    }
    if (this.chunks.length === 0 || this.used === this.slotsPerChunk) {
      const chunk = new Uint8Array(this.slotSize * this.slotsPerChunk);
      this.chunkNumbers.set(chunk, this.chunks.length);
      this.chunks.push(chunk);
      this.used = 0;
    }
    return { chunk: this.chunks[this.chunks.length - 1]!, offset: this.slotSize * this.used++ };
  }

  /** Zeroes the slot and makes it available again; its holder must no longer use it. */
  release(slot: Slot): void {
    const n = this.chunkNumbers.get(slot.chunk);
    if (n === undefined || slot.offset % this.slotSize !== 0) throw new Error('SlotAllocator.release: not a slot of this allocator');
    slot.chunk.fill(0, slot.offset, slot.offset + this.slotSize);
    this.free.push(n * this.slotsPerChunk + slot.offset / this.slotSize);
  }
}
