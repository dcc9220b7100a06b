// Sliding replay window over 64-bit message counters, RFC 6479 style: a ring of 32-bit words, so
// advancing the window clears whole words instead of shifting bits. Window: 4064 counters.
import { REJECT_AFTER_MESSAGES } from './constants.js';

const WORD_BITS = 32;
const RING_WORDS = 128; // power of two
/** How far behind the highest counter seen a counter may be and still be accepted. */
export const REPLAY_WINDOW_SIZE = (RING_WORDS - 1) * WORD_BITS;

/** A ReplayWindow as plain numbers (a datapath handover carries it to the next agent). */
export interface ReplayWindowState {
  last: number;
  ring: number[];
}

export class ReplayWindow {
  /**
   * Made at the first counter that does not follow the one before (a gap or a reordering): while
   * every counter 0..last arrived, in order, the window is all set below last and needs no bits
   * (a session's usual case: a keypair then costs no 512-byte ring).
   */
  private ring: Uint32Array | null = null;
  /** Highest counter accepted so far (-1 before the first). */
  private last = -1;

  /**
   * The counter limit, null for REJECT_AFTER_MESSAGES (every keypair's): that limit is no Smi, and
   * the field would hold a heap number of its own in every window (16 B).
   */
  private readonly limit: number | null;

  constructor(limit: number = REJECT_AFTER_MESSAGES) {
    this.limit = limit === REJECT_AFTER_MESSAGES ? null : limit;
  }

  /**
   * True if `counter` could be accepted now, without recording it: a cheap pre-check before
   * decryption. The authoritative call is check(), after the packet authenticated.
   */
  wouldAccept(counter: number): boolean {
    if (!(counter >= 0 && counter < (this.limit ?? REJECT_AFTER_MESSAGES) && counter <= Number.MAX_SAFE_INTEGER)) return false;
    if (counter > this.last) return true;
    if (this.last - counter >= REPLAY_WINDOW_SIZE || this.ring === null) return false; // no ring: every counter up to last arrived
    const word = Math.floor(counter / WORD_BITS) & (RING_WORDS - 1);
    return (this.ring[word]! & (1 << (counter % WORD_BITS))) === 0;
  }

  /**
   * Records `counter` and returns true if it is new and inside the window; false for a replay,
   * a counter too old, or one at or beyond the limit. Call only after authentication, so a forger
   * cannot move the window.
   */
  check(at: number): boolean {
    if (!(at >= 0 && at < (this.limit ?? REJECT_AFTER_MESSAGES) && at <= Number.MAX_SAFE_INTEGER)) return false;
    // A Smi while it fits: a datapath reads counters as doubles (64-bit on the wire), and one stored
    // as such makes `last` a double field, a 16-B heap number in every window.
    const counter = at <= 0x7fffffff ? at | 0 : at;
    if (this.ring === null) {
      if (counter === this.last + 1) { this.last = counter; return true; }
      if (counter <= this.last) return false;
      this.ring = this.filledRing();
    }
    const ring = this.ring;
    const index = Math.floor(counter / WORD_BITS);
    if (counter > this.last) {
      const current = this.last < 0 ? -1 : Math.floor(this.last / WORD_BITS);
      const advance = Math.min(index - current, RING_WORDS);
      for (let i = 1; i <= advance; i++) ring[(current + i) & (RING_WORDS - 1)] = 0;
      this.last = counter;
    } else if (this.last - counter >= REPLAY_WINDOW_SIZE) {
      return false;
    }
    const word = index & (RING_WORDS - 1);
    const bit = 1 << (counter % WORD_BITS);
    if ((ring[word]! & bit) !== 0) return false;
    ring[word] = ring[word]! | bit;
    return true;
  }

  /**
   * The ring of a window that has every counter 0..last: all bits up to last set. The words past
   * last's (counters not yet seen, or before 0) are set too: check() clears a word before the
   * window moves into it, and reads none of them before.
   */
  private filledRing(): Uint32Array {
    const ring = new Uint32Array(RING_WORDS);
    if (this.last < 0) return ring;
    ring.fill(0xffffffff);
    const bits = (this.last % WORD_BITS) + 1;
    ring[Math.floor(this.last / WORD_BITS) & (RING_WORDS - 1)] = bits === WORD_BITS ? 0xffffffff : (2 ** bits - 1);
    return ring;
  }

  /** The window as plain numbers, for a datapath handover (restore() takes it back). */
  save(): ReplayWindowState {
    return { last: this.last, ring: Array.from(this.ring ?? this.filledRing()) };
  }

  /** Takes a saved window back; false (and nothing changed) when it is not one. */
  restore(s: ReplayWindowState): boolean {
    if (!Number.isSafeInteger(s.last) || s.last < -1 || !Array.isArray(s.ring) || s.ring.length !== RING_WORDS) return false;
    if (!s.ring.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffffffff)) return false;
    (this.ring ??= new Uint32Array(RING_WORDS)).set(s.ring);
    this.last = s.last;
    return true;
  }

  reset(): void {
    this.ring = null;
    this.last = -1;
  }
}
