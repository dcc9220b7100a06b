// The ESP marks file (sequence-mark-file.ts's format) written by a thread of its own, so that the
// datapath moves packets while a mark becomes durable. A write (two fsyncs) took ~1.2 ms on the
// bench machine's disk, up to 10 ms, and half a second while another process flushed; done on the
// packet path once a second per busy tunnel, it put those milliseconds into the RTT of the packet
// that asked for it (the IPsec ping p99, and a 534 ms stall of one bench round). The engine asks
// for the next mark ahead of need and counts a mark as durable only once its write has ended well;
// a packet that does need it before that waits for it, as every packet did before.
import { native, type NativeDurableWriter } from '../native/addon.js';
import { encodeSequenceMarks, SEQUENCE_MARKS_MODE } from './sequence-mark-file.js';

export type WriteOutcome = 'durable' | 'failed' | 'pending';

export class SequenceMarkWriter {
  readonly #writer: NativeDurableWriter;
  /** [newest generation durable, newest ended, errno of the last failure] */
  readonly #state = new Int32Array(3);
  #closed = false;

  /** marks: the file's contents (id, mark), owned by the caller; every submit() writes all of them. */
  constructor(readonly path: string, readonly marks: Iterable<readonly [string, number]>) {
    this.#writer = native().durableWriterOpen(path, SEQUENCE_MARKS_MODE);
  }

  /** Queues the marks as they are now; answers the write's generation (see outcome()). */
  submit(): number {
    return native().durableWriterSubmit(this.#writer, Buffer.from(encodeSequenceMarks(this.marks)));
  }

  /** Looks at the writes' progress (outcome() answers from the last look); wait: until generation `wait` has ended. */
  poll(wait = 0): void {
    native().durableWriterState(this.#writer, this.#state, wait);
  }

  /**
   * The write of generation gen, as of the last poll(): durable once it or a newer one (which holds
   * all it held) ended well, failed when it ended without that.
   */
  outcome(gen: number): WriteOutcome {
    if (this.#state[0]! >= gen) return 'durable';
    return this.#state[1]! >= gen ? 'failed' : 'pending';
  }

  /** submit() and wait: true once the marks as they are now are durable. */
  writeNow(): boolean {
    const gen = this.submit();
    this.poll(gen);
    return this.outcome(gen) === 'durable';
  }

  /** Writes what is queued, then stops the thread. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    native().durableWriterClose(this.#writer);
  }
}
