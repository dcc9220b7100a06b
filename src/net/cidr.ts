// IPv4 and IPv6 addresses and CIDR prefixes: parsing with clear errors, canonical formatting
// (RFC 5952 for IPv6), containment and overlap. Addresses are byte arrays in network order.
import { VeilError } from '../util/errors.js';

export type IpFamily = 4 | 6;

export interface IpAddress {
  family: IpFamily;
  /** 4 or 16 bytes, network order. */
  bytes: Uint8Array;
}

export interface Cidr {
  family: IpFamily;
  /** The network address (host bits zero), 4 or 16 bytes. */
  bytes: Uint8Array;
  prefixLength: number;
}

export function addressLength(family: IpFamily): 4 | 16 {
  return family === 4 ? 4 : 16;
}

function parseIpv4(text: string): Uint8Array | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255) return undefined;
    out[i] = Number(p);
  }
  return out;
}

function parseGroups(text: string, out: number[]): boolean {
  if (text === '') return true;
  for (const g of text.split(':')) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return false;
    out.push(parseInt(g, 16));
  }
  return true;
}

function parseIpv6(text: string): Uint8Array | undefined {
  let body = text;
  const tail: number[] = [];
  // An embedded IPv4 address (::ffff:10.0.0.1) supplies the last two groups.
  const lastColon = body.lastIndexOf(':');
  if (lastColon >= 0 && body.indexOf('.', lastColon) > 0) {
    const v4 = parseIpv4(body.slice(lastColon + 1));
    if (!v4) return undefined;
    tail.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
    body = body.slice(0, lastColon + 1);
    if (!body.endsWith('::')) body = body.slice(0, -1);
  }
  const halves = body.split('::');
  if (halves.length > 2) return undefined;
  const head: number[] = [], rest: number[] = [];
  if (!parseGroups(halves[0]!, head)) return undefined;
  if (halves.length === 2 && !parseGroups(halves[1]!, rest)) return undefined;
  const groups = halves.length === 2 ? head.length + rest.length + tail.length : head.length + tail.length;
  if (halves.length === 2 ? groups > 7 : groups !== 8) return undefined;
  const all = halves.length === 2 ? [...head, ...new Array<number>(8 - groups).fill(0), ...rest, ...tail] : [...head, ...tail];
  const out = new Uint8Array(16);
  all.forEach((g, i) => { out[2 * i] = g >> 8; out[2 * i + 1] = g & 0xff; });
  return out;
}

/** Parses an address, or returns undefined. */
export function tryParseIp(text: string): IpAddress | undefined {
  const t = text.trim();
  if (t.includes(':')) {
    const b = parseIpv6(t);
    return b && { family: 6, bytes: b };
  }
  const b = parseIpv4(t);
  return b && { family: 4, bytes: b };
}

/** Parses "10.0.0.1" or "fd00::1"; throws a VeilError on anything else. */
export function parseIp(text: string): IpAddress {
  const a = tryParseIp(text);
  if (!a) throw new VeilError('BAD_IP', `'${text}' is not an IP address`, 'write IPv4 as 10.0.0.1 and IPv6 as fd00::1');
  return a;
}

/** Canonical text of the address at bytes[offset..] (IPv6 per RFC 5952). */
export function formatIp(bytes: Uint8Array, family: IpFamily = bytes.length === 4 ? 4 : 6, offset = 0): string {
  if (family === 4) return `${bytes[offset]}.${bytes[offset + 1]}.${bytes[offset + 2]}.${bytes[offset + 3]}`;
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((bytes[offset + 2 * i]! << 8) | bytes[offset + 2 * i + 1]!);
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) {
    return `::ffff:${formatIp(bytes, 4, offset + 12)}`;
  }
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(':');
  if (best < 0) return hex(g);
  return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

/** bytes with every bit after prefixLength cleared (a copy). */
export function maskAddress(bytes: Uint8Array, prefixLength: number): Uint8Array {
  const out = Uint8Array.from(bytes);
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, prefixLength - 8 * i));
    out[i]! &= (0xff << (8 - keep)) & 0xff;
  }
  return out;
}

export interface ParseCidrOptions {
  /** Reject host bits after the prefix (10.0.0.1/24) instead of clearing them. Default false. */
  strict?: boolean;
}

