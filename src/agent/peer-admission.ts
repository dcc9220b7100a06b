// Which nodes may be peers: a node object can be written by anyone with registry access, so one
// that claims an address or pod CIDR another node already holds (or this node's own, or a pod CIDR
// over node addresses, such as the underlay subnet) is refused, naming both, and the first claim is
// kept. Without this, a forged object would take over another node's pods.
//
// Incremental: one node's change re-decides that node and only the nodes whose claims overlap its
// old or new ones (an address index answers "who overlaps this range" without a scan), so the cost
// of an event does not grow with the cluster. The result is the same as admitting every node in
// age order, each against the nodes admitted before it.
import { cidrContains, cidrContainsCidr, cidrsOverlap, maskAddress, parseCidr, parseIp, type Cidr, type IpAddress, type IpFamily } from '../net/cidr.js';
import { listOf, sameElements, type OneOrMore } from '../util/one-or-more.js';
import { MarkedSlots } from '../util/marked-slots.js';

/**
 * What a node claims: named as a peer's fields, so that a peer (PeerNode) is its own claim (a claim
 * object per node was ~56 B). One address or pod CIDR is the string itself (util/one-or-more.ts).
 */
export interface Claim {
  name: string;
  internalIPs: OneOrMore<string>;
  podCIDRs: OneOrMore<string>;
}

interface Parsed { name: string; ips: { text: string; ip: IpAddress }[]; cidrs: { text: string; cidr: Cidr }[] }

function parse(c: Claim): Parsed | string {
  const ips: Parsed['ips'] = [];
  const cidrs: Parsed['cidrs'] = [];
  for (const text of listOf(c.internalIPs)) {
    try { ips.push({ text, ip: parseIp(text) }); } catch { return `its address "${text}" is not an IP address`; }
  }
  for (const text of listOf(c.podCIDRs)) {
    try { cidrs.push({ text, cidr: parseCidr(text, { strict: true }) }); } catch { return `its pod CIDR "${text}" is not a CIDR`; }
  }
  return { name: c.name, ips, cidrs };
}

const sameIp = (a: IpAddress, b: IpAddress) => a.family === b.family && a.bytes.every((x, i) => x === b.bytes[i]);

/** Why candidate collides with holder, or undefined. */
function collision(candidate: Parsed, holder: Parsed, whose: string): string | undefined {
  for (const { text, ip } of candidate.ips) {
    for (const h of holder.ips) if (sameIp(ip, h.ip)) return `it claims the address ${text} of ${whose}`;
    for (const h of holder.cidrs) if (cidrContains(h.cidr, ip)) return `its address ${text} lies in the pod CIDR ${h.text} of ${whose}`;
  }
  for (const { text, cidr } of candidate.cidrs) {
    for (const h of holder.cidrs) if (cidrsOverlap(cidr, h.cidr)) return `its pod CIDR ${text} overlaps ${h.text} of ${whose}`;
    for (const h of holder.ips) if (cidrContains(cidr, h.ip)) return `its pod CIDR ${text} contains the address ${h.text} of ${whose}`;
  }
  return undefined;
}

/**
 * A bound of a range: an IPv4 address as a number (its hex string and the index key made of it
 * were ~110 B a range), an IPv6 one as fixed-width hex. Bounds of one family are of one type, and
 * both order by `<` as the addresses do.
 */
type Bound = number | string;

/** One claimed range (an address is a full-length range): made when needed, not kept (the index holds it as columns). */
interface Range { owner: string; family: IpFamily; bits: number; start: Bound; end: Bound }

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const before = (a: Bound, b: Bound): boolean => (a as number) < (b as number); // both numbers or both strings (one family)

/**
 * An IPv4 address as a bound: its 32 bits with the top one flipped, a signed 32-bit number that
 * orders as the address does and that V8 keeps as a small integer (an address above 2^31 as such
 * was a 16-byte heap number, in the range and in the index).
 */
const v4Bound = (b: Uint8Array): number => ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) ^ 0x80000000;

/** The IPv4 bound `a` masked to the address's first `bits` bits (a bound too: the flipped top bit is kept, or is the whole space's start). */
const maskV4 = (a: number, bits: number): number => (bits === 0 ? 0x80000000 | 0 : a & (-1 << (32 - bits)));

