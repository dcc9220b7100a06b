// Fixed-size slots carved out of shared typed arrays. An agent holds thousands of small arrays of
// the same size (an SA's key, its salt, its replay window): each one on its own costs a typed
// array, an ArrayBuffer and, above 64 bytes, a malloc'd backing store, several times the bytes it
// holds. A slot is a view into a chunk shared with the slots around it. A released slot is wiped
// first (key material must not outlive its owner) and handed out again.

const SLOTS_PER_CHUNK = 256;

type SlabArray = Uint8Array | Uint32Array;

export class Slab<T extends SlabArray> {
  readonly #make: (length: number) => T;
  readonly #slotLength: number;
  #chunk: T | undefined;
  #carved = SLOTS_PER_CHUNK;
  readonly #free: T[] = [];
  #inUse = 0;

  /** `make(n)`: a zeroed array of n elements (e.g. `(n) => new Uint8Array(n)`); slots are `slotLength` elements. */
  constructor(make: (length: number) => T, slotLength: number) {
    if (!Number.isInteger(slotLength) || slotLength <= 0) throw new RangeError('slab slot length must be a positive whole number');
    this.#make = make;
    this.#slotLength = slotLength;
  }

  /** A zeroed slot, its own until release(). */
  take(): T {
    this.#inUse++;
    const reused = this.#free.pop();
    if (reused) return reused;
    if (this.#carved === SLOTS_PER_CHUNK) {
      this.#chunk = this.#make(this.#slotLength * SLOTS_PER_CHUNK);
      this.#carved = 0;
    }
    const start = this.#carved++ * this.#slotLength;
    return this.#chunk!.subarray(start, start + this.#slotLength) as T;
  }

  /** Wipes the slot and takes it back. The caller drops every reference it kept to it: a slot has one owner at a time. */
  release(slot: T): void {
    slot.fill(0);
    this.#free.push(slot);
    this.#inUse--;
  }

  /** Slots taken and not released. */
  get inUse(): number {
    return this.#inUse;
  }
}

/** Slabs of byte slots, one per length asked for (key material comes in a few lengths). */
export class ByteSlabs {
  readonly #byLength = new Map<number, Slab<Uint8Array>>();

  /** A slot holding a copy of `bytes`. */
  copy(bytes: Uint8Array): Uint8Array {
    let slab = this.#byLength.get(bytes.length);
    if (!slab) this.#byLength.set(bytes.length, slab = new Slab((n) => new Uint8Array(n), bytes.length));
    const slot = slab.take();
    slot.set(bytes);
    return slot;
  }

  /** Wipes a slot copy() handed out and takes it back. */
  release(slot: Uint8Array): void {
    this.#byLength.get(slot.length)!.release(slot);
  }

  /** Slots taken and not released, over every length. */
  get inUse(): number {
    let n = 0;
    for (const s of this.#byLength.values()) n += s.inUse;
    return n;
  }
}
