// Cryptokey routing table: a longest-prefix-match trie per address family mapping prefixes to a
// value (a peer), as wireguard-go's allowedips.go: path-compressed binary trie, lookups walk at most
// one node per distinct prefix length on the path and allocate nothing.
import { VeilError } from '../util/errors.js';
import { type Cidr, formatCidr, type IpFamily, maskAddress, parseCidr } from './cidr.js';

/** No node (a missing child, the parent of the root, the end of the free list). */
const NONE = -1;

/** The first `len` bits of a 32-bit word (len 0..32; `-1 << 32` is -1 in JS, hence the case). */
function mask(len: number): number {
  return len <= 0 ? 0 : len >= 32 ? -1 : -1 << (32 - len);
}

/** Bit i of the address held as 32-bit words (most significant first). */
function wordBit(words: ArrayLike<number>, at: number, i: number): number {
  return (words[at + (i >> 5)]! >>> (31 - (i & 31))) & 1;
}

/** The address bytes as 32-bit words, most significant first. */
function toWords(bytes: Uint8Array): Int32Array {
  const w = new Int32Array(bytes.length >> 2);
  for (let j = 0; j < w.length; j++) w[j] = (bytes[4 * j]! << 24) | (bytes[4 * j + 1]! << 16) | (bytes[4 * j + 2]! << 8) | bytes[4 * j + 3]!;
  return w;
}