function rangeOf(owner: string, family: IpFamily, bytes: Uint8Array, bits: number): Range {
  if (family === 4) {
    const start = maskV4(v4Bound(bytes), bits);
    return { owner, family, bits, start, end: (start + 2 ** (32 - bits) - 1) | 0 }; // | 0: an integer V8 keeps small (a power's result is a heap number)
  }
  const start = maskAddress(bytes, bits);
  const end = Uint8Array.from(start);
  for (let i = bits; i < end.length * 8; i++) end[i >> 3]! |= 0x80 >> (i & 7);
  return { owner, family, bits, start: hex(start), end: hex(end) };
}

/**
 * One family's ranges sorted by start, as columns (a struct of arrays): slot i is the range at
 * starts[i], bits[i] long, of owners[i] (its end follows from those, and no search reads it: a
 * column of ends was ~20 B a peer). Two array slots and a byte a range (~17 B), where an object per
 * range and an array of them per node were ~170 B a node. The lengths are bytes (0-128), the first
 * starts.length of them in use: an array of numbers was 8 B a range.
 */
interface Sorted { starts: Bound[]; bits: Uint8Array; owners: string[] }

/**
 * Address ranges by owner. Prefixes are nested or disjoint, so a range overlaps another exactly when
 * one contains the other: the containing ones are found by one binary search per prefix length in
 * use (the range's start masked to that length), the contained ones by a binary search too, all in
 * the ranges sorted by start (a map by start per length as well was ~90 B a peer).
 */
class RangeIndex {
  /** family -> prefix length -> how many ranges have it (the lengths in use are the keys). */
  private readonly lengths = new Map<IpFamily, Map<number, number>>();
  private readonly sorted = new Map<IpFamily, Sorted>();

  private of(family: IpFamily): Sorted {
    let s = this.sorted.get(family);
    if (!s) this.sorted.set(family, s = { starts: [], bits: new Uint8Array(16), owners: [] });
    return s;
  }

  add(r: Range): void {
    let lengths = this.lengths.get(r.family);
    if (!lengths) this.lengths.set(r.family, lengths = new Map());
    lengths.set(r.bits, (lengths.get(r.bits) ?? 0) + 1);
    const s = this.of(r.family), i = lowerBound(s.starts, r.start), n = s.starts.length;
    if (n === s.bits.length) {
      const grown = new Uint8Array(n * 2);
      grown.set(s.bits);
      s.bits = grown;
    }
    s.bits.copyWithin(i + 1, i, n);
    s.bits[i] = r.bits;
    s.starts.splice(i, 0, r.start);
    s.owners.splice(i, 0, r.owner);
  }

  /** Removes one range equal to r (its owner, start and length). */
  remove(r: Range): void {
    const s = this.sorted.get(r.family);
    if (!s) return;
    for (let i = lowerBound(s.starts, r.start); i < s.starts.length && s.starts[i] === r.start; i++) {
      if (s.owners[i] !== r.owner || s.bits[i] !== r.bits) continue;
      s.bits.copyWithin(i, i + 1, s.starts.length);
      s.starts.splice(i, 1);
      s.owners.splice(i, 1);
      const lengths = this.lengths.get(r.family)!, n = lengths.get(r.bits)! - 1;
      if (n > 0) lengths.set(r.bits, n); else lengths.delete(r.bits);
      return;
    }
  }

  /** The owners of ranges that overlap r (r's own owner included if it holds one). */
  overlapping(r: Range, into: Set<string>): void {
    const s = this.sorted.get(r.family);
    if (!s) return;
    const startBytes = r.family === 4 ? undefined : Buffer.from(r.start as string, 'hex');
    for (const bits of this.lengths.get(r.family)?.keys() ?? []) {
      if (bits > r.bits) continue;
      const start = startBytes ? hex(maskAddress(startBytes, bits)) : maskV4(r.start as number, bits);
      for (let i = lowerBound(s.starts, start); i < s.starts.length && s.starts[i] === start; i++) if (s.bits[i] === bits) into.add(s.owners[i]!);
    }
    for (let i = lowerBound(s.starts, r.start); i < s.starts.length && !before(r.end, s.starts[i]!); i++) into.add(s.owners[i]!);
  }
}

function lowerBound(starts: Bound[], start: Bound): number {
  let lo = 0;
  let hi = starts.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (before(starts[mid]!, start)) lo = mid + 1; else hi = mid;
  }
  return lo;
}

