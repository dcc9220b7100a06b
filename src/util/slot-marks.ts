// The pass marks of values kept across passes in slots (as forget-unmarked.ts, without a map): the
// last pass that marked each slot, 0 for a slot that holds nothing, and the slots given back to hand
// out again. The tables that keep values by slot (marked-slots.ts, and through it
// marked-table.ts) keep their marks so, rather than each its own column and free list.

export class SlotMarks {
  private marks = new Uint32Array(64);
  /** Slots given back, handed out first (take). */
  private readonly free: number[] = [];
  /** One more than the highest slot ever marked or handed out. */
  private count = 0;

  /** The slots marked or handed out so far (some may be free). */
  get slotCount(): number {
    return this.count;
  }

  /** Whether pass `pass` (> 0) marked `slot`. */
  marked(slot: number, pass: number): boolean {
    return this.marks[slot] === pass;
  }

  /** Whether `slot` holds a value (a mark). */
  inUse(slot: number): boolean {
    return slot >= 0 && slot < this.marks.length && this.marks[slot] !== 0;
  }

  /** Marks `slot` (any integer >= 0) with `pass` (a pass number > 0), the column grown to hold it. */
  mark(slot: number, pass: number): void {
    checkPass(pass);
    if (slot >= this.marks.length) this.marks = growMarks(this.marks, slot);
    this.marks[slot] = pass;
    if (slot >= this.count) this.count = slot + 1;
  }

  /** A slot to put a value in: one given back (release), else a new one. Mark it to hold it. */
  take(): number {
    return this.free.pop() ?? this.count++;
  }

  /** `slot` holds nothing now (a slot the caller chose: not handed out again by take). */
  clear(slot: number): void {
    if (slot < this.marks.length) this.marks[slot] = 0;
  }

  /** `slot` holds nothing now and is handed out again by take. */
  release(slot: number): void {
    this.clear(slot);
    this.free.push(slot);
  }

  /** Whether a slot holds a value that pass `pass` did not mark: a scan of the column, no call per slot. */
  anyUnmarked(pass: number): boolean {
    const marks = this.marks, n = Math.min(this.count, marks.length);
    for (let s = 0; s < n; s++) if (marks[s] !== pass && marks[s] !== 0) return true;
    return false;
  }
}

/** A marks column that has `slot`: `marks` itself, or a copy twice as long (or long enough). */
function growMarks(marks: Uint32Array<ArrayBuffer>, slot: number): Uint32Array<ArrayBuffer> {
  if (slot < marks.length) return marks;
  const grown = new Uint32Array(Math.max(marks.length * 2, slot + 1));
  grown.set(marks);
  return grown;
}

/** A pass number is > 0 (a mark of 0 is no pass). */
export function checkPass(pass: number): void {
  if (!(pass > 0)) throw new RangeError(`a pass number must be positive, not ${pass}`);
}
