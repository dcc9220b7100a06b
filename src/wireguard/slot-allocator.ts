// Fixed-size byte slots carved from shared chunks. A peer keeps ~100 bytes (public key, handshake
// state, last mac1); in an ArrayBuffer of its own those bytes would cost ~250 more (the buffer
// object, its backing store record, its malloc) per peer. Freed slots are zeroed and reused.
export interface Slot {
  chunk: Uint8Array;
  offset: number;
}

export class SlotAllocator {
  private chunk: Uint8Array | null = null;
  private used = 0;
  private readonly free: Slot[] = [];

  constructor(readonly slotSize: number, readonly slotsPerChunk = 64) {}

  alloc(): Slot {
    const reused = this.free.pop();
    if (reused) return reused;
    if (!this.chunk || this.used === this.slotsPerChunk) {
      this.chunk = new Uint8Array(this.slotSize * this.slotsPerChunk);
      this.used = 0;
    }
    return { chunk: this.chunk, offset: this.slotSize * this.used++ };
  }

  /** Zeroes the slot and makes it available again; its holder must no longer use it. */
  release(slot: Slot): void {
    slot.chunk.fill(0, slot.offset, slot.offset + this.slotSize);
    this.free.push(slot);
  }
}