function rangesOf(p: Parsed): Range[] {
  return p.ips.map(({ ip }) => rangeOf(p.name, ip.family, ip.bytes, ip.bytes.length * 8))
    .concat(p.cidrs.map(({ cidr }) => rangeOf(p.name, cidr.family, cidr.bytes, cidr.prefixLength)));
}

/**
 * A candidate as admitted, and why it is unusable if it is. Neither its parsed claim (~0.7 KB a
 * node: an object, a byte array and a buffer per address) nor its ranges (~170 B) are kept: they
 * are made again from the candidate when it is decided or leaves the index (rangesOfEntry).
 */
export interface Entry<T> { candidate: T; order: Order; unusable?: string; admitted: boolean; reason?: string }

/**
 * Where the admission keeps its entries, by name: a map of its own unless the caller keeps a slot
 * per name already (the node source's columns, node-records.ts: a second map by name was ~50 B a
 * peer at 5,000 peers). values() yields every entry in an order that moves only as entries come and
 * go (a map's: the order names were first set; the node source's: the order its nodes were cached).
 */
export interface AdmissionEntries<T> {
  /** The entry, or a view of it whose writes land where it is kept. */
  get(name: string): Entry<T> | undefined;
  /** Keeps e's fields under name (a store may copy them into its own columns: the entry is read back by get()). */
  set(name: string, e: Entry<T>): void;
  delete(name: string): void;
  /** Every entry; an entry yielded may be a view moved on at the next step: read it before then, keep none. */
  values(): IterableIterator<Entry<T>>;
}

/** The entry of a candidate (parsed once, to tell whether it is usable). */
function entryOf<T extends Claim>(candidate: T, order: Order, admitted: boolean): Entry<T> {
  const parsed = parse(candidate);
  // every field in one order, `reason` too: one hidden class, no property array added at the first verdict (~40 B a node)
  return { candidate, order, unusable: typeof parsed === 'string' ? parsed : undefined, admitted, reason: undefined };
}

/** The same addresses and pod CIDRs, in the same order. */
function sameClaim(a: Claim, b: Claim): boolean {
  return sameElements(a.internalIPs, b.internalIPs) && sameElements(a.podCIDRs, b.podCIDRs);
}

/** The ranges an entry holds in the index (none when its claim is unusable). */
function rangesOfEntry(e: Entry<Claim>): Range[] {
  if (e.unusable !== undefined) return [];
  return rangesOf(parse(e.candidate) as Parsed); // it parsed when its entry was made
}

/**
 * Who came first: a candidate's order, then its name (orderBefore). The node source's is its
 * object's creation time: a timestamp in the registry's own form as its milliseconds
 * (creationOrder: a number, 16 B, where the text joined with the name was a ~56 B string a node),
 * any other text as it is.
 */
export type Order = string | number;

/** The key under which this node's own claim sorts: before every candidate (whatever its order, '' too). */
const SELF_ORDER = -Infinity;

/** A creation time as Date.toISOString() writes it (the registry's, object-checks.ts): what creationOrder() keeps as a number. */
const CANONICAL_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/**
 * A creation timestamp as an order: its milliseconds when it is in toISOString()'s form
 * (2026-12-05T12:08:15.123Z), else its text (Kubernetes' 2026-12-05T12:08:15Z too). Both order as
 * the texts do: the numbers of texts of that one form order as the texts, and a number meets a
 * text as its own text (orderText).
 */
export function creationOrder(created: string): Order {
  if (!CANONICAL_TIME.test(created)) return created;
  const ms = Date.parse(created);
  return Number.isFinite(ms) && orderText(ms) === created ? ms : created; // not a real date (02-30): the text
}

/** An order as the text it was made from. */
function orderText(o: Order): string {
  return typeof o === 'string' ? o : new Date(o).toISOString();
}

/** Whether `a` (named aName) came before `b` (named bName): by order as the texts order, then by name. */
export function orderBefore(a: Order, aName: string, b: Order, bName: string): boolean {
  if (a === b) return aName < bName;
  if (a === SELF_ORDER || b === SELF_ORDER) return a === SELF_ORDER;
  if (typeof a === typeof b) return a < b;
  const ta = orderText(a), tb = orderText(b); // a number and a text (no canonical text is kept as text: never equal)
  return ta < tb || (ta === tb && aName < bName);
}

/** Whether entry `a` came before entry `b` (orderBefore). */
const entryBefore = (a: Entry<Claim>, b: Entry<Claim>): boolean => orderBefore(a.order, a.candidate.name, b.order, b.candidate.name);

