// A WireGuard keypair's native ChaCha20-Poly1305 contexts (~1.1 KB of malloc each way, native/aead.c):
// each made at the keypair's first packet that way, released after KEYPAIR_IDLE_MS without a packet
// (the engine's tick sweeps), freed when the keypair dies. Held for the keypair's whole life, they
// cost a cluster ~4 KB per peer: every peer keeps its current and previous keypair for minutes
// (rekeyed every 2 min, zeroed after 9) and the health prober sends through each every 10-50 s.
// A released keypair keeps its keys (the Keypair's own bytes); its next packet makes a context again.
import type { Keypair } from '../wireguard/keypair.js';
import { AeadKey } from './aead-batch.js';

export const KEYPAIR_IDLE_MS = 10_000;

/** What a keypair's nativeHandle holds here. */
interface Contexts {
  send: AeadKey | null;
  receive: AeadKey | null;
  /** The engine clock (ms) at its last packet either way. */
  usedAt: number;
}

export class KeypairContexts {
  /** Keypairs that hold a context: the sweep's walk, never all keypairs. */
  readonly #held = new Set<Keypair>();
  #sweepAt = Infinity;

  constructor(readonly idleMs = KEYPAIR_IDLE_MS) {}

  /** The context that seals what we send under `kp` (made now if it has none). */
  send(kp: Keypair, now: number): AeadKey {
    const c = this.#of(kp, now);
    return c.send ??= AeadKey.create('chacha20-poly1305', kp.sendKey, 16, 'seal');
  }

  /** The context that opens what the peer sends under `kp` (made now if it has none). */
  receive(kp: Keypair, now: number): AeadKey {
    const c = this.#of(kp, now);
    return c.receive ??= AeadKey.create('chacha20-poly1305', kp.receiveKey, 16, 'open');
  }

  #of(kp: Keypair, now: number): Contexts {
    let c = kp.nativeHandle as Contexts | null;
    if (!c) {
      c = { send: null, receive: null, usedAt: now };
      kp.nativeHandle = c;
      kp.onZero = (dead) => this.#release(dead);
      this.#held.add(kp);
      if (this.#sweepAt === Infinity) this.#sweepAt = now + this.idleMs;
    }
    c.usedAt = now;
    return c;
  }

  /** Native contexts held now (each way counts one). */
  get count(): number {
    let n = 0;
    for (const kp of this.#held) { const c = kp.nativeHandle as Contexts; n += (c.send ? 1 : 0) + (c.receive ? 1 : 0); }
    return n;
  }

  /** When sweep() has work next (Infinity: no contexts held). */
  get nextSweep(): number {
    return this.#sweepAt;
  }

  /** Releases the contexts of keypairs idle for idleMs (their key material wiped by OpenSSL on free). */
  sweep(now: number): void {
    if (now < this.#sweepAt) return;
    for (const kp of this.#held) if (now - (kp.nativeHandle as Contexts).usedAt >= this.idleMs) this.#release(kp);
    this.#sweepAt = this.#held.size ? now + this.idleMs / 2 : Infinity;
  }

  /** Frees every context (the engine closes). */
  clear(): void {
    for (const kp of this.#held) this.#release(kp);
  }

  #release(kp: Keypair): void {
    const c = kp.nativeHandle as Contexts | null;
    c?.send?.free();
    c?.receive?.free();
    kp.nativeHandle = null;
    kp.onZero = null;
    this.#held.delete(kp);
  }
}