/** The 32-bit word of an address at buf[off..off + 4]. */
function wordAt(buf: Uint8Array, off: number): number {
  return (buf[off]! << 24) | (buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!;
}

/**
 * One family's trie, its nodes in one Int32Array (not an object each): per node its key's words,
 * its prefix length, its two children and its parent, side by side (a lookup reads one node's
 * fields from one cache line), and its value in a plain array by node number. ~28 B an IPv4 node
 * (44 IPv6) where a node object with its key string was ~104: with a fork and a leaf per prefix,
 * most of what a peer's allowed IPs cost. Nodes removed go on a free list (through ZERO) and are
 * taken again first.
 */
class FamilyTrie<T> {
  /** 32-bit words per key: 1 (IPv4) or 4 (IPv6); the fields after the key, then the node's stride. */
  private readonly width: number;
  private readonly LEN: number;
  private readonly ZERO: number;
  private readonly ONE: number;
  private readonly PARENT: number;
  private readonly stride: number;
  private nodes = new Int32Array(0);
  private readonly values: (T | undefined)[] = [];
  private capacity = 0;
  /** Nodes ever made (the high-water mark); those released are on the free list. */
  private made = 0;
  private free = NONE;
  private root = NONE;

  constructor(readonly family: IpFamily) {
    this.width = family === 4 ? 1 : 4;
    this.LEN = this.width;
    this.ZERO = this.width + 1;
    this.ONE = this.width + 2;
    this.PARENT = this.width + 3;
    this.stride = this.width + 4;
  }

  /** A node for the first `len` bits of `words` (the rest cleared). */
  private node(words: Int32Array, len: number, value: T | undefined): number {
    let n = this.free;
    if (n !== NONE) this.free = this.nodes[n * this.stride + this.ZERO]!;
    else {
      if (this.made === this.capacity) {
        this.capacity = Math.max(16, Math.ceil(this.capacity * 1.5));
        const grown = new Int32Array(this.capacity * this.stride);
        grown.set(this.nodes);
        this.nodes = grown;
      }
      n = this.made++;
      this.values.push(undefined);
    }
    const at = n * this.stride;
    for (let j = 0; j < this.width; j++) this.nodes[at + j] = words[j]! & mask(len - 32 * j);
    this.nodes[at + this.LEN] = len;
    this.nodes[at + this.ZERO] = this.nodes[at + this.ONE] = this.nodes[at + this.PARENT] = NONE;
    this.values[n] = value;
    return n;
  }

  private release(n: number): void {
    this.values[n] = undefined;
    this.nodes[n * this.stride + this.ZERO] = this.free;
    this.free = n;
  }

  private len(n: number): number { return this.nodes[n * this.stride + this.LEN]!; }
  private zero(n: number): number { return this.nodes[n * this.stride + this.ZERO]!; }
  private one(n: number): number { return this.nodes[n * this.stride + this.ONE]!; }
  private parent(n: number): number { return this.nodes[n * this.stride + this.PARENT]!; }
  private set(n: number, field: number, to: number): void { this.nodes[n * this.stride + field] = to; }

  /** Leading bits (at most max) that node n's key and `words` share. */
  private common(n: number, words: Int32Array, max: number): number {
    let i = 0;
    for (let j = 0; j < this.width && i < max; j++) {
      const x = this.nodes[n * this.stride + j]! ^ words[j]!;
      if (x !== 0) return Math.min(max, i + Math.clz32(x));
      i += 32;
    }
    return Math.min(i, max);
  }

  /** Puts `replacement` where `old` hangs (parent link or root). */
  private replace(old: number, replacement: number): void {
    const p = this.parent(old);
    if (p === NONE) this.root = replacement;
    else this.set(p, this.zero(p) === old ? this.ZERO : this.ONE, replacement);
    if (replacement !== NONE) this.set(replacement, this.PARENT, p);
  }

  private attach(parent: number, child: number): void {
    this.set(parent, wordBit(this.nodes, child * this.stride, this.len(parent)) ? this.ONE : this.ZERO, child);
    this.set(child, this.PARENT, parent);
  }

  /**
   * Maps the first `len` bits of `words` to value; returns its node, ~node when the prefix is new.
   * A node keeps its number while it has a value (nodes are added around it, never moved).
   */
  insert(words: Int32Array, len: number, value: T): number {
    let n = this.root;
    if (n === NONE) return ~(this.root = this.node(words, len, value));
    for (;;) {
      const nodeLen = this.len(n);
      const common = this.common(n, words, Math.min(nodeLen, len));
      if (common === nodeLen) {
        if (nodeLen === len) {
          const fresh = this.values[n] === undefined;
          this.values[n] = value;
          return fresh ? ~n : n;
        }
        const next = wordBit(words, 0, nodeLen) ? this.one(n) : this.zero(n);
        if (next === NONE) { const leaf = this.node(words, len, value); this.attach(n, leaf); return ~leaf; }
        n = next;
        continue;
      }
      // The new prefix leaves n's path at bit `common`.
      const fresh = this.node(words, len, value);
      if (common === len) {
        this.replace(n, fresh);
        this.attach(fresh, n);
      } else {
        const fork = this.node(words, common, undefined);
        this.replace(n, fork);
        this.attach(fork, n);
        this.attach(fork, fresh);
      }
      return ~fresh;
    }
  }

  /** Node n's key's j-th 32-bit word and its prefix length (no object made). */
  wordOf(n: number, j: number): number {
    return this.nodes[n * this.stride + j]!;
  }

  lengthOf(n: number): number {
    return this.len(n);
  }

  /** Node n's prefix (its key and length). */
  cidrOf(n: number): Cidr {
    const bytes = new Uint8Array(this.width * 4);
    for (let j = 0; j < this.width; j++) {
      const w = this.nodes[n * this.stride + j]!;
      bytes[4 * j] = w >>> 24; // a Uint8Array keeps the low byte of each
      bytes[4 * j + 1] = w >>> 16;
      bytes[4 * j + 2] = w >>> 8;
      bytes[4 * j + 3] = w;
    }
    return { family: this.family, bytes, prefixLength: this.len(n) };
  }

  /** The node of exactly this prefix, or NONE. */
  find(words: Int32Array, len: number): number {
    let n = this.root;
    while (n !== NONE && this.len(n) <= len && this.common(n, words, this.len(n)) === this.len(n)) {
      if (this.len(n) === len) return n;
      n = wordBit(words, 0, this.len(n)) ? this.one(n) : this.zero(n);
    }
    return NONE;
  }

  valueOf(n: number): T | undefined {
    return n === NONE ? undefined : this.values[n];
  }

  /** Clears node n's value and drops the valueless nodes that no longer fork, walking up. */
  clearValue(n: number): void {
    this.values[n] = undefined;
    while (n !== NONE && this.values[n] === undefined && (this.zero(n) === NONE || this.one(n) === NONE)) {
      const parent = this.parent(n);
      this.replace(n, this.zero(n) !== NONE ? this.zero(n) : this.one(n));
      this.release(n);
      n = parent;
    }
  }

  /** The value of the longest prefix containing the IPv4 address at buf[off..] (stride 5: key, length, zero, one, parent). */
  lookup4(buf: Uint8Array, off: number): T | undefined {
    const a = wordAt(buf, off);
    const nodes = this.nodes, values = this.values;
    let found: T | undefined;
    let n = this.root;
    while (n !== NONE) {
      const at = n * 5, len = nodes[at + 1]!;
      if (len !== 0 && ((a ^ nodes[at]!) & (-1 << (32 - len))) !== 0) break;
      const v = values[n];
      if (v !== undefined) found = v;
      if (len === 32) break;
      n = nodes[at + 2 + ((a >>> (31 - len)) & 1)]!;
    }
    return found;
  }

  /** The value of the longest prefix containing the IPv6 address at buf[off..] (stride 8: four key words, length, zero, one, parent). */
  lookup6(buf: Uint8Array, off: number): T | undefined {
    const a0 = wordAt(buf, off), a1 = wordAt(buf, off + 4), a2 = wordAt(buf, off + 8), a3 = wordAt(buf, off + 12);
    const nodes = this.nodes, values = this.values;
    let found: T | undefined;
    let n = this.root;
    while (n !== NONE) {
      const at = n * 8, len = nodes[at + 4]!;
      if (((a0 ^ nodes[at]!) & mask(len)) !== 0 || ((a1 ^ nodes[at + 1]!) & mask(len - 32)) !== 0
        || ((a2 ^ nodes[at + 2]!) & mask(len - 64)) !== 0 || ((a3 ^ nodes[at + 3]!) & mask(len - 96)) !== 0) break;
      const v = values[n];
      if (v !== undefined) found = v;
      if (len === 128) break;
      const w = len < 32 ? a0 : len < 64 ? a1 : len < 96 ? a2 : a3;
      n = nodes[at + 5 + ((w >>> (31 - (len & 31))) & 1)]!;
    }
    return found;
  }

  /** Every prefix with a value (optionally only those of `value`), in key order. */
  entries(value: T | undefined, out: AllowedIpEntry<T>[]): void {
    const walk = (n: number): void => {
      if (n === NONE) return;
      const v = this.values[n];
      if (v !== undefined && (value === undefined || v === value)) out.push({ cidr: this.cidrOf(n), value: v });
      walk(this.zero(n));
      walk(this.one(n));
    };
    walk(this.root);
  }
}

export interface AllowedIpEntry<T> {
  cidr: Cidr;
  value: T;
}

/**
 * A prefix as its holder lists it: its handle (insert()) while the holder keeps it and the trie
 * spells it as given (a number, not a string of its own), else its text.
 */
export type PrefixRef = number | string;

export class AllowedIps<T> {
  #v4 = new FamilyTrie<T>(4);
  #v6 = new FamilyTrie<T>(6);
  #size = 0;

  /** Number of prefixes stored. */
  get size(): number {
    return this.#size;
  }

  #trie(family: IpFamily): FamilyTrie<T> {
    return family === 4 ? this.#v4 : this.#v6;
  }

  /**
   * Maps the prefix (a Cidr or its text) to value, replacing what it mapped to before. Returns its
   * handle (valueAt, prefixAt, removeAt): a small integer, its node's number (~number for IPv6),
   * the same for as long as the prefix stays mapped; afterwards it may name another prefix.
   */
  insert(prefix: Cidr | string, value: T): number {
    if (value === undefined) throw new VeilError('ALLOWED_IPS_VALUE', 'allowed-ips values cannot be undefined');
    const c = typeof prefix === 'string' ? parseCidr(prefix) : prefix;
    let n = this.#trie(c.family).insert(toWords(maskAddress(c.bytes, c.prefixLength)), c.prefixLength, value);
    if (n < 0) { n = ~n; this.#size++; }
    return c.family === 4 ? n : ~n;
  }

  /** The handle of exactly this prefix (insert()), or undefined when it is not mapped. */
  handleOf(prefix: Cidr | string): number | undefined {
    const { trie, node } = this.#find(prefix);
    if (trie.valueOf(node) === undefined) return undefined;
    return trie === this.#v4 ? node : ~node;
  }

  /** The value of the prefix with this handle (insert()). */
  valueAt(handle: number): T | undefined {
    return handle >= 0 ? this.#v4.valueOf(handle) : this.#v6.valueOf(~handle);
  }

  /**
   * The prefix with this handle (insert()), as text ("10.0.0.0/24": its address masked). IPv4's
   * from its word, as formatCidr spells it, without the Cidr and its bytes (a WireGuard status
   * read formats every peer's prefixes: ~0.4 KB of garbage a prefix that way).
   */
  prefixAt(handle: number): string {
    if (handle < 0) return formatCidr(this.#v6.cidrOf(~handle));
    const w = this.#v4.wordOf(handle, 0);
    return `${w >>> 24}.${(w >>> 16) & 0xff}.${(w >>> 8) & 0xff}.${w & 0xff}/${this.#v4.lengthOf(handle)}`;
  }

  /**
   * The IPv4 prefix with this handle (>= 0): its address as one 32-bit word (lengthAt its length), what
   * prefixAt() spells, without making the text (a digest of every peer's prefixes made ~0.9 KB of
   * garbage a peer formatting them).
   */
  ipv4At(handle: number): number {
    return this.#v4.wordOf(handle, 0);
  }

  /** The length of the prefix with this handle. */
  lengthAt(handle: number): number {
    return handle >= 0 ? this.#v4.lengthOf(handle) : this.#v6.lengthOf(~handle);
  }

  /** Removes the prefix with this handle (insert()); returns whether it was mapped. */
  removeAt(handle: number): boolean {
    const trie = handle >= 0 ? this.#v4 : this.#v6, node = handle >= 0 ? handle : ~handle;
    if (trie.valueOf(node) === undefined) return false;
    trie.clearValue(node);
    this.#size--;
    return true;
  }

  #find(prefix: Cidr | string): { trie: FamilyTrie<T>; node: number } {
    const c = typeof prefix === 'string' ? parseCidr(prefix) : prefix;
    const trie = this.#trie(c.family);
    return { trie, node: trie.find(toWords(maskAddress(c.bytes, c.prefixLength)), c.prefixLength) };
  }

  /** The value of exactly this prefix (no longest match), or undefined. */
  get(prefix: Cidr | string): T | undefined {
    const { trie, node } = this.#find(prefix);
    return trie.valueOf(node);
  }

  /** Removes exactly this prefix; returns whether it was present. */
  remove(prefix: Cidr | string): boolean {
    const { trie, node } = this.#find(prefix);
    if (trie.valueOf(node) === undefined) return false;
    trie.clearValue(node);
    this.#size--;
    return true;
  }

  /** The value the prefix a holder lists (PrefixRef) maps to now. */
  valueOfRef(p: PrefixRef): T | undefined {
    return typeof p === 'number' ? this.valueAt(p) : this.get(p);
  }

  /** The prefix a holder lists (PrefixRef), as text. */
  textOf(p: PrefixRef): string {
    return typeof p === 'number' ? this.prefixAt(p) : p;
  }

  /** Removes the prefix a holder lists (PrefixRef); returns whether it was mapped. */
  removeRef(p: PrefixRef): boolean {
    return typeof p === 'number' ? this.removeAt(p) : this.remove(p);
  }

  /** Removes those of a holder's prefixes that still map to it (another holder may own one by now). */
  releaseRefs(holder: T, refs: readonly PrefixRef[]): void {
    for (const p of refs) if (this.valueOfRef(p) === holder) this.removeRef(p);
  }

  /**
   * Removes the entries no holder lists (drift a digest shows, which no holder's own update would
   * remove: a prefix's packets would go to a peer never given it). `forEachListed(visit)` calls visit
   * with each holder and each prefix it lists; a listed prefix counts while it maps to that holder.
   * When nothing is stray (a resync's usual case) this counts and allocates nothing. Returns how many went.
   */
  removeUnlisted(forEachListed: (visit: (holder: T, p: PrefixRef) => void) => void): number {
    let owned = 0;
    forEachListed((holder, p) => { if (this.valueOfRef(p) === holder) owned++; });
    if (owned === this.#size) return 0;
    const listed = new Set<number>();
    forEachListed((holder, p) => { if (this.valueOfRef(p) === holder) listed.add(typeof p === 'number' ? p : this.handleOf(p)!); });
    let removed = 0;
    for (const e of this.entries()) if (!listed.has(this.handleOf(e.cidr)!) && this.remove(e.cidr)) removed++;
    return removed;
  }

  /**
   * A holder's earlier prefixes whose trie entry is none of `handles` (those it just held again):
   * what it let go. One held again in another spelling is the same entry and stays.
   */
  refsOutside(refs: readonly PrefixRef[], handles: readonly number[]): PrefixRef[] {
    return refs.filter((p) => !handles.includes(typeof p === 'number' ? p : this.handleOf(p) ?? NaN));
  }

  /** The value of the longest prefix containing the family-sized address at buf[off..]. */
  lookup(buf: Uint8Array, off: number, family: IpFamily): T | undefined {
    return family === 4 ? this.#v4.lookup4(buf, off) : this.#v6.lookup6(buf, off);
  }

  /** The value for the destination of the IP packet at buf[off] (IPv6 if its version says so, else IPv4). */
  lookupDestination(buf: Uint8Array, off: number): T | undefined {
    return buf[off]! >> 4 === 6 ? this.#v6.lookup6(buf, off + 24) : this.#v4.lookup4(buf, off + 16);
  }

  /** The value for the source of the IP packet at buf[off]: cryptokey routing's inbound check. */
  lookupSource(buf: Uint8Array, off: number): T | undefined {
    return buf[off]! >> 4 === 6 ? this.#v6.lookup6(buf, off + 8) : this.#v4.lookup4(buf, off + 12);
  }

  /** Every prefix (with its value), optionally only those of one value; IPv4 first, in key order. */
  entries(value?: T): AllowedIpEntry<T>[] {
    const out: AllowedIpEntry<T>[] = [];
    this.#v4.entries(value, out);
    this.#v6.entries(value, out);
    return out;
  }

  /** The prefixes of one value as text ("10.0.0.0/24"). */
  prefixesOf(value: T): string[] {
    return this.entries(value).map((e) => formatCidr(e.cidr));
  }

  /** Removes every prefix mapped to value (a peer that went away); returns how many. */
  removeValue(value: T): number {
    const gone = this.entries(value);
    for (const e of gone) this.remove(e.cidr);
    return gone.length;
  }

  clear(): void {
    this.#v4 = new FamilyTrie<T>(4);
    this.#v6 = new FamilyTrie<T>(6);
    this.#size = 0;
  }
}