/**
 * The admission of every candidate, kept up to date one change at a time. `order` says who came
 * first (oldest first: the node source passes creation time and name); this node is older than all.
 */
export class PeerAdmission<T extends Claim> {
  constructor(private readonly entries: AdmissionEntries<T> = new Map<string, Entry<T>>()) {}

  private readonly index = new RangeIndex();
  private self?: Entry<Claim>;
  private readonly refusedMap = new Map<string, string>();

  /** The candidate admitted under this name, if one is. */
  admitted(name: string): T | undefined {
    const e = this.entries.get(name);
    return e?.admitted ? e.candidate : undefined;
  }

  /**
   * The admitted candidates, in the entries' order (AdmissionEntries.values()): read from the entries
   * (a map of the admitted besides was ~45 B a peer).
   */
  *admittedCandidates(): IterableIterator<T> {
    for (const e of this.entries.values()) if (e.admitted) yield e.candidate;
  }

  /** The candidate last upserted under this name (admitted or not), until it is removed. */
  candidate(name: string): T | undefined {
    return this.entries.get(name)?.candidate;
  }

  /** Refused candidates: 'peer NAME' -> why. */
  get refused(): ReadonlyMap<string, string> {
    return this.refusedMap;
  }

  /** This node's own claim (undefined: its object is unusable, it claims nothing). Returns the names whose admission changed. */
  setSelf(self: Claim | undefined): Set<string> {
    const affected = new Set<string>();
    if (this.self) this.unindex(this.self, affected);
    const e = self ? entryOf(self, SELF_ORDER, true) : undefined;
    this.self = e && e.unusable === undefined ? e : undefined;
    if (this.self) this.indexEntry(this.self, affected);
    return this.redecide(affected);
  }

  /** A candidate is new or changed. Returns the names whose admission (or its reason, or the candidate) changed. */
  upsert(candidate: T, order: Order): Set<string> {
    const was = this.entries.get(candidate.name);
    if (was && was.order === order && sameClaim(was.candidate, candidate)) {
      // The same claim (a reboot, a new key id): the same ranges and the same verdict, for the new object.
      was.candidate = candidate;
      return new Set([candidate.name]);
    }
    const affected = new Set<string>([candidate.name]);
    if (was) this.unindex(was, affected);
    this.entries.set(candidate.name, entryOf(candidate, order, false));
    this.indexEntry(this.entries.get(candidate.name)!, affected);
    const changed = this.redecide(affected);
    changed.add(candidate.name);
    return changed;
  }

  /** A candidate is gone. Returns the names whose admission changed (its own included). */
  remove(name: string): Set<string> {
    const was = this.entries.get(name);
    if (!was) return new Set();
    const affected = new Set<string>();
    this.unindex(was, affected);
    this.entries.delete(name);
    this.refusedMap.delete(`peer ${name}`);
    affected.delete(name);
    const changed = this.redecide(affected);
    changed.add(name);
    return changed;
  }

  private indexEntry(e: Entry<Claim>, affected: Set<string>): void {
    for (const r of rangesOfEntry(e)) { this.index.add(r); this.index.overlapping(r, affected); }
  }

  private unindex(e: Entry<Claim>, affected: Set<string>): void {
    for (const r of rangesOfEntry(e)) { this.index.overlapping(r, affected); this.index.remove(r); }
  }

  private entry(name: string): Entry<Claim> | undefined {
    return name === this.self?.candidate.name && this.self ? this.self : this.entries.get(name);
  }

  /** Decides the affected candidates oldest first; a candidate whose verdict flips re-decides the younger ones it overlaps. */
  private redecide(affected: Set<string>): Set<string> {
    const changed = new Set<string>();
    const queue = [...affected].map((n) => this.entries.get(n)).filter((e): e is Entry<T> => !!e);
    const queued = new Set(queue.map((e) => e.candidate.name));
    while (queue.length) {
      queue.sort((a, b) => (entryBefore(a, b) ? 1 : entryBefore(b, a) ? -1 : 0)); // oldest last: pop() takes it
      const e = queue.pop()!;
      queued.delete(e.candidate.name);
      const [wasAdmitted, wasReason] = [e.admitted, e.reason];
      const over = this.decide(e);
      if (e.admitted !== wasAdmitted || e.reason !== wasReason) changed.add(e.candidate.name);
      if (e.admitted === wasAdmitted) continue; // same verdict: nobody younger is affected
      for (const n of over) {
        const y = this.entries.get(n);
        if (y && y !== e && entryBefore(e, y) && !queued.has(n)) { queue.push(y); queued.add(n); }
      }
    }
    return changed;
  }

