// Receiver index -> handshake or keypair (wireguard-go's IndexTable). Indexes are random 32-bit
// values so they reveal nothing; the wire's receiver field is looked up here.
import { randomUint32 } from '../crypto/index.js';
import type { Handshake } from './noise-handshake.js';
import type { Keypair } from './keypair.js';
import type { Peer } from './peer.js';

/**
 * What an index names: a pending handshake, then the keypair it produced. A class, not an object
 * literal: entries outlive young-generation GCs, and V8 then switches a literal's allocation site
 * to old-space allocation and throws away every optimised function that inlined the literal (the
 * handshake path, recompiled a few rounds into a burst of handshakes). Instances of a class carry
 * no allocation site.
 */
export class IndexEntry {
  constructor(readonly peer: Peer, public handshake: Handshake | null, public keypair: Keypair | null) {}
}

export class IndexTable {
  private readonly table = new Map<number, IndexEntry>();

  /** Allocates a fresh non-zero index for a pending handshake. */
  newIndexForHandshake(peer: Peer, handshake: Handshake): number {
    for (;;) {
      const idx = randomUint32();
      if (idx === 0 || this.table.has(idx)) continue;
      this.table.set(idx, new IndexEntry(peer, handshake, null));
      return idx;
    }
  }

  /** Re-points a handshake's index at the keypair it produced. */
  swapIndexForKeypair(idx: number, keypair: Keypair): void {
    const e = this.table.get(idx);
    if (e) {
      e.handshake = null;
      e.keypair = keypair;
    }
  }

  /** Names a keypair handed over by a previous datapath under its own index; false when that index is taken. */
  restoreKeypair(idx: number, keypair: Keypair): boolean {
    if (idx === 0 || this.table.has(idx)) return false;
    this.table.set(idx, new IndexEntry(keypair.peer, null, keypair));
    return true;
  }

  get(idx: number): IndexEntry | undefined {
    return this.table.get(idx);
  }

  delete(idx: number): void {
    if (idx !== 0) this.table.delete(idx);
  }

  /** A keypair gone for good: its index freed and its keys zeroed (a peer's slots, or a lingering one expired). */
  eraseKeypair(kp: Keypair): void {
    this.delete(kp.localIndex);
    kp.zero();
  }

  get size(): number {
    return this.table.size;
  }
}