/** Parses "10.0.0.0/24", "fd00::/64", or a bare address (a host prefix). */
export function parseCidr(text: string, opts: ParseCidrOptions = {}): Cidr {
  const t = text.trim();
  const slash = t.indexOf('/');
  const addrText = slash < 0 ? t : t.slice(0, slash);
  const addr = tryParseIp(addrText);
  if (!addr) throw new VeilError('BAD_CIDR', `'${text}' is not a CIDR: '${addrText}' is not an IP address`, 'write it as 10.0.0.0/24 or fd00::/64');
  const max = addr.family === 4 ? 32 : 128;
  let prefixLength = max;
  if (slash >= 0) {
    const p = t.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > max) {
      throw new VeilError('BAD_CIDR', `'${text}' is not a CIDR: prefix length '${p}' must be 0-${max}`, 'write it as 10.0.0.0/24 or fd00::/64');
    }
    prefixLength = Number(p);
  }
  const bytes = maskAddress(addr.bytes, prefixLength);
  if (opts.strict && bytes.some((b, i) => b !== addr.bytes[i])) {
    throw new VeilError('BAD_CIDR', `'${text}' has host bits set after /${prefixLength}`, `did you mean ${formatIp(bytes, addr.family)}/${prefixLength}?`);
  }
  return { family: addr.family, bytes, prefixLength };
}

export function formatCidr(c: Cidr): string {
  return `${formatIp(c.bytes, c.family)}/${c.prefixLength}`;
}

/** True when the first `bits` bits of a[ao..] and b[bo..] are equal. */
export function samePrefix(a: Uint8Array, ao: number, b: Uint8Array, bo: number, bits: number): boolean {
  const full = bits >> 3;
  for (let i = 0; i < full; i++) if (a[ao + i] !== b[bo + i]) return false;
  const rem = bits & 7;
  if (rem === 0) return true;
  const mask = (0xff << (8 - rem)) & 0xff;
  return ((a[ao + full]! ^ b[bo + full]!) & mask) === 0;
}

/** Is the address (an IpAddress, or family-sized bytes at buf[offset..]) inside c? */
export function cidrContains(c: Cidr, addr: IpAddress | Uint8Array, offset = 0): boolean {
  if (addr instanceof Uint8Array) return samePrefix(c.bytes, 0, addr, offset, c.prefixLength);
  return addr.family === c.family && samePrefix(c.bytes, 0, addr.bytes, 0, c.prefixLength);
}

/** Is every address of inner also in outer? */
export function cidrContainsCidr(outer: Cidr, inner: Cidr): boolean {
  return outer.family === inner.family && outer.prefixLength <= inner.prefixLength &&
    samePrefix(outer.bytes, 0, inner.bytes, 0, outer.prefixLength);
}

/** Do a and b share any address? (For prefixes that means one contains the other.) */
export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return a.family === b.family && samePrefix(a.bytes, 0, b.bytes, 0, Math.min(a.prefixLength, b.prefixLength));
}

/** The prefix's size in addresses (2^host bits; a Number, so exact up to 2^53). */
export function cidrSize(c: Cidr): number {
  return 2 ** ((c.family === 4 ? 32 : 128) - c.prefixLength);
}

/** The address `index` places after the network address (the first host is index 1). */
export function addressAt(c: Cidr, index: number): string {
  if (!Number.isInteger(index) || index < 0 || index >= cidrSize(c)) {
    throw new VeilError('BAD_CIDR', `${formatCidr(c)} has no address number ${index}`, 'use a larger prefix');
  }
  const out = Uint8Array.from(c.bytes);
  let carry = index;
  for (let i = out.length - 1; i >= 0 && carry > 0; i--) {
    const sum = out[i]! + (carry % 256);
    out[i] = sum & 0xff;
    carry = Math.floor(carry / 256) + (sum >> 8);
  }
  return formatIp(out, c.family);
}

/**
 * The host prefix of an address: 10.0.0.1/32, fd00::1/128. One concatenation of the address and a
 * constant suffix (the template's pieces were two strings of their own, ~58 B a WireGuard peer's spec kept).
 */
export function hostPrefix(ip: string): string {
  return ip + (parseIp(ip).family === 4 ? '/32' : '/128');
}
