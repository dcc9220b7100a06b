// A table kept across passes (as forget-unmarked.ts) whose values are not records: each entry is a
// slot number, its value and its pass mark are columns by slot. A record per entry holding a value
// and a mark was 40 B (a header and two fields); the columns are ~18 B an entry with their spare
// capacity (heap snapshots at 1,000 and 5,000 entries). The keys are the map's only (a column of
// them was 11 B an entry more).
import { forgetUnmarked } from './forget-unmarked.js';
import { MarkedSlots } from './marked-slots.js';
import { checkPass } from './slot-marks.js';

export class MarkedTable<K, V> {
  /** Each key's slot. */
  private readonly slots = new Map<K, number>();
  /** Each slot's value and mark (and the slots given back, reused first). */
  private readonly columns = new MarkedSlots<V>();

  get size(): number {
    return this.slots.size;
  }

  get(key: K): V | undefined {
    const s = this.slots.get(key);
    return s === undefined ? undefined : this.columns.at(s);
  }

  /** Whether pass `pass` marked `key`'s entry. */
  marked(key: K, pass: number): boolean {
    const s = this.slots.get(key);
    return s !== undefined && this.columns.marked(s, pass);
  }

  /**
   * `key`'s slot: an entry keeps its slot while it stays, a slot freed is handed out again. A
   * caller may keep columns of its own by slot (0 <= slot < slotCount).
   */
  slotOf(key: K): number | undefined {
    return this.slots.get(key);
  }

  /** The slots handed out so far (some may be free: at() is undefined there). */
  get slotCount(): number {
    return this.columns.length;
  }

  /** The value in `slot`, undefined if the slot is free. */
  at(slot: number): V | undefined {
    return this.columns.at(slot);
  }

  /** Whether pass `pass` marked the entry in `slot` (slotOf's): marked() without a second lookup. */
  markedAt(slot: number, pass: number): boolean {
    return this.columns.marked(slot, pass);
  }

  /** Marks the entry in `slot` (one in use) with `pass`: what set() does to a value unchanged, without a second lookup. */
  markAt(slot: number, pass: number): void {
    this.columns.mark(slot, pass);
  }

  /** Sets `key`'s value and marks it with `pass` (a pass number > 0); returns its slot. */
  set(key: K, value: V, pass: number): number {
    checkPass(pass); // before a free slot is taken
    let s = this.slots.get(key);
    if (s === undefined) {
      s = this.columns.take();
      this.slots.set(key, s);
    }
    this.columns.set(s, value, pass);
    return s;
  }

  /** Each entry's value and key, in the order the keys came. */
  forEach(f: (value: V, key: K) => void): void {
    this.slots.forEach((s, key) => f(this.columns.at(s)!, key));
  }

  /** Deletes the entries that pass `pass` did not mark and returns their keys; onForget: told each value forgotten. */
  forgetUnmarked(pass: number, onForget?: (v: V) => void): K[] {
    // Most passes forget nothing: the columns tell, without a walk of the map and a call per entry.
    if (!this.columns.anyUnmarked(pass)) return [];
    const columns = this.columns;
    return forgetUnmarked(this.slots, pass, (s) => (columns.marked(s, pass) ? pass : 0), (s) => {
      onForget?.(columns.at(s)!);
      columns.release(s);
    });
  }
}
