// The device's peers by their earliest timer deadline: a binary min-heap of (deadline, peer), so a
// tick visits the peers whose timers are due and the next deadline is the heap's top, instead of a
// walk over every peer for each (at 5,000 peers those walks were ~20 % of the datapath worker, ten
// of each a second: the prober's acks arm a passive keepalive due somewhere in every 100 ms step).
// Entries are not removed when a timer is stopped or moved later: an entry whose deadline is not
// the peer's queued one is stale and skipped, and one popped early fires nothing (Peer.tick checks
// each timer) before the peer is queued again at its real deadline. Stale entries are dropped in
// one pass when they outnumber the live ones (a peer requeued at its key-erasure deadline, 9
// minutes out, and then armed earlier by its next packet leaves one each time).

/** What a queued item keeps: the deadline of its live entry, or NOT_QUEUED. */
export interface Queued {
  queuedAt: number;
}

/** queuedAt of an item with no live entry (deadlines are device-clock ms, never negative). */
export const NOT_QUEUED = -1;
/** queuedAt of an item that is never queued again (a removed peer). */
export const RETIRED = -2;

export class TimerQueue<T extends Queued> {
  private at: number[] = [];
  private items: T[] = [];
  /** Items with a live entry. */
  private live = 0;

  get size(): number {
    return this.items.length;
  }

  /** Queues `item` at `at` unless its live entry is already as early. */
  schedule(item: T, at: number): void {
    if (item.queuedAt === RETIRED || (item.queuedAt !== NOT_QUEUED && item.queuedAt <= at)) return;
    if (item.queuedAt === NOT_QUEUED) this.live++;
    item.queuedAt = at;
    this.push(at, item);
    if (this.items.length > 2 * this.live + 64) this.dropStale();
  }

  /** Takes `item` out for good (its entries go stale; it is never queued again). */
  retire(item: T): void {
    if (item.queuedAt >= 0) this.live--;
    item.queuedAt = RETIRED;
  }

  /** The earliest live deadline, or null; stale entries on top are dropped. */
  peek(): number | null {
    while (this.items.length > 0) {
      const top = this.items[0]!;
      if (top.queuedAt === this.at[0]) return this.at[0]!;
      this.pop();
    }
    return null;
  }

  /** The item of the earliest live entry (the one peek() answers), or null. */
  top(): T | null {
    return this.peek() === null ? null : this.items[0]!;
  }

  /** The item whose live deadline is earliest if it is <= now (no longer queued), else null. */
  takeDue(now: number): T | null {
    const at = this.peek();
    if (at === null || at > now) return null;
    const item = this.pop();
    item.queuedAt = NOT_QUEUED;
    this.live--;
    return item;
  }

  /** Keeps each item's live entry alone (one, should two share its deadline) and restores the heap order. */
  private dropStale(): void {
    const a = this.at, it = this.items;
    let n = 0;
    for (let i = 0; i < it.length; i++) {
      const item = it[i]!, at = a[i]!;
      if (item.queuedAt !== at) continue;
      item.queuedAt = -3 - at; // marks it kept (a value no deadline has); set back below
      a[n] = at;
      it[n++] = item;
    }
    a.length = n;
    it.length = n;
    for (let i = 0; i < n; i++) it[i]!.queuedAt = a[i]!;
    this.live = n;
    for (let i = (n >> 1) - 1; i >= 0; i--) this.siftDown(i, a[i]!, it[i]!, n);
  }

  private push(at: number, item: T): void {
    const a = this.at, it = this.items;
    let i = it.length;
    a.push(at);
    it.push(item);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]! <= at) break;
      a[i] = a[p]!;
      it[i] = it[p]!;
      i = p;
    }
    a[i] = at;
    it[i] = item;
  }

  private pop(): T {
    const a = this.at, it = this.items;
    const top = it[0]!;
    const lastAt = a.pop()!, last = it.pop()!;
    if (it.length > 0) this.siftDown(0, lastAt, last, it.length);
    return top;
  }

  /** Puts (at, item) at i or below it, moving the smaller children up (n: the heap's size). */
  private siftDown(i: number, at: number, item: T, n: number): void {
    const a = this.at, it = this.items;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && a[c + 1]! < a[c]!) c++;
      if (a[c]! >= at) break;
      a[i] = a[c]!;
      it[i] = it[c]!;
      i = c;
    }
    a[i] = at;
    it[i] = item;
  }
}
