// The device's peers by their earliest timer deadline: a binary min-heap of (deadline, peer), so a
// tick visits the peers whose timers are due and the next deadline is the heap's top, instead of a
// walk over every peer for each (at 5,000 peers those walks were ~20 % of the datapath worker, ten
// of each a second: the prober's acks arm a passive keepalive due somewhere in every 100 ms step).
// Entries are not removed when a timer is stopped or moved later: an entry whose deadline is not
// the peer's queued one is stale and skipped, and one popped early fires nothing (Peer.tick checks
// each timer) before the peer is queued again at its real deadline.

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

  get size(): number {
    return this.items.length;
  }

  /** Queues `item` at `at` unless its live entry is already as early. */
  schedule(item: T, at: number): void {
    if (item.queuedAt === RETIRED || (item.queuedAt !== NOT_QUEUED && item.queuedAt <= at)) return;
    item.queuedAt = at;
    this.push(at, item);
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

  /** The item whose live deadline is earliest if it is <= now (no longer queued), else null. */
  takeDue(now: number): T | null {
    const at = this.peek();
    if (at === null || at > now) return null;
    const item = this.pop();
    item.queuedAt = NOT_QUEUED;
    return item;
  }

  /** Every entry gone (the items keep their queuedAt: the caller resets them). */
  clear(): void {
    this.at = [];
    this.items = [];
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
    const n = it.length;
    if (n === 0) return top;
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && a[c + 1]! < a[c]!) c++;
      if (a[c]! >= lastAt) break;
      a[i] = a[c]!;
      it[i] = it[c]!;
      i = c;
    }
    a[i] = lastAt;
    it[i] = last;
    return top;
  }
}
