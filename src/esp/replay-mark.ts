// Inbound replay protection that survives an agent restart or crash. Per-tunnel keys outlive the
// agent (same boot ids, same PSK), so a receiver that restarts with an empty replay window would
// accept every captured datagram again. The receiver therefore persists a mark above its window
// top, and never accepts a sequence number above the persisted mark before a higher mark is
// written (to a file that outlives the agent; a reboot needs none: the keys mix in the boot ids): after a crash it resumes with everything up to the mark counted as seen, so no packet
// it ever accepted is accepted twice. The price of a crash is the fresh packets between the real
// top and the mark (the lead): sized to about LEAD_SECONDS of the tunnel's own rate, so a write
// happens about once per LEAD_SECONDS per busy tunnel and a crash drops about that much traffic.
// A clean stop persists the exact top instead, and then drops nothing. The mark is a full 64-bit
// (ESN) number, so the restarted receiver also infers the high half of a sender above 2^32.
// This is the pure policy; the engine does the writing (sequence-mark-file.ts is the store).

/** Fewest numbers a mark leads the top by: a slow tunnel writes every MIN_LEAD packets, a busy one about once per LEAD_SECONDS (at most one write a second either way). */
export const REPLAY_MIN_LEAD = 8;
/** Most numbers a mark leads the top by (well under 2^31, so ESN inference stays right after a crash). */
export const REPLAY_MAX_LEAD = 2 ** 20;
/** The lead covers about this long at the tunnel's recent rate. */
export const REPLAY_LEAD_SECONDS = 1;

export class ReplayMark {
  #durable: number;
  #lastTop: number;
  #lastPackets = 0;
  #lastMs: number;
  /** A write of the next mark is on its way (writing()): persisted() or writeFailed() ends it. */
  #writing = false;

  /** `persisted`: the mark read from disk (0 = none); every number up to it counts as seen. */
  constructor(persisted: number, nowMs: number) {
    this.#durable = persisted;
    this.#lastTop = persisted;
    this.#lastMs = nowMs;
  }

  /** Numbers up to this may be accepted without a write. */
  get durable(): number {
    return this.#durable;
  }

  /**
   * Three quarters of the lead of the last write are used up: time to write the next mark, ahead
   * of need, so that no packet waits for the write (the engine writes it off the packet path). Not
   * at half: next() sizes a lead from what came since the last write (twice that within a second),
   * so a refill at half would keep a slow tunnel's lead at its first 8 numbers, and write every 4
   * packets; at three quarters the lead grows 1.5-fold a write up to about a second of packets.
   * Not while a write is on its way: every packet of a busy tunnel noted the refill again until the
   * write ended, and the engine looked at it once a turn (tick()) for nothing.
   */
  refillDue(top: number): boolean {
    // #writing first: its load runs for every packet (a test behind && that first ran after the
    // packet path was compiled deoptimized it, esp-engine.ts replayDurable()).
    return !this.#writing && this.#durable > this.#lastTop && 4 * (top - this.#lastTop) >= 3 * (this.#durable - this.#lastTop);
  }

  /** A write of the next mark is on its way: no refill is due until it ends (persisted(), writeFailed()). */
  writing(): void {
    this.#writing = true;
  }

  /** The write on its way ended without making its mark durable: a refill may be due again. */
  writeFailed(): void {
    this.#writing = false;
  }

  /** The top moved since the last write (its mark may want moving too). */
  movedSince(top: number): boolean {
    return top > this.#lastTop;
  }

  /**
   * The mark to persist so that `top` (the highest number about to be accepted) is covered, with a
   * lead sized to the recent rate of packets accepted (`packets`: the SA's count so far). Not the
   * rate of sequence numbers: a sender restarted after a crash jumps up to a whole reservation block
   * (2^20) ahead, and a lead sized to that jump, persisted and then met by a crash of this receiver,
   * dropped the next 2^20 packets of that tunnel: days of outage at a few packets a second.
   */
  next(top: number, packets: number, nowMs: number): number {
    const elapsed = Math.max(1, nowMs - this.#lastMs);
    const counted = Math.max(0, packets - this.#lastPackets);
    const spanMs = REPLAY_LEAD_SECONDS * 1000;
    // Over less than the lead's own span a rate is noise: every write also moves the other busy
    // SAs' marks, so one packet 2 ms after an SA's own write read as 500/s, and a crash then cost
    // that tunnel 50 s at 10 packets/s (chaos test, CI). Then the lead at most doubles what came
    // since the last write: a busy tunnel still grows to a second of its packets in a few writes.
    const lead = elapsed >= spanMs ? Math.ceil(counted * spanMs / elapsed) : 2 * counted;
    return Math.max(this.#durable, top + Math.min(REPLAY_MAX_LEAD, Math.max(REPLAY_MIN_LEAD, lead)));
  }

  /** `mark` is persisted (written; it outlives the agent), written at `nowMs` when the top was `top` and `packets` had been accepted. */
  persisted(mark: number, top: number, packets: number, nowMs: number): void {
    this.#writing = false;
    if (mark > this.#durable) this.#durable = mark;
    this.#lastTop = top;
    this.#lastPackets = packets;
    this.#lastMs = nowMs;
  }
}
