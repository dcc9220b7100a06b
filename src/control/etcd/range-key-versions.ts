// etcd's KV.Range answer (etcdserverpb.RangeResponse) read for what a listing of names and versions
// needs: the header's revision, `more`, `count`, and each key with its mod_revision. Sans-I/O: bytes
// in, a callback per key. The etcd3 library decodes every KeyValue twice (protobufjs, then
// proto-loader's plain objects with every int64 a string): ~1.3 KB of objects a key, so a complete
// relist at 5,000 nodes (10,000 keys) made ~7 MB that outlived the young generation and cost a full
// collection later; read here, a key costs its string.
import { VeilError } from '../../util/errors.js';

/** What a Range answer says besides its keys. */
export interface RangeKeysSummary {
  revision: number;
  more: boolean;
  count: number;
  /** Keys handed to onKey. */
  keys: number;
}

const VARINT = 0, FIXED64 = 1, LEN = 2, FIXED32 = 5;

/** A cursor over protobuf's wire format (only what RangeResponse uses, and skipping what it does not know). */
class Wire {
  constructor(readonly buf: Buffer, public at: number, public end: number, readonly what: string) {}

  done(): boolean {
    return this.at >= this.end;
  }

  /** A varint as a number: etcd's revisions and counts are int64 but far below 2^53. */
  varint(): number {
    let value = 0, scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.at >= this.end) throw malformed(this.what, 'a varint runs past its end');
      const b = this.buf[this.at++]!;
      value += (b & 0x7f) * scale;
      if (b < 0x80) return value;
      scale *= 128;
    }
    throw malformed(this.what, 'a varint longer than 10 bytes');
  }

  /** Past a varint, its value not made (a lease id's would be a heap number). */
  skipVarint(): void {
    for (let i = 0; i < 10; i++) {
      if (this.at >= this.end) throw malformed(this.what, 'a varint runs past its end');
      if (this.buf[this.at++]! < 0x80) return;
    }
    throw malformed(this.what, 'a varint longer than 10 bytes');
  }

  /** The end of the field span() last read. */
  spanEnd = 0;

  /**
   * A length-delimited field's start (its end in spanEnd): no [start, end] pair, whose array and
   * destructuring iterator were ~0.4 KB a key of a relist's answer in code that runs too seldom to be optimized.
   */
  span(): number {
    const len = this.varint();
    const start = this.at, end = start + len;
    if (end > this.end) throw malformed(this.what, 'a field runs past its message');
    this.at = this.spanEnd = end;
    return start;
  }

  skip(wireType: number): void {
    if (wireType === VARINT) this.skipVarint();
    else if (wireType === LEN) this.span();
    else if (wireType === FIXED64 || wireType === FIXED32) {
      this.at += wireType === FIXED64 ? 8 : 4;
      if (this.at > this.end) throw malformed(this.what, 'a fixed field runs past its message');
    } else throw malformed(this.what, `wire type ${wireType}`);
  }
}

function malformed(message: string, what: string): VeilError {
  return new VeilError('ETCD_BAD_ANSWER', `etcd's answer ${message === 'TxnResponse' ? 'to a transaction' : 'to a range'} is not a ${message}: ${what}`, 'check that the endpoint is etcd v3');
}

/**
 * Reads a RangeResponse: onKey(buf, start, end, modRevision) for each KeyValue (the key is
 * buf[start, end): the caller makes of it only what it keeps), the rest returned.
 */
export function readRangeKeys(buf: Buffer, onKey: OnKey): RangeKeysSummary {
  return readRange(buf, 0, buf.length, onKey);
}

/** What a Txn answer of ranges says: its header's revision and each range's summary, in order. */
export interface TxnRangesSummary {
  revision: number;
  ranges: RangeKeysSummary[];
}

/**
 * Reads a TxnResponse whose operations are ranges (a count and the keys that moved, as of one
 * revision): onKey for each KeyValue of each range, as readRangeKeys, with the range's index. The
 * etcd3 library's decoding of the same answer made ~1.3 KB of objects a key (and int64 strings for
 * every header): after a burst, a relist's changes since the last one are thousands of keys.
 */
export function readTxnRanges(buf: Buffer, onKey: (buf: Buffer, start: number, end: number, modRevision: number, range: number) => void): TxnRangesSummary {
  const out: TxnRangesSummary = { revision: 0, ranges: [] };
  const w = new Wire(buf, 0, buf.length, 'TxnResponse');
  while (!w.done()) {
    const tag = w.varint(), field = Math.floor(tag / 8), type = tag & 7;
    if (field === 1 && type === LEN) { // header: ResponseHeader
      const start = w.span(), end = w.spanEnd;
      out.revision = headerRevision(buf, start, end, 'TxnResponse');
    } else if (field === 3 && type === LEN) { // responses: ResponseOp
      const start = w.span(), end = w.spanEnd;
      const op = new Wire(buf, start, end, 'TxnResponse');
      while (!op.done()) {
        const t = op.varint();
        if (t !== (1 << 3 | LEN)) { op.skip(t & 7); continue; } // response_range; another operation is not a range
        const rs = op.span(), re = op.spanEnd;
        const range = out.ranges.length;
        out.ranges.push(readRange(buf, rs, re, (b, s, e, rev) => onKey(b, s, e, rev, range), 'TxnResponse'));
      }
    } else w.skip(type);
  }
  return out;
}

type OnKey = (buf: Buffer, start: number, end: number, modRevision: number) => void;

function headerRevision(buf: Buffer, start: number, end: number, what: string): number {
  const h = new Wire(buf, start, end, what);
  let revision = 0;
  while (!h.done()) {
    const t = h.varint();
    if (t === (3 << 3 | VARINT)) revision = h.varint();
    else h.skip(t & 7);
  }
  return revision;
}

/** A RangeResponse in buf[from, to). */
function readRange(buf: Buffer, from: number, to: number, onKey: OnKey, what = 'RangeResponse'): RangeKeysSummary {
  const out: RangeKeysSummary = { revision: 0, more: false, count: 0, keys: 0 };
  const w = new Wire(buf, from, to, what);
  const kv = new Wire(buf, from, from, what); // each KeyValue in turn: one cursor, not one a key
  while (!w.done()) {
    const tag = w.varint(), field = Math.floor(tag / 8), type = tag & 7;
    if (field === 1 && type === LEN) { // header: ResponseHeader
      const start = w.span(), end = w.spanEnd;
      out.revision = headerRevision(buf, start, end, what);
    } else if (field === 2 && type === LEN) { // kvs: KeyValue
      kv.at = w.span();
      kv.end = w.spanEnd;
      let keyStart = -1, keyEnd = -1, modRevision = 0;
      while (!kv.done()) {
        const t = kv.varint();
        if (t === (1 << 3 | LEN)) { keyStart = kv.span(); keyEnd = kv.spanEnd; }
        else if (t === (3 << 3 | VARINT)) modRevision = kv.varint();
        else kv.skip(t & 7);
      }
      if (keyStart < 0) throw malformed(what, 'a KeyValue without a key');
      out.keys++;
      onKey(buf, keyStart, keyEnd, modRevision);
    } else if (field === 3 && type === VARINT) out.more = w.varint() !== 0;
    else if (field === 4 && type === VARINT) out.count = w.varint();
    else w.skip(type);
  }
  return out;
}
