// A digest of a datapath's table made of entries (a peer, an SA, a prefix and its owner), the same
// way on the agent's side (from the specs it sent) and the engine's (from what it holds): the
// agent's periodic whole pass compares the two and sends the whole table only when they differ.
// Entries are hashed one by one and summed, so the order the two sides meet them in does not
// matter and a spec's entries can be added and taken away as it comes and goes. Not a
// cryptographic hash (nothing here is an adversary's input against a secret): it catches drift,
// and a drift it missed is caught at the next change.

/** Two 32-bit FNV-1a lanes with different primes (one 64-bit-ish hash), fed code units and numbers. */
const P1 = 0x01000193;
const P2 = 0x5bd1e995;
const BASIS1 = 0x811c9dc5;
const BASIS2 = 0x3c6ef372;

/** The sum of a table's entries; an engine's digest names its entries (EspTableDigest, WireGuardTableDigest). */
export class TableDigest {
  private sum1 = 0;
  private sum2 = 0;
  private entries = 0;
  private h1 = BASIS1;
  private h2 = BASIS2;

  get value(): string {
    return `${this.entries}:${(this.sum1 >>> 0).toString(16)}:${(this.sum2 >>> 0).toString(16)}`;
  }

  /** Something only one side has (an entry no peer owns): the digests cannot match. */
  stray(what: string): void {
    this.text('x'); this.text(what);
    this.end();
  }

  /** Adds (sign 1) or takes away (-1) another digest's entries: the sums wrap, so what was added is taken away exactly. */
  addSums(other: TableDigest, sign: 1 | -1): void {
    this.sum1 = (this.sum1 + sign * other.sum1) | 0;
    this.sum2 = (this.sum2 + sign * other.sum2) | 0;
    this.entries += sign * other.entries;
  }

  /** Back to no entries. */
  reset(): void {
    this.sum1 = 0; this.sum2 = 0; this.entries = 0;
    this.h1 = BASIS1; this.h2 = BASIS2;
  }

  /** A string of the entry being made. */
  protected text(s: string): void {
    let h1 = this.h1, h2 = this.h2;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      h1 = Math.imul(h1 ^ c, P1);
      h2 = Math.imul(h2 ^ c, P2);
    }
    this.h1 = Math.imul(h1 ^ 0xffff, P1); // a separator no code unit matches alone: ('ab','c') is not ('a','bc')
    this.h2 = Math.imul(h2 ^ 0xffff, P2);
  }

  /**
   * The text of a number (0 or more, an integer) as text() would hash its decimal digits, without
   * the separator: an entry spelled in parts (codes, decimal, then textEnd()) hashes as its text.
   */
  protected decimal(n: number): void {
    if (n >= 10) this.decimal(Math.floor(n / 10));
    this.code(48 + (n % 10));
  }

  /** One code unit of a text spelled in parts. */
  protected code(c: number): void {
    this.h1 = Math.imul(this.h1 ^ c, P1);
    this.h2 = Math.imul(this.h2 ^ c, P2);
  }

  /** The end of a text spelled in parts (text()'s separator). */
  protected textEnd(): void {
    this.h1 = Math.imul(this.h1 ^ 0xffff, P1);
    this.h2 = Math.imul(this.h2 ^ 0xffff, P2);
  }

  /** A number of the entry being made. */
  protected num(n: number): void {
    this.h1 = Math.imul(this.h1 ^ n, P1);
    this.h2 = Math.imul(this.h2 ^ n, P2);
  }

  /** The entry made since the last end() goes into the sums. */
  protected end(): void {
    this.sum1 = (this.sum1 + fmix(this.h1)) | 0;
    this.sum2 = (this.sum2 + fmix(this.h2 ^ 0x9e3779b9)) | 0;
    this.entries++;
    this.h1 = BASIS1;
    this.h2 = BASIS2;
  }
}

/** MurmurHash3's finalizer: every input bit moves every output bit, so sums of entries do not cancel by structure. */
function fmix(h: number): number {
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** The digest of the table these specs make, counted whole (what a KeptSpecsDigest of them reads). */
export function specsDigest<S, D extends TableDigest>(specs: readonly S[], make: () => D, entriesOf: (d: D, spec: S) => void): string {
  const d = make();
  for (let k = 0; k < specs.length; k++) entriesOf(d, specs[k]!);
  return d.value;
}

/**
 * The digest of a set of specs kept up to date spec by spec: a spec's entries are added as it
 * comes and taken away as it goes (the digest is a sum), so the agent's periodic check reads a
 * value that a peer's event already paid for, where hashing every spec was ~3 ms warm and far
 * more once a minute in a cold agent at 5,000 peers. The tunnel tells it each spec as the
 * datapath gets it and loses it (applied-peers.ts AppliedSpecsObserver).
 */
export class KeptSpecsDigest<S, D extends TableDigest> {
  private readonly sums: D;
  private readonly one: D;

  /** entriesOf: a spec's entries, as the engine keeps them. */
  constructor(make: () => D, private readonly entriesOf: (d: D, spec: S) => void) {
    this.sums = make();
    this.one = make();
  }

  add(spec: S): void { this.move(spec, 1); }
  remove(spec: S): void { this.move(spec, -1); }
  /** Back to no specs (the next table is counted from nothing). */
  clear(): void { this.sums.reset(); }
  get value(): string { return this.sums.value; }

  private move(spec: S, sign: 1 | -1): void {
    this.one.reset();
    this.entriesOf(this.one, spec);
    this.sums.addSums(this.one, sign);
  }
}