  /** Decides one candidate against this node and the older admitted ones; returns who overlaps it. */
  private decide(e: Entry<T>): Set<string> {
    const name = e.candidate.name;
    const over = new Set<string>();
    if (e.unusable !== undefined) {
      this.setVerdict(e, false, `node object refused: ${e.unusable}`);
      return over;
    }
    for (const r of rangesOfEntry(e)) this.index.overlapping(r, over);
    let first: Entry<Claim> | undefined;
    for (const n of over) {
      if (n === name) continue;
      const h = this.entry(n);
      if (!h || !h.admitted || !entryBefore(h, e)) continue;
      if (!first || entryBefore(h, first)) first = h;
    }
    // Both parse (an unusable claim has no entry in the index, and this one is usable).
    const why = first && collision(parse(e.candidate) as Parsed, parse(first.candidate) as Parsed, first === this.self ? `this node (${first.candidate.name})` : `node '${first.candidate.name}'`);
    if (why) this.setVerdict(e, false, `node object refused: ${why} (the first claim is kept)`);
    else this.setVerdict(e, true);
    return over;
  }

  private setVerdict(e: Entry<T>, admitted: boolean, reason?: string): void {
    e.admitted = admitted;
    e.reason = reason;
    const key = `peer ${e.candidate.name}`;
    if (admitted) this.refusedMap.delete(key);
    else this.refusedMap.set(key, reason!);
  }
}

/**
 * Admits candidates in the order given (oldest first): each must be well-formed and collide with
 * neither this node nor a node admitted before it. refused: 'peer NAME' -> the reason.
 */
export function admitPeers<T extends Claim>(self: Claim | undefined, candidates: T[]): { admitted: T[]; refused: Map<string, string> } {
  const a = new PeerAdmission<T>();
  a.setSelf(self);
  const width = String(candidates.length).length;
  candidates.forEach((c, i) => a.upsert(c, String(i).padStart(width, '0')));
  return { admitted: candidates.filter((c) => a.admitted(c.name) === c), refused: new Map(a.refused) };
}

/** The node's own underlay, as underlay-routes.ts reads it. */
export interface Underlay {
  connected: { prefix: string; dev: string }[];
  viaGateway: { prefix: string; gateway: string }[];
  addresses: { ip: string; what: string }[];
}

const parsedCidr = (text: string): Cidr | undefined => { try { return parseCidr(text); } catch { return undefined; } };
const parsedIp = (text: string): IpAddress | undefined => { try { return parseIp(text); } catch { return undefined; } };

/**
 * Refuses the peers whose prefixes would be routed over the node's own underlay: a pod CIDR that
 * overlaps a connected route, or a route through a gateway other than that peer (its own pods'
 * plaintext route goes through it, and is meant to be replaced), or that contains a gateway or an
 * address the node must reach directly (the default gateway, the registry); a node address that is
 * one of those (node encryption routes it into the tunnel), or the gateway of routes to more than
 * its own pods. refused: 'peer NAME' -> the reason.
 */
export function screenAgainstUnderlay<T extends ScreenedPeer>(peers: T[], u: Underlay): { admitted: T[]; refused: Map<string, string> } {
  return screenWith(peers, underlayCheck(u));
}

