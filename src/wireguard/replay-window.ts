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
   * Made on the first accepted counter: a keypair that never receives (a responder's that a newer
   * handshake replaces, one side of a crossing) then costs no 512-byte buffer.
   */
  private ring: Uint32Array | null = null;
  /** Highest counter accepted so far (-1 before the first). */
  private last = -1;

  constructor(private readonly limit: number = REJECT_AFTER_MESSAGES) {}

  /** True once a counter was accepted: the peer has sent under this keypair. */
  get receivedAny(): boolean {
    return this.last >= 0;
  }

  /**
   * True if `counter` could be accepted now, without recording it: a cheap pre-check before
   * decryption. The authoritative call is check(), after the packet authenticated.
   */
  wouldAccept(counter: number): boolean {
    if (!(counter >= 0 && counter < this.limit && counter <= Number.MAX_SAFE_INTEGER)) return false;
    if (counter > this.last) return true;
    if (this.last - counter >= REPLAY_WINDOW_SIZE) return false;
    const word = Math.floor(counter / WORD_BITS) & (RING_WORDS - 1);
    return (this.ring![word]! & (1 << (counter % WORD_BITS))) === 0; // counter <= last: a check() made the ring
  }

  /**
   * Records `counter` and returns true if it is new and inside the window; false for a replay,
   * a counter too old, or one at or beyond the limit. Call only after authentication, so a forger
   * cannot move the window.
   */
  check(counter: number): boolean {
    if (!(counter >= 0 && counter < this.limit && counter <= Number.MAX_SAFE_INTEGER)) return false;
    const ring = (this.ring ??= new Uint32Array(RING_WORDS));
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

  /** The window as plain numbers, for a datapath handover (restore() takes it back). */
  save(): ReplayWindowState {
    return { last: this.last, ring: this.ring ? Array.from(this.ring) : new Array<number>(RING_WORDS).fill(0) };
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
    this.ring?.fill(0);
    this.last = -1;
  }
}
