// Values kept across passes in a column by slot, each with the last pass that marked it (as
// forget-unmarked.ts, without a map): whoever hands out the slots keys them. MarkedTable keys its
// own by a map; the tunnel keeps what it applied by the slots its mode's table hands out, so the
// same peers are not held by two maps (~46 B a peer at 5,000).

export class MarkedSlots<V> {
  private readonly values: (V | undefined)[] = [];
  /** The last pass that marked each slot. */
  private marks = new Uint32Array(64);

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
    return this.values[slot] !== undefined && this.marks[slot] === pass;
  }

  /** Puts `value` in `slot` (any slot >= 0) and marks it with `pass` (a pass number > 0). */
  set(slot: number, value: V, pass: number): void {
    checkPass(pass);
    if (!(Number.isInteger(slot) && slot >= 0)) throw new RangeError(`a slot must be an integer >= 0, not ${slot}`);
    this.marks = growMarks(this.marks, slot);
    this.values[slot] = value;
    this.marks[slot] = pass;
  }

  /** Marks the value in `slot` (one that holds a value) with `pass`: what set() does to a value unchanged. */
  mark(slot: number, pass: number): void {
    checkPass(pass);
    if (this.values[slot] === undefined) throw new RangeError(`slot ${slot} is free`);
    this.marks[slot] = pass;
  }

  /** Empties `slot`. */
  delete(slot: number): void {
    this.values[slot] = undefined;
  }

  /** Each value and its slot, in slot order. */
  forEach(f: (value: V, slot: number) => void): void {
    const values = this.values;
    for (let s = 0; s < values.length; s++) if (values[s] !== undefined) f(values[s]!, s);
  }

  /** Whether a slot holds a value not marked with `pass`: a scan of the columns, no call per slot. */
  anyUnmarked(pass: number): boolean {
    const values = this.values, marks = this.marks;
    for (let s = 0; s < values.length; s++) if (marks[s] !== pass && values[s] !== undefined) return true;
    return false;
  }

  /** Empties the slots that pass `pass` did not mark, telling onForget each value and slot first. */
  forgetUnmarked(pass: number, onForget: (value: V, slot: number) => void): void {
    // Most passes forget nothing: the columns tell, without a call per slot.
    if (!this.anyUnmarked(pass)) return;
    const values = this.values, marks = this.marks;
    for (let s = 0; s < values.length; s++) {
      if (marks[s] === pass || values[s] === undefined) continue;
      onForget(values[s]!, s);
      values[s] = undefined;
    }
  }
}

/** A marks column that has `slot`: `marks` itself, or a copy twice as long (or long enough). */
export function growMarks(marks: Uint32Array<ArrayBuffer>, slot: number): Uint32Array<ArrayBuffer> {
  if (slot < marks.length) return marks;
  const grown = new Uint32Array(Math.max(marks.length * 2, slot + 1));
  grown.set(marks);
  return grown;
}

/** A pass number is > 0 (a mark of 0 is no pass). */
export function checkPass(pass: number): void {
  if (!(pass > 0)) throw new RangeError(`a pass number must be positive, not ${pass}`);
}
