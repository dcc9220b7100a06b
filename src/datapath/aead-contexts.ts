// Native AEAD contexts by use: a key's context (AES-GCM ~1.1-1.5 KB of malloc each way; ChaCha20-Poly1305
// ~80 B, its key only, native/aead.c) exists only while the key carries packets. Made at a packet that needs it, kept while packets follow,
// released after idleMs without one (the engine's tick sweeps), freed at once when its owner dies.
// The owner keeps its key bytes, so the next packet makes a context again and seals or opens
// exactly as before. Held for every key's whole life, the contexts cost a large cluster KBs per
// peer: each peer has keys in force both ways, and the health prober touches them every 10-50 s.
// Both engines hold one: WireGuard's owners are keypairs, ESP's are SAs.
// A context is its native handle, a number in a row of typed arrays, the row named by a field of the
// owner (AeadOwner; a map by owner where the owners have none): a context swept and made again
// allocates nothing on the heap. With a wrapper object a context
// and a record an owner, a WireGuard agent at 5,000 peers made ~100-300 of each a second (the prober
// reaches a peer every ~50 s; its contexts idle out after 10 s) and each lived long enough to be
// promoted: the datapath worker's old generation filled with them between compactions.
import { AeadKey } from './aead-batch.js';

/** Which way a context works: sealing what we send or opening what we receive. */
export type AeadWay = 'seal' | 'open';

export const AEAD_CONTEXT_IDLE_MS = 10_000;

export interface AeadContextPolicy<Owner> {
  /** Makes owner's native context for `way` (from a copy of its key: the owner's bytes stay its own); its handle (AeadKey.createHandle). */
  make(owner: Owner, way: AeadWay): number;
  /**
   * Whether a context made for owner now should outlive the batch. Without it every context is
   * kept; with it, one refused serves only the batch being built (endBatch frees it), and a
   * second packet in that batch keeps it.
   */
  keeps?(owner: Owner): boolean;
  /** How long a kept context outlives its last packet (engine clock ms). */
  idleMs?: number;
  /**
   * The owners are AeadOwners: each names its row in its own field. Without it, a map by owner
   * names them (its entries made and deleted as contexts come and go; its table rehashed, garbage,
   * as they churn): for owners whose contexts are mostly batch-only (ESP's SAs).
   */
  rowInOwner?: boolean;
}

/** An owner that keeps its row of kept contexts itself (AeadContextPolicy.rowInOwner). */
export interface AeadOwner {
  /** Its row in its engine's AeadContexts (-1: none); written by AeadContexts only. */
  aeadRow: number;
}

/** No context (a handle is never negative), no row. */
const NONE = -1;

export class AeadContexts<Owner extends object> {
  readonly #make: (owner: Owner, way: AeadWay) => number;
  readonly #keeps: ((owner: Owner) => boolean) | undefined;
  readonly idleMs: number;
  readonly #rowInOwner: boolean;
  /** The row of each owner holding kept contexts, without rowInOwner. */
  readonly #held = new Map<Owner, number>();
  /** The row of each owner with contexts made for the batch being built only (policy.keeps refused them). */
  readonly #batch = new Map<Owner, number>();
  // A row: an owner's seal and open handles (NONE: none), the engine clock (ms) at its last packet
  // either way, and the owner if it holds the row past its batch (sweep's walk). Rows are reused
  // (#free); the arrays double when every row is taken.
  #seal = new Int32Array(16).fill(NONE);
  #open = new Int32Array(16).fill(NONE);
  #usedAt = new Float64Array(16);
  readonly #owners: (Owner | null)[] = [];
  /** Free rows below #rows, a stack of #freeCount. */
  #free = new Int32Array(16);
  #freeCount = 0;
  #rows = 0;
  /** Rows held past their batch. */
  #heldRows = 0;
  /** The last owner served and its row: a batch is mostly one tunnel's packets, so most lookups end here. */
  #lastOwner: Owner | null = null;
  #lastRow = NONE;
  #sweepAt = Infinity;

  constructor(policy: AeadContextPolicy<Owner>) {
    this.#make = policy.make;
    this.#keeps = policy.keeps;
    this.idleMs = policy.idleMs ?? AEAD_CONTEXT_IDLE_MS;
    this.#rowInOwner = policy.rowInOwner === true;
  }

