// Native AEAD contexts by use: a key's context (AES-GCM ~1.1-1.5 KB of malloc each way; ChaCha20-Poly1305
// ~80 B, its key only, native/aead.c) exists only while the key carries packets. Made at a packet that needs it, kept while packets follow,
// released after idleMs without one (the engine's tick sweeps), freed at once when its owner dies.
// The owner keeps its key bytes, so the next packet makes a context again and seals or opens
// exactly as before. Held for every key's whole life, the contexts cost a large cluster KBs per
// peer: each peer has keys in force both ways, and the health prober touches them every 10-50 s.
// Both engines hold one: WireGuard's owners are keypairs, ESP's are SAs.
import { AeadKey } from './aead-batch.js';

/** Which way a context works: sealing what we send or opening what we receive. */
export type AeadWay = 'seal' | 'open';

export const AEAD_CONTEXT_IDLE_MS = 10_000;

export interface AeadContextPolicy<Owner> {
  /** Makes owner's native context for `way` (from a copy of its key: the owner's bytes stay its own). */
  make(owner: Owner, way: AeadWay): AeadKey;
  /**
   * Whether a context made for owner now should outlive the batch. Without it every context is
   * kept; with it, one refused serves only the batch being built (endBatch frees it), and a
   * second packet in that batch keeps it.
   */
  keeps?(owner: Owner): boolean;
  /** How long a kept context outlives its last packet (engine clock ms). */
  idleMs?: number;
}

/** An owner's kept contexts, one per way it has used lately. */
interface Held {
  seal: AeadKey | null;
  open: AeadKey | null;
  /** The engine clock (ms) at its last packet either way. */
  usedAt: number;
}

export class AeadContexts<Owner extends object> {
  readonly #make: (owner: Owner, way: AeadWay) => AeadKey;
  readonly #keeps: ((owner: Owner) => boolean) | undefined;
  readonly idleMs: number;
  readonly #held = new Map<Owner, Held>();
  /** Contexts made for the batch being built only (policy.keeps refused them). */
  readonly #batch = new Map<Owner, Held>();
  /** The last owner served: a batch is mostly one tunnel's packets, so most lookups end here. */
  #lastOwner: Owner | null = null;
  #lastHeld: Held | undefined;
  #sweepAt = Infinity;

  constructor(policy: AeadContextPolicy<Owner>) {
    this.#make = policy.make;
    this.#keeps = policy.keeps;
    this.idleMs = policy.idleMs ?? AEAD_CONTEXT_IDLE_MS;
  }

  /** owner's context for `way`, made now if it has none. `now`: the engine clock (ms). */
  get(owner: Owner, way: AeadWay, now: number): AeadKey {
    const h = owner === this.#lastOwner ? this.#lastHeld : this.#held.get(owner);
    if (h !== undefined) {
      const k = way === 'seal' ? h.seal : h.open;
      if (k !== null) {
        h.usedAt = now;
        this.#lastOwner = owner;
        this.#lastHeld = h;
        return k;
      }
    }
    let k = this.#takeBatch(owner, way); // its second packet in this batch: keep it
    if (k === null) {
      k = this.#make(owner, way);
      if (this.#keeps !== undefined && !this.#keeps(owner)) {
        const b = this.#batch.get(owner) ?? { seal: null, open: null, usedAt: now };
        if (way === 'seal') b.seal = k; else b.open = k;
        this.#batch.set(owner, b);
        return k;
      }
    }
    return this.#hold(owner, h, way, k, now);
  }

  /** After a batch is sealed or opened: the contexts made for it alone go (their key material wiped by OpenSSL). */
  endBatch(): void {
    if (this.#batch.size === 0) return;
    for (const b of this.#batch.values()) { b.seal?.free(); b.open?.free(); }
    this.#batch.clear();
  }

  /** The owner died (its keys retired): its contexts go now. */
  release(owner: Owner): void {
    const h = this.#held.get(owner);
    if (h === undefined) return;
    h.seal?.free();
    h.open?.free();
    this.#held.delete(owner);
    if (owner === this.#lastOwner) { this.#lastOwner = null; this.#lastHeld = undefined; }
  }

  /** Native contexts held now (each way of an owner counts one). */
  get count(): number {
    let n = 0;
    for (const h of this.#held.values()) n += (h.seal ? 1 : 0) + (h.open ? 1 : 0);
    return n;
  }

  /** When sweep() has work next (Infinity: no contexts held). */
  get nextSweep(): number {
    return this.#sweepAt;
  }

  /** Releases the contexts of owners idle for idleMs. */
  sweep(now: number): void {
    if (now < this.#sweepAt) return;
    for (const [owner, h] of this.#held) if (now - h.usedAt >= this.idleMs) this.release(owner);
    this.#sweepAt = this.#held.size ? now + this.idleMs / 2 : Infinity;
  }

  /** Frees every context (the engine closes). */
  clear(): void {
    this.endBatch();
    for (const owner of [...this.#held.keys()]) this.release(owner);
    this.#sweepAt = Infinity;
  }

  #takeBatch(owner: Owner, way: AeadWay): AeadKey | null {
    const b = this.#batch.get(owner);
    if (b === undefined) return null;
    const k = way === 'seal' ? b.seal : b.open;
    if (k === null) return null;
    if (way === 'seal') b.seal = null; else b.open = null;
    if (b.seal === null && b.open === null) this.#batch.delete(owner);
    return k;
  }

  #hold(owner: Owner, h: Held | undefined, way: AeadWay, k: AeadKey, now: number): AeadKey {
    if (h === undefined) {
      h = { seal: null, open: null, usedAt: now };
      this.#held.set(owner, h);
      if (this.#sweepAt === Infinity) this.#sweepAt = now + this.idleMs;
    }
    if (way === 'seal') h.seal = k; else h.open = k;
    h.usedAt = now;
    this.#lastOwner = owner;
    this.#lastHeld = h;
    return k;
  }
}
