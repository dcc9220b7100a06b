// The ESP marks file (sequence-mark-file.ts's format) written by a thread of its own, so that the
// datapath moves packets while a mark is written. Done on the packet path once a second per busy
// tunnel, a write (then with two fsyncs: ~1.2 ms on the bench machine's disk, up to 10 ms, half a
// second while another process flushed) put those milliseconds into the RTT of the packet that asked
// for it. The engine asks for the next mark ahead of need and counts a mark as persisted only once
// its write has ended well; a packet that does need it before that waits for it. Written means in
// the page cache, which outlives the agent: what loses it also changes the boot id, and with it every
// key the marks guard (native/file-replacer.c).
import { native, type NativeFileReplacer } from '../native/addon.js';
import { encodeSequenceMarks, SEQUENCE_MARKS_MODE } from './sequence-mark-file.js';

export type WriteOutcome = 'written' | 'failed' | 'pending';

export class SequenceMarkWriter {
  readonly #writer: NativeFileReplacer;
  /** [newest generation written, newest ended, errno of the last failure] */
  readonly #state = new Int32Array(3);
  #closed = false;

  readonly #text: () => string;

  /**
   * marks: the file's contents (id, mark), owned by the caller, or a function that answers their text
   * (encodeSequenceMarks' format); every submit() writes all of them.
   */
  constructor(readonly path: string, marks: Iterable<readonly [string, number]> | (() => string)) {
    this.#text = typeof marks === 'function' ? marks : () => encodeSequenceMarks(marks);
    this.#writer = native().fileReplacerOpen(path, SEQUENCE_MARKS_MODE);
  }

  /** Queues the marks as they are now; answers the write's generation (see outcome()). */
  submit(): number {
    return native().fileReplacerSubmit(this.#writer, Buffer.from(this.#text()));
  }

  /** Looks at the writes' progress (outcome() answers from the last look); wait: until generation `wait` has ended. */
  poll(wait = 0): void {
    native().fileReplacerState(this.#writer, this.#state, wait);
  }

  /**
   * The write of generation gen, as of the last poll(): written once it or a newer one (which holds
   * all it held) ended well, failed when it ended without that.
   */
  outcome(gen: number): WriteOutcome {
    if (this.#state[0]! >= gen) return 'written';
    return this.#state[1]! >= gen ? 'failed' : 'pending';
  }

  /** submit() and wait: true once the marks as they are now are written. */
  writeNow(): boolean {
    const gen = this.submit();
    this.poll(gen);
    return this.outcome(gen) === 'written';
  }

  /** Writes what is queued, then stops the thread. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    native().fileReplacerClose(this.#writer);
  }
}
