// A digest of an ESP datapath's table (peers, their SAs with their keys, the allowed IPs each one
// owns), made the same way from the agent's desired specs and from what the engine holds. The
// agent's periodic whole pass compares the two and sends the whole table only when they differ: at
// 5,000 peers the table by postMessage and its application cost ~150 ms of CPU a minute for a table
// that was, every time, already in place. Not a cryptographic hash (nothing here is an adversary's
// input against a secret): it catches drift, and a drift it missed is caught at the next change.
import { packedLength, type PackedTransform } from '../esp/esp-transform.js';
import type { OneOrMore } from '../util/one-or-more.js';
import type { EspPeerSpec, EspSaSpec } from './messages.js';

/** Two 32-bit FNV-1a lanes with different primes (one 64-bit-ish hash), fed code units and numbers. */
const P1 = 0x01000193;
const P2 = 0x5bd1e995;
const BASIS1 = 0x811c9dc5;
const BASIS2 = 0x3c6ef372;

/**
 * Entries (a peer, an SA, a prefix and its owner) are hashed one by one and summed, so the order
 * the two sides meet them in does not matter; the count is part of the digest.
 */
export class EspTableDigest {
  private sum1 = 0;
  private sum2 = 0;
  private entries = 0;
  private h1 = BASIS1;
  private h2 = BASIS2;

  /** A peer as the engine keeps it: its address and the SPI of its active outbound SA (0: none); not its name, which the engine does not keep. */
  peer(ip: string, activeSpi: number): void {
    this.text('p'); this.text(ip); this.num(activeSpi);
    this.end();
  }

  /** An SA ('o'ut to the peer at ip, 'i'n from it), its SPI and its transform with the key material. */
  sa(direction: 'o' | 'i', ip: string, spi: number, t: PackedTransform): void {
    this.text(direction); this.text(ip); this.num(spi);
    this.text(t.kind); this.num(t.icvLength);
    if (t.kind === 'aead') this.num(t.keyLength);
    else { this.text(t.auth); this.num(t.encKeyLength); this.num(t.authKeyLength); }
    const m = t.material;
    for (let i = t.at, end = t.at + packedLength(t); i < end; i++) this.num(m[i]!);
    this.end();
  }

  /** An allowed-IPs prefix owned by the peer at ip. */
  prefix(prefix: string, ip: string): void {
    this.text('a'); this.text(prefix); this.text(ip);
    this.end();
  }

  /** Something only one side has (an entry of the trie no peer owns): the digests cannot match. */
  stray(what: string): void {
    this.text('x'); this.text(what);
    this.end();
  }

  get value(): string {
    return `${this.entries}:${(this.sum1 >>> 0).toString(16)}:${(this.sum2 >>> 0).toString(16)}`;
  }

  /** Adds (sign 1) or takes away (-1) another digest's entries: the sums wrap, so what was added is taken away exactly. */
  addSums(other: EspTableDigest, sign: 1 | -1): void {
    this.sum1 = (this.sum1 + sign * other.sum1) | 0;
    this.sum2 = (this.sum2 + sign * other.sum2) | 0;
    this.entries += sign * other.entries;
  }

  /** Back to no entries. */
  reset(): void {
    this.sum1 = 0; this.sum2 = 0; this.entries = 0;
    this.h1 = BASIS1; this.h2 = BASIS2;
  }

  private text(s: string): void {
    let h1 = this.h1, h2 = this.h2;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      h1 = Math.imul(h1 ^ c, P1);
      h2 = Math.imul(h2 ^ c, P2);
    }
    this.h1 = Math.imul(h1 ^ 0xffff, P1); // a separator no code unit matches alone: ('ab','c') is not ('a','bc')
    this.h2 = Math.imul(h2 ^ 0xffff, P2);
  }

  private num(n: number): void {
    this.h1 = Math.imul(this.h1 ^ n, P1);
    this.h2 = Math.imul(this.h2 ^ n, P2);
  }

  private end(): void {
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

/**
 * The digest of the table these specs make (what EspEngine.digest() answers once it holds exactly
 * them): an SPI named twice in a direction counts once, as the engine keeps it; an active SPI without its
 * SA counts as none; a prefix named twice by a peer counts once. Plain loops over the one-or-more
 * lists: the agent's whole pass makes it over every peer, where arrays and closures per spec were
 * ~2 MB of garbage at 5,000 peers.
 */
export function espSpecsDigest(specs: readonly EspPeerSpec[]): string {
  const d = new EspTableDigest();
  for (let k = 0; k < specs.length; k++) digestSpec(d, specs[k]!);
  return d.value;
}

/**
 * espSpecsDigest of a set of specs kept up to date spec by spec: a spec's entries are added as it
 * comes and taken away as it goes (the digest is a sum), so the agent's periodic check reads a
 * value that a peer's event already paid for, where hashing every spec was ~3 ms warm and far
 * more once a minute in a cold agent at 5,000 peers.
 */
export class EspSpecsDigest {
  private readonly sums = new EspTableDigest();
  private readonly one = new EspTableDigest();

  add(spec: EspPeerSpec): void { this.move(spec, 1); }
  remove(spec: EspPeerSpec): void { this.move(spec, -1); }
  /** Back to no specs (the next table is counted from nothing). */
  clear(): void { this.sums.reset(); }
  get value(): string { return this.sums.value; }

  private move(spec: EspPeerSpec, sign: 1 | -1): void {
    this.one.reset();
    digestSpec(this.one, spec);
    this.sums.addSums(this.one, sign);
  }
}

/** A spec's entries, as the engine keeps them (see espSpecsDigest). */
function digestSpec(d: EspTableDigest, s: EspPeerSpec): void {
  d.peer(s.ip, hasSpi(s.outbound, s.activeSpi) ? s.activeSpi : 0);
  digestSas(d, 'o', s.ip, s.outbound);
  digestSas(d, 'i', s.ip, s.inbound);
  const a = s.allowedIPs;
  if (!Array.isArray(a)) return d.prefix(a, s.ip);
  for (let i = 0; i < a.length; i++) if (a.indexOf(a[i]!) === i) d.prefix(a[i]!, s.ip);
}

function hasSpi(sas: OneOrMore<EspSaSpec>, spi: number): boolean {
  if (!Array.isArray(sas)) return sas.spi === spi;
  for (let i = 0; i < sas.length; i++) if (sas[i]!.spi === spi) return true;
  return false;
}

/** A direction's SAs, each SPI once (its first SA). */
function digestSas(d: EspTableDigest, direction: 'o' | 'i', ip: string, sas: OneOrMore<EspSaSpec>): void {
  if (!Array.isArray(sas)) return d.sa(direction, ip, sas.spi, sas);
  for (let i = 0; i < sas.length; i++) {
    let first = true;
    for (let j = 0; j < i && first; j++) first = sas[j]!.spi !== sas[i]!.spi;
    if (first) d.sa(direction, ip, sas[i]!.spi, sas[i]!);
  }
}