/** Why a peer may not be routed into the tunnel given the node's underlay, or undefined (see screenAgainstUnderlay). */
function underlayCheck(u: Underlay): (p: ScreenedPeer) => string | undefined {
  const connected = u.connected.flatMap((c) => { const cidr = parsedCidr(c.prefix); return cidr ? [{ ...c, cidr }] : []; });
  const routes = u.viaGateway.flatMap((r) => { const cidr = parsedCidr(r.prefix); const gw = parsedIp(r.gateway); return cidr && gw ? [{ ...r, cidr, gw }] : []; });
  const addresses = u.addresses.flatMap((a) => { const addr = parsedIp(a.ip); return addr ? [{ ...a, addr }] : []; });
  return (p: ScreenedPeer): string | undefined => {
    const cidrs: { text: string; cidr: Cidr }[] = [];
    const ips: { text: string; ip: IpAddress }[] = [];
    for (const text of listOf(p.podCIDRs)) {
      try { cidrs.push({ text, cidr: parseCidr(text, { strict: true }) }); } catch { return `its pod CIDR "${text}" is not a CIDR`; }
    }
    for (const text of listOf(p.internalIPs)) {
      const ip = parsedIp(text);
      if (!ip) return `its address "${text}" is not an IP address`;
      ips.push({ text, ip });
    }
    const itself = (gw: IpAddress) => ips.some((x) => sameIp(x.ip, gw));
    const ownPods = (c: Cidr) => cidrs.some((x) => cidrContainsCidr(x.cidr, c));
    for (const { text, cidr } of cidrs) {
      for (const c of connected) if (cidrsOverlap(cidr, c.cidr)) return `its pod CIDR ${text} overlaps the connected route ${c.prefix} dev ${c.dev} of this node`;
      for (const r of routes) {
        if (itself(r.gw)) continue; // the route to its pods through it
        if (cidrsOverlap(cidr, r.cidr)) return `its pod CIDR ${text} overlaps the route ${r.prefix} via ${r.gateway} of this node`;
        if (cidrContains(cidr, r.gw)) return `its pod CIDR ${text} contains ${r.gateway}, the gateway of the route ${r.prefix}`;
      }
      for (const a of addresses) if (cidrContains(cidr, a.addr)) return `its pod CIDR ${text} contains ${a.ip}, ${a.what}`;
    }
    for (const { text, ip } of ips) {
      for (const a of addresses) if (sameIp(ip, a.addr)) return `its address ${text} is ${a.ip === text ? '' : `${a.ip}, `}${a.what}`;
      for (const r of routes) if (sameIp(ip, r.gw) && !ownPods(r.cidr)) return `its address ${text} is the gateway of the route ${r.prefix} of this node`;
    }
    return undefined;
  };
}

type ScreenedPeer = Claim;

/** admitted: `peers` itself while none is refused (every pass screens every peer: no copy of them each time), else a new array. */
function screenWith<T extends ScreenedPeer>(peers: T[], why: (p: T) => string | undefined): { admitted: T[]; refused: Map<string, string> } {
  let admitted: T[] | undefined; // from the first refusal on
  const refused = new Map<string, string>();
  for (let i = 0; i < peers.length; i++) {
    const p = peers[i]!;
    const reason = why(p);
    if (reason) {
      refused.set(`peer ${p.name}`, `node object refused: ${reason}: routing it into the tunnel would cut this node off its underlay`);
      admitted ??= peers.slice(0, i);
    } else admitted?.push(p);
  }
  return { admitted: admitted ?? peers, refused };
}

/** A peer the screen of every pass keeps a verdict for by its slot (PeerNode.slot). */
type SlottedPeer = ScreenedPeer & { slot: number };

/**
 * screenAgainstUnderlay for every pass: a peer object's verdict is kept until the underlay changes,
 * so a pass costs a lookup per peer, not parsing every peer's prefixes (~9 ms at 5,000 peers). The
 * node source hands out the same object until that node changes.
 */
export class UnderlayScreen<T extends SlottedPeer> {
  private underlay = '';
  private check: (p: ScreenedPeer) => string | undefined = () => undefined;
  /**
   * By slot, the peer object its verdict is for (a slot given to another peer, or a peer object
   * anew, is checked again), marked by the last pass that saw it, so a peer gone is let go
   * (marked-slots.ts); and the few refusals. A WeakMap by the peer object was ~25 B a peer.
   */
  private checked = new MarkedSlots<T>();
  private refusals = new Map<number, string>();
  private passes = 0;

  screen(peers: T[], u: Underlay): { admitted: T[]; refused: Map<string, string> } {
    const text = JSON.stringify(u);
    if (text !== this.underlay) {
      this.underlay = text;
      this.check = underlayCheck(u);
      this.checked = new MarkedSlots<T>();
      this.refusals = new Map();
    }
    const pass = ++this.passes, checked = this.checked;
    const result = screenWith(peers, (p) => {
      const slot = p.slot;
      if (checked.at(slot) === p) checked.mark(slot, pass);
      else {
        checked.set(slot, p, pass);
        const why = this.check(p);
        if (why === undefined) this.refusals.delete(slot); else this.refusals.set(slot, why);
      }
      return this.refusals.get(slot);
    });
    checked.forgetUnmarked(pass, (_, slot) => this.refusals.delete(slot)); // a peer gone
    return result;
  }
}
