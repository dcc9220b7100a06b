// IPv4 and IPv6 header parsing on raw bytes, without allocating per packet (results go into a
// reusable IpHeader), and the Internet checksum (RFC 1071) with pseudo-headers.

export const IPPROTO = { HOPOPTS: 0, ICMP: 1, TCP: 6, UDP: 17, ROUTING: 43, FRAGMENT: 44, ESP: 50, AH: 51, ICMPV6: 58, DSTOPTS: 60 } as const;

/** Filled by parseIpHeader; allocate one per worker and reuse it. */
export class IpHeader {
  /** 4 or 6; 0 when the last parse failed. */
  version = 0;
  /** Bytes before the transport header (IPv4 options / IPv6 extension headers included). */
  headerLength = 0;
  /** IPv4 total length / 40 + IPv6 payload length. */
  totalLength = 0;
  /** Upper-layer protocol (after IPv6 extension headers), e.g. IPPROTO.TCP. */
  protocol = 0;
  /** Offsets of source and destination address in the parsed buffer. */
  srcOffset = 0;
  dstOffset = 0;
  /** 4 or 16. */
  addressLength = 0;
  /** IPv4 TTL / IPv6 hop limit. */
  ttl = 0;
  /** Fragment offset in bytes (0 for the first fragment or an unfragmented packet). */
  fragmentOffset = 0;
  moreFragments = false;
  /** IPv4 DF bit (always true for IPv6: routers never fragment it). */
  dontFragment = false;
}

/** The version nibble of the packet at off (0 when there is no byte). */
export function ipVersion(buf: Uint8Array, off: number): number {
  return off < buf.length ? buf[off]! >> 4 : 0;
}

/** 4 or 6 when the len-byte packet at buf[off] has that version and room for its fixed header, else 0. */
export function ipFamilyOf(buf: Uint8Array, off: number, len: number): 0 | 4 | 6 {
  const version = len > 0 ? buf[off]! >> 4 : 0;
  if (version === 4) return len >= 20 ? 4 : 0;
  if (version === 6) return len >= 40 ? 6 : 0;
  return 0;
}

/**
 * Parses the IP header of the len-byte packet at buf[off]. Returns false (out.version = 0) for
 * anything malformed: a short packet, bad lengths, an unknown version.
 */
export function parseIpHeader(buf: Uint8Array, off: number, len: number, out: IpHeader): boolean {
  out.version = 0;
  if (len < 20 || off < 0 || off + len > buf.length) return false;
  const v = buf[off]! >> 4;
  if (v === 4) {
    const hl = (buf[off]! & 0x0f) * 4;
    const total = (buf[off + 2]! << 8) | buf[off + 3]!;
    if (hl < 20 || total < hl || total > len) return false;
    const frag = (buf[off + 6]! << 8) | buf[off + 7]!;
    out.headerLength = hl;
    out.totalLength = total;
    out.protocol = buf[off + 9]!;
    out.srcOffset = off + 12;
    out.dstOffset = off + 16;
    out.addressLength = 4;
    out.ttl = buf[off + 8]!;
    out.fragmentOffset = (frag & 0x1fff) * 8;
    out.moreFragments = (frag & 0x2000) !== 0;
    out.dontFragment = (frag & 0x4000) !== 0;
    out.version = 4;
    return true;
  }
  if (v !== 6 || len < 40) return false;
  const total = 40 + ((buf[off + 4]! << 8) | buf[off + 5]!);
  if (total > len) return false;
  let next = buf[off + 6]!, p = off + 40, fragOff = 0, more = false;
  // Walk the extension headers to the upper-layer protocol (bounded by the packet).
  for (let guard = 0; guard < 8; guard++) {
    if (next === IPPROTO.HOPOPTS || next === IPPROTO.ROUTING || next === IPPROTO.DSTOPTS) {
      if (p + 8 > off + total) return false;
      const n = buf[p]!;
      p += (buf[p + 1]! + 1) * 8;
      next = n;
    } else if (next === IPPROTO.FRAGMENT) {
      if (p + 8 > off + total) return false;
      const fo = (buf[p + 2]! << 8) | buf[p + 3]!;
      fragOff = fo & 0xfff8;
      more = (fo & 1) !== 0;
      next = buf[p]!;
      p += 8;
    } else if (next === IPPROTO.AH) {
      if (p + 8 > off + total) return false;
      const n = buf[p]!;
      p += (buf[p + 1]! + 2) * 4;
      next = n;
    } else break;
  }
  if (p > off + total) return false;
  out.headerLength = p - off;
  out.totalLength = total;
  out.protocol = next;
  out.srcOffset = off + 8;
  out.dstOffset = off + 24;
  out.addressLength = 16;
  out.ttl = buf[off + 7]!;
  out.fragmentOffset = fragOff;
  out.moreFragments = more;
  out.dontFragment = true;
  out.version = 6;
  return true;
}

