// Cryptokey routing table: a longest-prefix-match trie per address family mapping prefixes to a
// value (a peer), as wireguard-go's allowedips.go: path-compressed binary trie, lookups walk at most
// one node per distinct prefix length on the path and allocate nothing.
import { VeilError } from '../util/errors.js';
import { type Cidr, formatCidr, type IpFamily, maskAddress, parseCidr } from './cidr.js';

/**
 * A node's prefix bytes as a Latin-1 string (one char per byte): 16 bytes of heap for IPv4, 32 for
 * IPv6, where a Uint8Array costs ~300 with its ArrayBuffer and backing store. With a node or two
 * per prefix, this is most of what a peer's allowed IPs cost (the < 2 KB per peer target).
 */
type Key = string;

function toKey(bytes: Uint8Array): Key {
  return String.fromCharCode(...bytes);
}

function keyBytes(k: Key): Uint8Array {
  const out = new Uint8Array(k.length);
  for (let i = 0; i < k.length; i++) out[i] = k.charCodeAt(i);
  return out;
}

function keyBit(k: Key, i: number): number {
  return (k.charCodeAt(i >> 3) >> (7 - (i & 7))) & 1;
}

/** Whether the first `bits` bits of k equal those of buf[off..]. */
function keyMatches(k: Key, buf: Uint8Array, off: number, bits: number): boolean {
  const full = bits >> 3;
  for (let i = 0; i < full; i++) if (k.charCodeAt(i) !== buf[off + i]) return false;
  const rest = bits & 7;
  return rest === 0 || ((k.charCodeAt(full) ^ buf[off + full]!) & (0xff00 >> rest) & 0xff) === 0;
}

class TrieNode<T> {
  key: Key;
  /** IPv4 nodes: the key as a 32-bit integer, so a lookup tests a node with one masked compare. */
  v4: number;
  prefixLength: number;
  value: T | undefined;
  parent: TrieNode<T> | null = null;
  zero: TrieNode<T> | null = null;
  one: TrieNode<T> | null = null;

  constructor(key: Key, prefixLength: number, value: T | undefined) {
    this.key = key;
    this.v4 = key.length === 4 ? (key.charCodeAt(0) << 24) | (key.charCodeAt(1) << 16) | (key.charCodeAt(2) << 8) | key.charCodeAt(3) : 0;
    this.prefixLength = prefixLength;
    this.value = value;
  }

  childCount(): number {
    return (this.zero ? 1 : 0) + (this.one ? 1 : 0);
  }
}

function bitAt(buf: Uint8Array, off: number, i: number): number {
  return (buf[off + (i >> 3)]! >> (7 - (i & 7))) & 1;
}

/** Leading bits (at most max) that key a and bytes b share. */
function commonBits(a: Key, b: Uint8Array, max: number): number {
  let i = 0;
  while (i + 8 <= max && a.charCodeAt(i >> 3) === b[i >> 3]) i += 8;
  while (i < max && keyBit(a, i) === bitAt(b, 0, i)) i++;
  return i;
}

export interface AllowedIpEntry<T> {
  cidr: Cidr;
  value: T;
}

export class AllowedIps<T> {
  #v4: TrieNode<T> | null = null;
  #v6: TrieNode<T> | null = null;
  #size = 0;

  /** Number of prefixes stored. */
  get size(): number {
    return this.#size;
  }

