// Fixed-size slots carved out of shared typed arrays. An agent holds thousands of small arrays of
// the same size (an SA's key material, its replay window, a peer's address): each one on its own
// costs a typed array, an ArrayBuffer and, above 64 bytes, a malloc'd backing store, several times
// the bytes it holds; even a view into a shared chunk costs ~96 B, more than a key. So a slot is a
// number: its owner keeps the chunk (`array(slot)`) and the offset (`offset(slot)`) and reads there.
// A released slot is wiped first (key material must not outlive its owner) and handed out again.

const SLOTS_PER_CHUNK = 256;

/** Where slot `slot` of a slab of `slotLength`-element slots starts in its chunk (Slab.offset, for owners that keep only the slot). */
export function slotOffset(slot: number, slotLength: number): number {
  return (slot % SLOTS_PER_CHUNK) * slotLength;
}

type SlabArray = Uint8Array | Uint32Array;

export class Slab<T extends SlabArray> {
  readonly #make: (length: number) => T;
  /** Elements per slot. */
  readonly slotLength: number;
  readonly #chunks: T[] = [];
  #carved = 0;
  readonly #free: number[] = [];
  #inUse = 0;

  /** `make(n)`: a zeroed array of n elements (e.g. `(n) => new Uint8Array(n)`); slots are `slotLength` elements. */
  constructor(make: (length: number) => T, slotLength: number) {
    if (!Number.isInteger(slotLength) || slotLength <= 0) throw new RangeError('slab slot length must be a positive whole number');
    this.#make = make;
    this.slotLength = slotLength;
  }

  /** A zeroed slot, its own until release(). */
  take(): number {
    this.#inUse++;
    const reused = this.#free.pop();
    if (reused !== undefined) return reused;
    if (this.#carved % SLOTS_PER_CHUNK === 0) this.#chunks.push(this.#make(this.slotLength * SLOTS_PER_CHUNK));
    return this.#carved++;
  }

  /** The chunk the slot lives in (shared with other slots: read and write only at offset(slot)). */
  array(slot: number): T {
    return this.#chunks[(slot / SLOTS_PER_CHUNK) | 0]!;
  }

  /** Where the slot starts in array(slot). */
  offset(slot: number): number {
    return slotOffset(slot, this.slotLength);
  }

  /** A view of the slot (a typed array of its own: for cold paths and tests, not to keep). */
  view(slot: number): T {
    const at = this.offset(slot);
    return this.array(slot).subarray(at, at + this.slotLength) as T;
  }

  /**
   * The slot a view of it is (view(slot), or a view of the same words): for owners that keep the
   * view's object rather than the number (a walk over the chunks: not for a per-packet path).
   */
  slotOf(view: T): number {
    const i = this.#chunks.findIndex((c) => c.buffer === view.buffer);
    if (i < 0) throw new RangeError('not a slot of this slab');
    return i * SLOTS_PER_CHUNK + view.byteOffset / view.BYTES_PER_ELEMENT / this.slotLength;
  }

  /** Wipes the slot and takes it back. The caller forgets the number: a slot has one owner at a time. */
  release(slot: number): void {
    const at = this.offset(slot);
    this.array(slot).fill(0, at, at + this.slotLength);
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
  /** By length: an array, not a Map. */
  readonly #byLength: (Slab<Uint8Array> | undefined)[] = [];

  /** The slab of `length`-byte slots. */
  of(length: number): Slab<Uint8Array> {
    return this.#byLength[length] ?? this.make(length);
  }

  private make(length: number): Slab<Uint8Array> {
    if (!Number.isInteger(length) || length <= 0 || length > 1024) throw new RangeError('byte slab slots are 1 to 1024 bytes');
    return this.#byLength[length] = new Slab((n) => new Uint8Array(n), length);
  }

  /** Slots taken and not released, over every length. */
  get inUse(): number {
    let n = 0;
    for (const s of this.#byLength) if (s) n += s.inUse;
    return n;
  }
}
