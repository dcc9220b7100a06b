// Outbound sequence numbers that never repeat for a key, also across an agent restart or crash: the
// sequence number is the AES-GCM IV, and a repeated (key, IV) pair gives the key away. Per-tunnel
// keys survive an agent restart (same boot ids, same PSK), so the sender reserves numbers in blocks
// and a block's end must be persisted before its first number is used (in a file that outlives the
// agent; a reboot needs no mark, since every per-tunnel key mixes in the boot ids). After a restart the
// sender resumes above the persisted mark; receivers simply see a jump forward.
// This is the pure policy; the agent does the writing (sequence-mark-file.ts is a small file store).

export const SEQUENCE_BLOCK = 2 ** 20;
/** Sequence numbers stay exact JavaScript numbers; long before this the key must be rotated. */
export const SEQUENCE_LIMIT = Number.MAX_SAFE_INTEGER;

export const SEQ_NOT_RESERVED = 0;
export const SEQ_EXHAUSTED = -1;

export class OutboundSequence {
  #next: number;
  #durableEnd: number;
  #pending: number | undefined;

  /** `persistedMark`: the last mark persisted for this key (0 if none): every number up to it may have been used. */
  constructor(persistedMark = 0, blockSize = SEQUENCE_BLOCK) {
    if (!Number.isSafeInteger(persistedMark) || persistedMark < 0) throw new RangeError('persisted sequence mark must be a non-negative integer');
    this.#next = persistedMark + 1;
    this.#durableEnd = persistedMark;
    // Only another size is a field of its own: every SA's is SEQUENCE_BLOCK, and a field was 8 B an SA.
    if (blockSize !== SEQUENCE_BLOCK) {
      if (!Number.isSafeInteger(blockSize) || blockSize < 2) throw new RangeError('sequence block size must be an integer of at least 2');
      Object.defineProperty(this, 'blockSize', { value: blockSize, enumerable: true });
    }
  }

  /** Numbers a persisted mark reserves ahead. */
  get blockSize(): number {
    return SEQUENCE_BLOCK;
  }

  /**
   * The sequence of a running SA handed over by the agent before this one (datapath handover): it
   * goes on right after `last`, the last number that agent's datapath used (it stopped before the
   * handover, so it never sends another), with the marks up to `durableEnd` already written.
   */
  static resume(last: number, durableEnd: number, blockSize = SEQUENCE_BLOCK): OutboundSequence {
    if (!Number.isSafeInteger(last) || last < 0) throw new RangeError('resumed sequence number must be a non-negative integer');
    const s = new OutboundSequence(Math.max(last, 0), blockSize);
    s.#durableEnd = Math.max(last, Number.isSafeInteger(durableEnd) ? durableEnd : 0);
    return s;
  }

  /** The last sequence number handed out (0 = none): `Max Seq. Number` in status. */
  get last(): number {
    return this.#next - 1;
  }

  /** Highest number usable without another persist. */
  get durableEnd(): number {
    return this.#durableEnd;
  }

  /**
   * The mark the marks file holds for this key while it is in force: the one being written, else
   * the durable one. Never below a number used (after a failed write: the durable one).
   */
  get mark(): number {
    return this.#pending ?? this.#durableEnd;
  }

  /** Takes `s`'s state as its own (an SA that is its sequence, from one made for it: OutboundSa). */
  protected takeOver(s: OutboundSequence): void {
    this.#next = s.#next;
    this.#durableEnd = s.#durableEnd;
    this.#pending = s.#pending;
  }

  /** The next sequence number; SEQ_NOT_RESERVED when the reservation is not persisted yet (hold the packet or drop it), SEQ_EXHAUSTED past SEQUENCE_LIMIT. */
  take(): number {
    const seq = this.#next;
    if (seq > SEQUENCE_LIMIT) return SEQ_EXHAUSTED;
    if (seq > this.#durableEnd) return SEQ_NOT_RESERVED;
    this.#next = seq + 1;
    return seq;
  }

  /**
   * The mark to persist now, or undefined. A new block is requested once less than half a block
   * remains, so that with prompt I/O the sender never waits. Call it after sending (it is cheap).
   */
  persistDue(): number | undefined {
    if (this.#pending !== undefined) return undefined;
    if (this.#durableEnd - this.#next >= this.blockSize / 2) return undefined;
    this.#pending = Math.max(this.#durableEnd, this.#next - 1) + this.blockSize;
    return this.#pending;
  }

  /** The agent wrote `mark` (it outlives the agent): numbers up to it may be used. */
  persisted(mark: number): void {
    if (mark > this.#durableEnd) this.#durableEnd = mark;
    if (this.#pending !== undefined && mark >= this.#pending) this.#pending = undefined;
  }

  /** Writing the pending mark failed: ask again on the next persistDue(). */
  persistFailed(): void {
    this.#pending = undefined;
  }
}
