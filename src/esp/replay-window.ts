// Anti-replay with extended sequence numbers (RFC 4303 §3.4.3 and Appendix A2): only the low 32 bits
// travel; the high 32 bits are inferred from the window's top. A window of 1024, as Cilium's SAs.
// check() before authenticating, accept() only after the ICV verified (RFC 4303 §3.4.3); accept()
// checks again, since a copy of the same number may have been accepted in between (one batch).

export const REPLAY_WINDOW_SIZE = 1024;
const TWO_32 = 2 ** 32;

/** An EspReplayWindow as plain numbers (a datapath handover carries it to the next agent). */
export interface EspReplayWindowState {
  top: number;
  bits: number[];
}

export class EspReplayWindow {
  readonly size: number;
  /** Highest sequence number accepted so far (0 = none). */
  #top = 0;
  /**
   * Bit (seq mod size) set = that sequence number was seen; valid for seq in (top - size, top]. The
   * size / 32 words from #at in #bits: storage given (a slab chunk shared with other windows: a view
   * of its own would cost ~96 B a window) or an array of its own.
   */
  readonly #bits: Uint32Array;
  readonly #at: number;

  /**
   * `resumeTop`: a persisted top from before an agent restart (0 = fresh). Only the low 32 bits travel,
   * so a receiver that restarts while its peer keeps sending above 2^32 must know roughly where the
   * sequence is to infer the high bits (and it refuses replays of anything up to that top).
   * `storage`, `at`: the window lives in storage's size / 32 words from `at`.
   */
  constructor(size = REPLAY_WINDOW_SIZE, resumeTop = 0, storage?: Uint32Array, at = 0) {
    if (size <= 0 || size % 32 !== 0) throw new RangeError('replay window size must be a positive multiple of 32');
    if (storage && (at < 0 || storage.length < at + size / 32)) throw new RangeError(`a window of ${size} needs ${size / 32} words of storage`);
    this.size = size;
    this.#bits = storage ?? new Uint32Array(size / 32);
    this.#at = storage ? at : 0;
    this.#bits.fill(resumeTop === 0 ? 0 : 0xffffffff, this.#at, this.#at + size / 32);
    this.#top = resumeTop;
  }

  /** A view of the words the window lives in (for tests and handovers; not to keep). */
  get storage(): Uint32Array {
    return this.#bits.subarray(this.#at, this.#at + this.size / 32);
  }

  /** The window as plain numbers, for a datapath handover. */
  save(): EspReplayWindowState {
    return { top: this.#top, bits: Array.from(this.storage) };
  }

  /** A window exactly as saved (in `storage` from `at` if given), or undefined, `storage` untouched, when `s` is not a window of this size. */
  static restore(s: EspReplayWindowState, size = REPLAY_WINDOW_SIZE, storage?: Uint32Array, at = 0): EspReplayWindow | undefined {
    if (!Number.isSafeInteger(s.top) || s.top < 0 || !Array.isArray(s.bits) || s.bits.length !== size / 32) return undefined;
    if (!s.bits.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffffffff)) return undefined;
    const w = new EspReplayWindow(size, s.top, storage, at);
    w.#bits.set(s.bits, w.#at);
    return w;
  }

  get top(): number {
    return this.#top;
  }

  /** The full 64-bit sequence number that `seqLow` most likely stands for (RFC 4303 A2.2); -1 if it can only be older than any possible. */
  infer(seqLow: number): number {
    const w = this.size;
    const tl = this.#top % TWO_32;
    const th = Math.floor(this.#top / TWO_32);
    // Within one 2^32 subspace, a number below the window's lowest is of the next subspace; when
    // the window spans two (its first 1023 packets too), a number above it is of the previous one.
    // The same arithmetic either way, only constants picked: the first case runs first at packet
    // 1024, after TurboFan compiled this, and a branch of its own deoptimized it then (lab
    // --trace-deopt, 'Insufficient type feedback for binary operation').
    const within = tl >= w - 1;
    const lowest = tl - w + 1 + (within ? 0 : TWO_32);
    const high = th + (seqLow >= lowest ? (within ? 0 : -1) : (within ? 1 : 0));
    if (high < 0) return -1;
    return high * TWO_32 + seqLow;
  }

  /** True if `seq` is new: above the window, or inside it and not yet seen. Does not change state. */
  check(seq: number): boolean {
    if (seq <= 0) return false;
    if (seq > this.#top) return true;
    if (this.#top - seq >= this.size) return false;
    const bit = seq % this.size;
    return (this.#bits[this.#at + (bit >>> 5)]! & (1 << (bit & 31))) === 0;
  }

  /**
   * Records `seq` as seen (after its ICV verified), sliding the window forward if needed. False,
   * and nothing recorded, when it is no longer new: a copy was accepted since check().
   */
  accept(seq: number): boolean {
    if (!this.check(seq)) return false;
    if (seq > this.#top) {
      const diff = seq - this.#top;
      if (diff >= this.size) {
        this.#bits.fill(0, this.#at, this.#at + this.size / 32);
      } else {
        for (let s = this.#top + 1; s <= seq; s++) {
          const bit = s % this.size;
          this.#bits[this.#at + (bit >>> 5)]! &= ~(1 << (bit & 31));
        }
      }
      this.#top = seq;
    }
    const bit = seq % this.size;
    this.#bits[this.#at + (bit >>> 5)]! |= 1 << (bit & 31);
    return true;
  }
}
