// What the registry node source keeps of each cached Node object, as columns of one table by slot
// (as the health prober's and the tunnel's peers are): its version, age, lease, place in the peer
// list, liveness, the peer it makes, and its claim's entry in the admission. A record object per
// node (eleven fields, and its creation time a heap number of its own) was ~128 B a peer at 5,000
// peers; the columns are ~50 B. What few nodes have (a refusal's reason, an order other than the
// node's age, an age that is not a canonical timestamp) is kept by slot in maps of its own.
import type { PeerNode } from './node-source.js';
import { SlotPool } from '../util/slot-pool.js';
import { orderBefore, type AdmissionEntries, type Entry, type Order } from './peer-admission.js';

/** Slots the columns start with. */
const INITIAL_SLOTS = 64;
/**
 * Full columns grow by half, not double: the typed ones are 29 B a slot, and a doubling leaves more
 * of them unused (5,000 nodes in 8,192 slots: ~19 B a node; by half, 5,540 slots: ~3 B).
 */
const growth = (slots: number): number => slots + (slots >> 1);

/** Flags by slot. */
const LIVE = 1, ADMITTED = 2, ORDER_IS_AGE = 4;

export class NodeRecords {
  /** pool: where the slots come from (the node source's, which its peers carry: PeerNode.slot). */
  constructor(private readonly pool = new SlotPool()) {}

  private readonly slots = new Map<string, number>();
  private rvs = new Float64Array(INITIAL_SLOTS);
  /** A canonical creation time's milliseconds (creationOrder), NaN when the age is a text (ageTexts). */
  private ages = new Float64Array(INITIAL_SLOTS);
  /** NaN: no lease known (see RegistryNodeSource.lease for the numbers). */
  private leases = new Float64Array(INITIAL_SLOTS);
  private indexes = new Int32Array(INITIAL_SLOTS);
  private flags = new Uint8Array(INITIAL_SLOTS);
  private readonly peers: (PeerNode | undefined)[] = [];
  private readonly candidates: (PeerNode | undefined)[] = [];
  private readonly ageTexts = new Map<number, string>();
  /** The order a claim was decided under, where it is not its node's age (ORDER_IS_AGE). */
  private readonly orders = new Map<number, Order>();
  private readonly unusables = new Map<number, string>();
  private readonly reasons = new Map<number, string>();

  get size(): number {
    return this.slots.size;
  }

  slotOf(name: string): number | undefined {
    return this.slots.get(name);
  }

  has(name: string): boolean {
    return this.slots.has(name);
  }

  /** The names cached, in the order they were first cached. */
  names(): IterableIterator<string> {
    return this.slots.keys();
  }

  /** Every cached node's slot and name (forEach: no iterator's results as garbage). */
  forEach(fn: (slot: number, name: string) => void): void {
    this.slots.forEach(fn);
  }

  /** The slot of a name, a new one (no lease, not live, no peer, no entry) if it had none. */
  slotFor(name: string): number {
    const had = this.slots.get(name);
    if (had !== undefined) return had;
    const slot = this.pool.take();
    if (slot >= this.rvs.length) this.grow();
    this.rvs[slot] = 0;
    this.ages[slot] = NaN;
    this.leases[slot] = NaN;
    this.indexes[slot] = -1;
    this.flags[slot] = 0;
    this.peers[slot] = undefined;
    this.candidates[slot] = undefined;
    this.slots.set(name, slot);
    return slot;
  }

  /** The name leaves the table (its slot's objects are let go). Returns whether it was there. */
  delete(name: string): boolean {
    const slot = this.slots.get(name);
    if (slot === undefined) return false;
    this.slots.delete(name);
    this.peers[slot] = undefined;
    this.ageTexts.delete(slot);
    this.clearEntry(slot); // the candidate with the rest of its admission entry
    this.pool.release(slot);
    return true;
  }

  private grow(): void {
    const size = growth(this.rvs.length);
    const grown = <T extends Float64Array | Int32Array | Uint8Array>(a: T, make: (n: number) => T): T => { const b = make(size); b.set(a); return b; };
    this.rvs = grown(this.rvs, (n) => new Float64Array(n));
    this.ages = grown(this.ages, (n) => new Float64Array(n));
    this.leases = grown(this.leases, (n) => new Float64Array(n));
    this.indexes = grown(this.indexes, (n) => new Int32Array(n));
    this.flags = grown(this.flags, (n) => new Uint8Array(n));
  }

  rv(slot: number): number { return this.rvs[slot]!; }
  setRv(slot: number, rv: number): void { this.rvs[slot] = rv; }

  /** Who came first: its creation time as creationOrder made it (then its name: orderBefore). */
  age(slot: number): Order {
    const ms = this.ages[slot]!;
    return Number.isNaN(ms) ? this.ageTexts.get(slot) ?? '' : ms;
  }

  /**
   * Whether the node in slot a (named aName) came before the one in slot b (orderBefore on their
   * ages): two canonical times compared as the column's numbers (age() makes a heap number of each,
   * 16 B a read: ~2 MB for a sort of 5,000 peers).
   */
  ageBefore(a: number, aName: string, b: number, bName: string): boolean {
    const x = this.ages[a]!, y = this.ages[b]!;
    if (Number.isNaN(x) || Number.isNaN(y)) return orderBefore(this.age(a), aName, this.age(b), bName);
    return x === y ? aName < bName : x < y;
  }

