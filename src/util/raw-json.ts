// JSON text made ahead as bytes, placed whole into a larger answer. A list of every peer (5,000 at
// scale: a WireGuard agent's GET /encrypt) made as objects, cloned between threads, mapped into the
// answer's shape and stringified lived through several of the young generation's collections (2 MB
// semi-spaces, agent-heap.ts) and was promoted: at 5,000 peers one read grew the main thread's heap
// ~9 MB and the worker's ~5 MB, and each thread's compactor then ran a full collection seconds later
// (docs/performance-log.md, session 34, wgh44). Written entry by entry into a Buffer (off the V8
// heap), each entry's objects die young and nothing is promoted.

/** What JSON.stringify writes in place of a RawJson: a string no answer holds (NUL is not in a name). */
const MARK = '\u0000veil-raw-json\u0000';
const MARK_IN_TEXT = JSON.stringify(MARK);

/** The RawJsons met by the jsonBody() under way (JSON.stringify calls toJSON; synchronous, so one at a time). */
let met: RawJson[] | undefined;

/** A JSON value as its UTF-8 text, written ahead (in one or more pieces, in order); only jsonBody() places it. */
export class RawJson {
  constructor(readonly chunks: readonly Uint8Array[]) {}

  toJSON(): string {
    if (!met) throw new Error('a RawJson is placed by jsonBody(), not JSON.stringify alone');
    met.push(this);
    return MARK;
  }
}

/** value as JSON: a string, or (when it holds RawJsons) the bytes with each RawJson's text in its place. */
export function jsonBody(value: unknown): string | Buffer {
  const raws: RawJson[] = [];
  met = raws;
  let text: string;
  try {
    text = JSON.stringify(value);
  } finally {
    met = undefined;
  }
  if (raws.length === 0) return text;
  const parts = text.split(MARK_IN_TEXT);
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < raws.length; i++) chunks.push(Buffer.from(parts[i]!), ...raws[i]!.chunks);
  chunks.push(Buffer.from(parts[raws.length]!));
  return Buffer.concat(chunks);
}

/**
 * A chunk's bytes. Chunks, not one buffer grown by copies: a writer's buffers live through the
 * young generation's collections while a long list is written, so they are promoted, and a promoted
 * ArrayBuffer's memory goes back only at a full collection; grown by doubling, a 5,000-peer list left
 * ~3 MB of them held in the worker (in-process). The chunks are moved to the reader (transferred,
 * not copied: chunksOf), which frees them young; a fresh ArrayBuffer each (Buffer's pool cannot move).
 */
const CHUNK_BYTES = 256 * 1024;

/** A JSON array written entry by entry into chunks off the V8 heap: add() each value, then end(). */
export class JsonArrayWriter {
  private readonly done: Uint8Array[] = [];
  private buf = Buffer.allocUnsafeSlow(CHUNK_BYTES);
  private length = 1;
  /** Values added so far. */
  count = 0;

  constructor() {
    this.buf[0] = 0x5b; // [
  }

  add(value: unknown): void {
    const text = JSON.stringify(value);
    this.room(1 + 3 * text.length); // UTF-8: at most 3 bytes a UTF-16 unit
    if (this.count++ > 0) this.buf[this.length++] = 0x2c; // ,
    this.length += this.buf.write(text, this.length, 'utf8');
  }

  end(): RawJson {
    this.room(1);
    this.buf[this.length++] = 0x5d; // ]
    this.done.push(this.buf.subarray(0, this.length));
    return new RawJson(this.done);
  }

  /** A new chunk when this one cannot hold `bytes` more (an entry is never split). */
  private room(bytes: number): void {
    if (this.length + bytes <= this.buf.length) return;
    this.done.push(this.buf.subarray(0, this.length));
    this.buf = Buffer.allocUnsafeSlow(Math.max(CHUNK_BYTES, bytes));
    this.length = 0;
  }
}

/** The ArrayBuffers under a RawJson's chunks: what a thread posting it transfers (each chunk has its own). */
export function chunksOf(json: RawJson | readonly Uint8Array[]): ArrayBuffer[] {
  return (json instanceof RawJson ? json.chunks : json).map((c) => c.buffer as ArrayBuffer);
}