  /** owner's context for `way` (its native handle), made now if it has none. `now`: the engine clock (ms). */
  get(owner: Owner, way: AeadWay, now: number): number {
    const r = owner === this.#lastOwner ? this.#lastRow : this.#rowOf(owner);
    if (r !== NONE) {
      const k = way === 'seal' ? this.#seal[r]! : this.#open[r]!;
      if (k !== NONE) {
        this.#usedAt[r] = now;
        this.#lastOwner = owner;
        this.#lastRow = r;
        return k;
      }
    }
    let k = this.#takeBatch(owner, way); // its second packet in this batch: keep it
    if (k === NONE) {
      k = this.#make(owner, way);
      if (this.#keeps !== undefined && !this.#keeps(owner)) {
        let b = this.#batch.get(owner);
        if (b === undefined) { b = this.#takeRow(); this.#batch.set(owner, b); }
        if (way === 'seal') this.#seal[b] = k; else this.#open[b] = k;
        return k;
      }
    }
    return this.#hold(owner, r, way, k, now);
  }

  /** After a batch is sealed or opened: the contexts made for it alone go (their key material wiped by OpenSSL). */
  endBatch(): void {
    if (this.#batch.size === 0) return;
    for (const b of this.#batch.values()) this.#freeRow(b);
    this.#batch.clear();
  }

  /** The owner died (its keys retired): its contexts go now. */
  release(owner: Owner): void {
    const r = this.#rowOf(owner);
    if (r === NONE) return;
    this.#freeRow(r);
    this.#owners[r] = null;
    this.#heldRows--;
    if (this.#rowInOwner) (owner as unknown as AeadOwner).aeadRow = NONE; else this.#held.delete(owner);
    if (owner === this.#lastOwner) { this.#lastOwner = null; this.#lastRow = NONE; }
  }

  /** Native contexts held now (each way of an owner counts one). */
  get count(): number {
    let n = 0;
    for (let r = 0; r < this.#rows; r++) if (this.#owners[r] != null) n += (this.#seal[r] !== NONE ? 1 : 0) + (this.#open[r] !== NONE ? 1 : 0);
    return n;
  }

  /** When sweep() has work next (Infinity: no contexts held). */
  get nextSweep(): number {
    return this.#sweepAt;
  }

  /** Releases the contexts of owners idle for idleMs. */
  sweep(now: number): void {
    if (now < this.#sweepAt) return;
    for (let r = 0; r < this.#rows; r++) {
      const owner = this.#owners[r];
      if (owner != null && now - this.#usedAt[r]! >= this.idleMs) this.release(owner);
    }
    this.#sweepAt = this.#heldRows ? now + this.idleMs / 2 : Infinity;
  }

  /** Frees every context (the engine closes). */
  clear(): void {
    this.endBatch();
    for (let r = 0; r < this.#rows; r++) {
      const owner = this.#owners[r];
      if (owner != null) this.release(owner);
    }
    this.#sweepAt = Infinity;
  }

  /** owner's row of kept contexts (NONE: it holds none past a batch). */
  #rowOf(owner: Owner): number {
    return this.#rowInOwner ? (owner as unknown as AeadOwner).aeadRow : this.#held.get(owner) ?? NONE;
  }

  #takeBatch(owner: Owner, way: AeadWay): number {
    const b = this.#batch.get(owner);
    if (b === undefined) return NONE;
    const col = way === 'seal' ? this.#seal : this.#open;
    const k = col[b]!;
    if (k === NONE) return NONE;
    col[b] = NONE;
    if (this.#seal[b] === NONE && this.#open[b] === NONE) { this.#batch.delete(owner); this.#free[this.#freeCount++] = b; }
    return k;
  }

  #hold(owner: Owner, r: number, way: AeadWay, k: number, now: number): number {
    if (r === NONE) {
      r = this.#takeRow();
      this.#owners[r] = owner;
      this.#heldRows++;
      if (this.#rowInOwner) (owner as unknown as AeadOwner).aeadRow = r; else this.#held.set(owner, r);
      if (this.#sweepAt === Infinity) this.#sweepAt = now + this.idleMs;
    }
    if (way === 'seal') this.#seal[r] = k; else this.#open[r] = k;
    this.#usedAt[r] = now;
    this.#lastOwner = owner;
    this.#lastRow = r;
    return k;
  }

  /** A row with no contexts. */
  #takeRow(): number {
    if (this.#freeCount > 0) return this.#free[--this.#freeCount]!;
    if (this.#rows === this.#seal.length) this.#grow();
    this.#owners.push(null);
    return this.#rows++;
  }

  /** Frees a row's contexts and gives the row back. */
  #freeRow(r: number): void {
    const s = this.#seal[r]!, o = this.#open[r]!;
    if (s !== NONE) AeadKey.freeHandle(s);
    if (o !== NONE) AeadKey.freeHandle(o);
    this.#seal[r] = this.#open[r] = NONE;
    this.#free[this.#freeCount++] = r;
  }

  #grow(): void {
    const n = this.#seal.length * 2;
    const seal = new Int32Array(n).fill(NONE), open = new Int32Array(n).fill(NONE), usedAt = new Float64Array(n), free = new Int32Array(n);
    seal.set(this.#seal); open.set(this.#open); usedAt.set(this.#usedAt); free.set(this.#free);
    this.#seal = seal; this.#open = open; this.#usedAt = usedAt; this.#free = free;
  }
}