  /** A new age; a claim decided under the old one keeps that as its order (the admission tells the change by it). */
  setAge(slot: number, age: Order): void {
    if (this.candidates[slot] && (this.flags[slot]! & ORDER_IS_AGE) !== 0) {
      const was = this.age(slot);
      if (was !== age) { this.orders.set(slot, was); this.setFlag(slot, ORDER_IS_AGE, false); }
    }
    if (typeof age === 'number') { this.ages[slot] = age; this.ageTexts.delete(slot); }
    else { this.ages[slot] = NaN; this.ageTexts.set(slot, age); }
  }

  /** Its lease: a live one's resourceVersion, leaseGone(version) for one deleted, undefined if none is known. */
  lease(slot: number): number | undefined {
    const l = this.leases[slot]!;
    return Number.isNaN(l) ? undefined : l;
  }

  setLease(slot: number, lease: number | undefined): void { this.leases[slot] = lease ?? NaN; }

  /** Where its peer is in the source's list of peers, -1 if it is not there. */
  index(slot: number): number { return this.indexes[slot]!; }
  setIndex(slot: number, i: number): void { this.indexes[slot] = i; }
  /** Every node out of the peer list (before it is made again). */
  clearIndexes(): void { this.indexes.fill(-1); }

  /** Its agent was alive at its last sync (RegistryNodeSource.sync). */
  live(slot: number): boolean { return (this.flags[slot]! & LIVE) !== 0; }
  setLive(slot: number, live: boolean): void { this.setFlag(slot, LIVE, live); }

  /** The peer its object makes (undefined for this node, or when its addresses are unusable). */
  peer(slot: number): PeerNode | undefined { return this.peers[slot]; }
  setPeer(slot: number, peer: PeerNode | undefined): void { this.peers[slot] = peer; }

  private setFlag(slot: number, flag: number, on: boolean): void {
    this.flags[slot] = on ? this.flags[slot]! | flag : this.flags[slot]! & ~flag;
  }

  private clearEntry(slot: number): void {
    this.candidates[slot] = undefined;
    this.setFlag(slot, ADMITTED | ORDER_IS_AGE, false);
    this.orders.delete(slot);
    this.unusables.delete(slot);
    this.reasons.delete(slot);
  }

  /**
   * The admission's entries, kept in the slots of the nodes they are for: an entry is set only for a
   * cached node (its claim is its peer), and a node leaves the table only after its claim left the
   * admission. get() hands out a view of the slot (the admission's writes land in the columns);
   * values() yields one view moved from slot to slot, in the names' order: read it before the next.
   */
  entries(): AdmissionEntries<PeerNode> {
    const get = (name: string): Entry<PeerNode> | undefined => {
      const slot = this.slots.get(name);
      return slot !== undefined && this.candidates[slot] ? new EntryView(this, slot) : undefined;
    };
    return {
      get,
      set: (name, e) => {
        const slot = this.slots.get(name)!;
        this.candidates[slot] = e.candidate;
        this.setOrder(slot, e.order);
        this.setUnusable(slot, e.unusable);
        this.setAdmitted(slot, e.admitted);
        this.setReason(slot, e.reason);
      },
      delete: (name) => {
        const slot = this.slots.get(name);
        if (slot !== undefined) this.clearEntry(slot);
      },
      values: () => this.entryViews(),
    };
  }

  private *entryViews(): IterableIterator<Entry<PeerNode>> {
    const view = new EntryView(this, -1);
    for (const slot of this.slots.values()) if (this.candidates[slot]) { view.slot = slot; yield view; }
  }

  candidate(slot: number): PeerNode | undefined { return this.candidates[slot]; }
  setCandidate(slot: number, c: PeerNode): void { this.candidates[slot] = c; }
  order(slot: number): Order { return (this.flags[slot]! & ORDER_IS_AGE) !== 0 ? this.age(slot) : this.orders.get(slot) ?? ''; }

  setOrder(slot: number, order: Order): void {
    const isAge = order === this.age(slot);
    this.setFlag(slot, ORDER_IS_AGE, isAge);
    if (isAge) this.orders.delete(slot); else this.orders.set(slot, order);
  }

  unusable(slot: number): string | undefined { return this.unusables.get(slot); }
  setUnusable(slot: number, why: string | undefined): void { if (why === undefined) this.unusables.delete(slot); else this.unusables.set(slot, why); }
  admitted(slot: number): boolean { return (this.flags[slot]! & ADMITTED) !== 0; }
  setAdmitted(slot: number, admitted: boolean): void { this.setFlag(slot, ADMITTED, admitted); }
  reason(slot: number): string | undefined { return this.reasons.get(slot); }
  setReason(slot: number, why: string | undefined): void { if (why === undefined) this.reasons.delete(slot); else this.reasons.set(slot, why); }
}

/** A node's admission entry read from and written to its slot's columns. */
class EntryView implements Entry<PeerNode> {
  constructor(private readonly records: NodeRecords, public slot: number) {}
  get candidate(): PeerNode { return this.records.candidate(this.slot)!; }
  set candidate(c: PeerNode) { this.records.setCandidate(this.slot, c); }
  get order(): Order { return this.records.order(this.slot); }
  set order(o: Order) { this.records.setOrder(this.slot, o); }
  get unusable(): string | undefined { return this.records.unusable(this.slot); }
  set unusable(why: string | undefined) { this.records.setUnusable(this.slot, why); }
  get admitted(): boolean { return this.records.admitted(this.slot); }
  set admitted(a: boolean) { this.records.setAdmitted(this.slot, a); }
  get reason(): string | undefined { return this.records.reason(this.slot); }
  set reason(why: string | undefined) { this.records.setReason(this.slot, why); }
}
