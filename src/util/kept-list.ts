// A list that a pass makes again and again, mostly as it was: while the pass adds the same elements
// in the same order, nothing is allocated and the last pass's array is handed back; from its first
// difference on, a new array of the last one's size is filled. A pass over 5,000 peers that changes
// nothing then makes no array (one grown by push was ~60 KB and its copies ~100 KB more), and one
// that changes a peer makes one array, not a chain of them. An array handed out is never changed
// afterwards: a caller may keep it.
export class KeptList<T> {
  private last: T[] = [];
  /** This pass's array, from its first difference with the last one on. */
  private fresh?: T[];
  private count = 0;

  /** A pass begins. */
  start(): void {
    this.fresh = undefined;
    this.count = 0;
  }

  add(x: T): void {
    const i = this.count++;
    if (this.fresh) {
      if (i < this.fresh.length) this.fresh[i] = x; else this.fresh.push(x);
    } else if (i >= this.last.length || this.last[i] !== x) {
      this.fresh = new Array<T>(Math.max(this.last.length, i + 1));
      for (let j = 0; j < i; j++) this.fresh[j] = this.last[j]!;
      this.fresh[i] = x;
    }
  }

  /** The pass's list: the last one if it added the same elements, else the new one. */
  end(): T[] {
    if (!this.fresh && this.count === this.last.length) return this.last;
    const list = this.fresh ?? this.last.slice(0, this.count);
    list.length = this.count;
    this.fresh = undefined;
    return (this.last = list);
  }
}
