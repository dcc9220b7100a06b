// Keypairs a newer handshake pushed out of a peer's current/previous/next while the peer may still
// send under them: they stay in the index table, receive-only, for LINGER_MS, then are erased.
// The peer moves off such a keypair once our response or our first packet under a newer keypair
// reaches it, a round trip; were those lost, its next initiation comes within REKEY_TIMEOUT.
// wireguard-go erases them at once and loses what the peer still sends under them whenever
// initiations cross or follow each other within a round trip (every node of a cluster rotating
// its static key at once initiates to every peer at the same moment). A previous keypair comes
// here when the peer first sends under current (Peer.letGoPrevious): a plain rekey leaves it here
// for LINGER_MS, not in the peer until the next handshake. One list for the device, in the order
// they came (each lingers as long): no per-peer field for a state that lasts a round trip.
import { REKEY_TIMEOUT } from './constants.js';
import type { IndexTable } from './index-table.js';
import type { Keypair } from './keypair.js';
import type { Peer } from './peer.js';

export const LINGER_MS = REKEY_TIMEOUT;

export interface Lingering {
  readonly keypair: Keypair;
  /** Device-clock ms when it is erased. */
  readonly until: number;
}

export class LingeringKeypairs {
  private list: Lingering[] = [];

  constructor(private readonly indexes: IndexTable) {}

  /** Keeps a pushed-out keypair receivable for LINGER_MS from `now` (a dead one is ignored). */
  add(keypair: Keypair | null, now: number): void {
    if (!keypair || !keypair.isAlive) return;
    this.list.push({ keypair, until: now + LINGER_MS });
  }

  /**
   * Keeps a handed-over keypair (a datapath handover) receivable until `until`, the deadline it
   * had in the datapath before on this device's clock. The caller drops one whose time is up.
   */
  restore(keypair: Keypair, until: number): void {
    let i = this.list.length;
    while (i > 0 && this.list[i - 1]!.until > until) i--;
    this.list.splice(i, 0, { keypair, until }); // kept in deadline order: expire() reads from the front
  }

  /** Each lingering keypair with its deadline, soonest first (a handover exports them). */
  entries(): readonly Lingering[] {
    return this.list;
  }

  /** Erases those whose time is up. */
  expire(now: number): void {
    let n = 0;
    while (n < this.list.length && this.list[n]!.until <= now) this.indexes.eraseKeypair(this.list[n++]!.keypair);
    if (n > 0) this.list.splice(0, n);
  }

  /** Erases the peer's at once (the peer is removed, or its keys flushed). */
  dropPeer(peer: Peer): void {
    if (this.list.length === 0) return;
    for (const l of this.list) if (l.keypair.peer === peer) this.indexes.eraseKeypair(l.keypair);
    this.list = this.list.filter((l) => l.keypair.isAlive);
  }

  /** When expire() has work next (device clock), null when nothing lingers. */
  get nextDeadline(): number | null {
    return this.list.length > 0 ? this.list[0]!.until : null;
  }

  get size(): number {
    return this.list.length;
  }
}
