// A table kept across passes (as forget-unmarked.ts) whose values are objects that carry their own
// slot: the map holds the values themselves (no column of them beside it, as MarkedTable's), the
// pass marks are a column by slot. A mode's specs are kept so: the tunnel keeps what it applied by
// the same slots, read off the spec without a lookup (DesiredState.slotOf), and the spec's slot
// field replaces the pass field a record kept before (no byte more a peer).
import { forgetUnmarked } from './forget-unmarked.js';
import { SlotMarks, checkPass } from './slot-marks.js';

/** A value that knows its slot in its table (set by the table; -1 until it is in one). */
export interface Slotted { slot: number }

export class SlottedTable<K, V extends Slotted> {
  private readonly byKey = new Map<K, V>();
  /** The last pass that marked each slot (0: the slot is free), and the slots given back. */
  private readonly marks = new SlotMarks();

  get size(): number {
    return this.byKey.size;
  }

  get(key: K): V | undefined {
    return this.byKey.get(key);
  }

  /** Whether pass `pass` marked `value` (one in the table). */
  marked(value: V, pass: number): boolean {
    return this.marks.marked(value.slot, pass);
  }

  /** Marks `value` (one in the table) with `pass`: what set() does to a value unchanged. */
  mark(value: V, pass: number): void {
    if (!this.marks.inUse(value.slot)) throw new RangeError(`slot ${value.slot} is free`);
    this.marks.mark(value.slot, pass);
  }

  /**
   * Sets `key`'s value and marks it with `pass` (> 0): the value takes the slot of the one it
   * replaces, or a free one. `value` must not be in a table already (its slot is written).
   */
  set(key: K, value: V, pass: number): void {
    checkPass(pass);
    const had = this.byKey.get(key);
    if (had === value) {
      this.marks.mark(value.slot, pass);
      return;
    }
    const slot = had ? had.slot : this.marks.take();
    value.slot = slot;
    this.marks.mark(slot, pass);
    this.byKey.set(key, value);
  }

  /** Each value and its key, in the order the keys came. */
  forEach(f: (value: V, key: K) => void): void {
    this.byKey.forEach(f);
  }

  /** Deletes the entries that pass `pass` did not mark and returns their keys. */
  forgetUnmarked(pass: number): K[] {
    // Most passes forget nothing: the marks column tells, without a walk of the map and a call per entry.
    const marks = this.marks;
    if (!marks.anyUnmarked(pass)) return [];
    return forgetUnmarked(this.byKey, pass, (v) => (marks.marked(v.slot, pass) ? pass : 0), (v) => {
      marks.release(v.slot);
      v.slot = -1;
    });
  }
}
