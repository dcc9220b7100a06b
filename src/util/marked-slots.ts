// Values kept across passes in a column by slot, each with the last pass that marked it (as
// forget-unmarked.ts, without a map): whoever hands out the slots keys them. MarkedTable keys its
// own by a map; the tunnel keeps what it applied by the slots its mode's table hands out, so the
// same peers are not held by two maps (~46 B a peer at 5,000).
import { SlotMarks } from './slot-marks.js';

export class MarkedSlots<V> {
  private readonly values: (V | undefined)[] = [];
  /** The last pass that marked each slot (0: it holds no value). */
  private readonly marks = new SlotMarks();

  /** One more than the highest slot ever set (some below may be empty). */
  get length(): number {
    return this.values.length;
  }

  /** The value in `slot`, undefined if it holds none. */
  at(slot: number): V | undefined {
    return this.values[slot];
  }

  /** Whether `slot` holds a value that pass `pass` marked. */
  marked(slot: number, pass: number): boolean {
    return this.marks.marked(slot, pass);
  }

  /** Puts `value` in `slot` (any slot >= 0) and marks it with `pass` (a pass number > 0). */
  set(slot: number, value: V, pass: number): void {
    if (!(Number.isInteger(slot) && slot >= 0)) throw new RangeError(`a slot must be an integer >= 0, not ${slot}`);
    this.marks.mark(slot, pass);
    this.values[slot] = value;
  }

  /** Marks the value in `slot` (one that holds a value) with `pass`: what set() does to a value unchanged. */
  mark(slot: number, pass: number): void {
    if (!this.marks.inUse(slot)) throw new RangeError(`slot ${slot} is free`);
    this.marks.mark(slot, pass);
  }

  /** Empties `slot`. */
  delete(slot: number): void {
    this.values[slot] = undefined;
    this.marks.clear(slot);
  }

  /** A slot to set (MarkedTable's): one given back by release, else a new one. */
  take(): number {
    return this.marks.take();
  }

  /** Empties `slot` and hands it out again by take. */
  release(slot: number): void {
    this.values[slot] = undefined;
    this.marks.release(slot);
  }

  /** Each value and its slot, in slot order. */
  forEach(f: (value: V, slot: number) => void): void {
    const values = this.values;
    for (let s = 0; s < values.length; s++) if (values[s] !== undefined) f(values[s]!, s);
  }

  /** Whether a slot holds a value not marked with `pass`: a scan of the marks, no call per slot. */
  anyUnmarked(pass: number): boolean {
    return this.marks.anyUnmarked(pass);
  }

  /** Empties the slots that pass `pass` did not mark, telling onForget each value and slot first. */
  forgetUnmarked(pass: number, onForget?: (value: V, slot: number) => void): void {
    // Most passes forget nothing: the marks tell, without a call per slot.
    if (!this.marks.anyUnmarked(pass)) return;
    const values = this.values, marks = this.marks;
    for (let s = 0; s < values.length; s++) {
      if (values[s] === undefined || marks.marked(s, pass)) continue;
      onForget?.(values[s]!, s);
      values[s] = undefined;
      marks.clear(s);
    }
  }
}