  #root(family: IpFamily): TrieNode<T> | null {
    return family === 4 ? this.#v4 : this.#v6;
  }

  #setRoot(family: IpFamily, n: TrieNode<T> | null): void {
    if (family === 4) this.#v4 = n;
    else this.#v6 = n;
    if (n) n.parent = null;
  }

  /** Puts `replacement` where `old` hangs (parent link or root). */
  #replace(family: IpFamily, old: TrieNode<T>, replacement: TrieNode<T> | null): void {
    const p = old.parent;
    if (!p) this.#setRoot(family, replacement);
    else {
      if (p.zero === old) p.zero = replacement;
      else p.one = replacement;
      if (replacement) replacement.parent = p;
    }
  }

  #attach(parent: TrieNode<T>, child: TrieNode<T>): void {
    if (keyBit(child.key, parent.prefixLength)) parent.one = child;
    else parent.zero = child;
    child.parent = parent;
  }

  /** Maps the prefix (a Cidr or its text) to value, replacing what it mapped to before. */
  insert(prefix: Cidr | string, value: T): void {
    if (value === undefined) throw new VeilError('ALLOWED_IPS_VALUE', 'allowed-ips values cannot be undefined');
    const c = typeof prefix === 'string' ? parseCidr(prefix) : prefix;
    const key = maskAddress(c.bytes, c.prefixLength);
    const cidr = c.prefixLength;
    let node = this.#root(c.family);
    if (!node) {
      this.#setRoot(c.family, new TrieNode(toKey(key), cidr, value));
      this.#size++;
      return;
    }
    for (;;) {
      const common = commonBits(node.key, key, Math.min(node.prefixLength, cidr));
      if (common === node.prefixLength) {
        if (node.prefixLength === cidr) {
          if (node.value === undefined) this.#size++;
          node.value = value;
          return;
        }
        const next: TrieNode<T> | null = bitAt(key, 0, node.prefixLength) ? node.one : node.zero;
        if (!next) {
          this.#attach(node, new TrieNode(toKey(key), cidr, value));
          this.#size++;
          return;
        }
        node = next;
        continue;
      }
      // The new prefix leaves node's path at bit `common`.
      const fresh = new TrieNode(toKey(key), cidr, value);
      this.#size++;
      if (common === cidr) {
        this.#replace(c.family, node, fresh);
        this.#attach(fresh, node);
      } else {
        const fork = new TrieNode<T>(toKey(maskAddress(key, common)), common, undefined);
        this.#replace(c.family, node, fork);
        this.#attach(fork, node);
        this.#attach(fork, fresh);
      }
      return;
    }
  }

  #find(c: Cidr): TrieNode<T> | null {
    let node = this.#root(c.family);
    while (node && node.prefixLength <= c.prefixLength && keyMatches(node.key, c.bytes, 0, node.prefixLength)) {
      if (node.prefixLength === c.prefixLength) return node;
      node = bitAt(c.bytes, 0, node.prefixLength) ? node.one : node.zero;
    }
    return null;
  }

  /** The value of exactly this prefix (no longest match), or undefined. */
  get(prefix: Cidr | string): T | undefined {
    const c = typeof prefix === 'string' ? parseCidr(prefix) : prefix;
    return this.#find({ ...c, bytes: maskAddress(c.bytes, c.prefixLength) })?.value;
  }

  /** Removes exactly this prefix; returns whether it was present. */
  remove(prefix: Cidr | string): boolean {
    const c = typeof prefix === 'string' ? parseCidr(prefix) : prefix;
    const node = this.#find({ ...c, bytes: maskAddress(c.bytes, c.prefixLength) });
    if (!node || node.value === undefined) return false;
    node.value = undefined;
    this.#size--;
    this.#prune(c.family, node);
    return true;
  }

  /** Drops valueless nodes that no longer fork, walking up. */
  #prune(family: IpFamily, start: TrieNode<T>): void {
    let node: TrieNode<T> | null = start;
    while (node && node.value === undefined && node.childCount() < 2) {
      const parent: TrieNode<T> | null = node.parent;
      this.#replace(family, node, node.zero ?? node.one);
      node = parent;
    }
  }

  /** The value of the longest prefix containing the family-sized address at buf[off..]. */
  lookup(buf: Uint8Array, off: number, family: IpFamily): T | undefined {
    let found: T | undefined;
    if (family === 4) {
      const a = (buf[off]! << 24) | (buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!;
      let node = this.#v4;
      while (node) {
        const len = node.prefixLength;
        if (len !== 0 && ((a ^ node.v4) & (-1 << (32 - len))) !== 0) break;
        if (node.value !== undefined) found = node.value;
        if (len === 32) break;
        node = (a >>> (31 - len)) & 1 ? node.one : node.zero;
      }
      return found;
    }
    let node = this.#v6;
    while (node && keyMatches(node.key, buf, off, node.prefixLength)) {
      if (node.value !== undefined) found = node.value;
      if (node.prefixLength === 128) break;
      node = bitAt(buf, off, node.prefixLength) ? node.one : node.zero;
    }
    return found;
  }

  /** The value for the destination of the IP packet at buf[off] (IPv6 if its version says so, else IPv4). */
  lookupDestination(buf: Uint8Array, off: number): T | undefined {
    return buf[off]! >> 4 === 6 ? this.lookup(buf, off + 24, 6) : this.lookup(buf, off + 16, 4);
  }

  /** The value for the source of the IP packet at buf[off]: cryptokey routing's inbound check. */
  lookupSource(buf: Uint8Array, off: number): T | undefined {
    return buf[off]! >> 4 === 6 ? this.lookup(buf, off + 8, 6) : this.lookup(buf, off + 12, 4);
  }

  /** Every prefix (with its value), optionally only those of one value; IPv4 first, in key order. */
  entries(value?: T): AllowedIpEntry<T>[] {
    const out: AllowedIpEntry<T>[] = [];
    const walk = (n: TrieNode<T> | null, family: IpFamily) => {
      if (!n) return;
      if (n.value !== undefined && (value === undefined || n.value === value)) {
        out.push({ cidr: { family, bytes: keyBytes(n.key), prefixLength: n.prefixLength }, value: n.value });
      }
      walk(n.zero, family);
      walk(n.one, family);
    };
    walk(this.#v4, 4);
    walk(this.#v6, 6);
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
    this.#v4 = this.#v6 = null;
    this.#size = 0;
  }
}