/** IPv4 source / destination as an unsigned 32-bit number (packet at off). */
export function ipv4Source(buf: Uint8Array, off: number): number {
  return ((buf[off + 12]! << 24) | (buf[off + 13]! << 16) | (buf[off + 14]! << 8) | buf[off + 15]!) >>> 0;
}
export function ipv4Destination(buf: Uint8Array, off: number): number {
  return ((buf[off + 16]! << 24) | (buf[off + 17]! << 16) | (buf[off + 18]! << 8) | buf[off + 19]!) >>> 0;
}

/** One's complement sum of buf[off..off+len) added to `initial`, not folded (fold with finishChecksum). */
export function onesComplementSum(buf: Uint8Array, off: number, len: number, initial = 0): number {
  let s = initial;
  const end = off + len - 1;
  let i = off;
  for (; i < end; i += 2) s += (buf[i]! << 8) | buf[i + 1]!;
  if (i === end) s += buf[i]! << 8;
  // Fold often enough that s stays an exact integer (well below 2^53).
  return s > 0x3fffffff ? (s & 0xffff) + Math.floor(s / 0x10000) : s;
}

/** Folds a sum to 16 bits and inverts it: the value to store in a checksum field. */
export function finishChecksum(sum: number): number {
  let s = sum;
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return ~s & 0xffff;
}

/** The Internet checksum of buf[off..off+len) (a zero result means a valid checksummed region). */
export function internetChecksum(buf: Uint8Array, off: number, len: number, initial = 0): number {
  return finishChecksum(onesComplementSum(buf, off, len, initial));
}

/** Sum of the TCP/UDP/ICMPv6 pseudo-header for the IP packet at ipOff (addresses from its header). */
export function pseudoHeaderSum(buf: Uint8Array, ipOff: number, protocol: number, upperLength: number): number {
  const v6 = buf[ipOff]! >> 4 === 6;
  const s = v6 ? onesComplementSum(buf, ipOff + 8, 32) : onesComplementSum(buf, ipOff + 12, 8);
  return s + protocol + (upperLength & 0xffff) + Math.floor(upperLength / 0x10000);
}

/** Computes and stores the IPv4 header checksum of the packet at off. */
export function writeIpv4HeaderChecksum(buf: Uint8Array, off: number): void {
  const hl = (buf[off]! & 0x0f) * 4;
  buf[off + 10] = 0;
  buf[off + 11] = 0;
  const c = internetChecksum(buf, off, hl);
  buf[off + 10] = c >> 8;
  buf[off + 11] = c & 0xff;
}

/** Is the IPv4 header checksum of the packet at off correct? */
export function ipv4HeaderChecksumValid(buf: Uint8Array, off: number): boolean {
  return internetChecksum(buf, off, (buf[off]! & 0x0f) * 4) === 0;
}

/**
 * Is the TCP/UDP/ICMP(v6) checksum of a parsed packet correct? (ICMPv4 has no pseudo-header; a UDP
 * checksum of 0 over IPv4 means "none" and counts as valid.)
 */
export function transportChecksumValid(buf: Uint8Array, off: number, h: IpHeader): boolean {
  const start = off + h.headerLength, len = h.totalLength - h.headerLength;
  if (h.protocol === IPPROTO.ICMP && h.version === 4) return internetChecksum(buf, start, len) === 0;
  if (h.protocol === IPPROTO.UDP && h.version === 4 && len >= 8 && buf[start + 6] === 0 && buf[start + 7] === 0) return true;
  return internetChecksum(buf, start, len, pseudoHeaderSum(buf, off, h.protocol, len)) === 0;
}
