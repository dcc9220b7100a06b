// Receiver index -> handshake or keypair (wireguard-go's IndexTable). Indexes are random (31 bits of
// the wire's 32) so they reveal nothing; the wire's receiver field is looked up here.
import { randomUint32 } from '../crypto/index.js';
import { Keypair } from './keypair.js';
import type { Peer } from './peer.js';
import type { SlotAllocator } from './slot-allocator.js';

/**
 * What an index names: a peer's pending handshake (the Peer: a peer has one handshake), then the
 * keypair it produced. The values themselves, not an entry object holding them (~50 B a keypair).
 */
export type Indexed = Peer | Keypair;

export class IndexTable {
  private readonly table = new Map<number, Indexed>();
  /**
   * Called with every keypair erased (eraseKeypair: where every live keypair dies), e.g. so a
   * datapath frees what it made for it. One hook a device, not a field in every keypair.
   */
  onKeypairErased: ((kp: Keypair) => void) | null = null;

  /** keySlots: where the keypairs named here keep their keys (Device.keySlots). */
  constructor(private readonly keySlots: SlotAllocator) {}

  /** Allocates a fresh non-zero index (below 2^31) for peer's pending handshake. */
  newIndexForHandshake(peer: Peer): number {
    for (;;) {
      // 31 random bits: a Smi in every field and map that holds it (a uint32 above 2^31 is a 16-B heap number each).
      const idx = randomUint32() >>> 1;
      if (idx === 0 || this.table.has(idx)) continue;
      this.table.set(idx, peer);
      return idx;
    }
  }

  /** Re-points a handshake's index at the keypair it produced. */
  swapIndexForKeypair(idx: number, keypair: Keypair): void {
    if (this.table.has(idx)) this.table.set(idx, keypair);
  }

  /** Names a keypair handed over by a previous datapath under its own index; false when that index is taken. */
  restoreKeypair(idx: number, keypair: Keypair): boolean {
    if (idx === 0 || this.table.has(idx)) return false;
    this.table.set(idx, keypair);
    return true;
  }

  /** What idx names, if anything. */
  get(idx: number): Indexed | undefined {
    return this.table.get(idx);
  }

  /** The keypair idx names (undefined for none or a pending handshake). */
  keypair(idx: number): Keypair | undefined {
    const v = this.table.get(idx);
    return v instanceof Keypair ? v : undefined;
  }

  /** The peer whose pending handshake idx names (undefined for none or a keypair). */
  handshakePeer(idx: number): Peer | undefined {
    const v = this.table.get(idx);
    return v === undefined || v instanceof Keypair ? undefined : v;
  }

  /** The peer idx belongs to, by handshake or keypair. */
  peerOf(idx: number): Peer | undefined {
    const v = this.table.get(idx);
    return v instanceof Keypair ? v.peer : v;
  }

  delete(idx: number): void {
    if (idx !== 0) this.table.delete(idx);
  }

  /** A keypair gone for good: its index freed and its keys zeroed (a peer's slots, or a lingering one expired). */
  eraseKeypair(kp: Keypair): void {
    this.delete(kp.localIndex);
    if (kp.zero(this.keySlots)) this.onKeypairErased?.(kp);
  }

  get size(): number {
    return this.table.size;
  }
}
