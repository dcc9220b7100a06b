// "Packet too big" answers for packets that exceed the tunnel MTU, so that path MTU discovery works
// through the tunnel: ICMP type 3 code 4 with the next-hop MTU (RFC 792, RFC 1191) for IPv4 and
// ICMPv6 type 2 (RFC 4443) for IPv6, addressed back to the sender and quoting as much of the
// original packet as the RFCs allow (576 bytes in all for IPv4, RFC 1812; 1280 for IPv6, RFC 4443).
import { finishChecksum, IPPROTO, IpHeader, onesComplementSum, parseIpHeader, pseudoHeaderSum, writeIpv4HeaderChecksum } from './ip-packet.js';

export const ICMP_TOO_BIG_MAX_V4 = 576;
export const ICMP_TOO_BIG_MAX_V6 = 1280;

export interface TooBigOptions {
  /** Source address of the answer (4 or 16 bytes); defaults to the original destination. */
  source?: Uint8Array;
  /** TTL / hop limit of the answer (default 64). */
  ttl?: number;
}

const scratchHeader = new IpHeader();

function isIpv4Unanswerable(buf: Uint8Array, srcOff: number, dstOff: number): boolean {
  const s0 = buf[srcOff]!, d0 = buf[dstOff]!;
  const allOnes = (o: number) => buf[o] === 255 && buf[o + 1] === 255 && buf[o + 2] === 255 && buf[o + 3] === 255;
  const zero = (o: number) => (buf[o]! | buf[o + 1]! | buf[o + 2]! | buf[o + 3]!) === 0;
  // RFC 1812 4.3.2.7: never about packets from 0/8, 127/8, class D/E or broadcast, nor to multicast.
  return s0 === 0 || zero(srcOff) || s0 === 127 || s0 >= 224 || allOnes(srcOff) || (d0 >= 224 && d0 < 240) || allOnes(dstOff);
}

/**
 * Writes the answer to the oversized packet pkt[off..off+len) into out[outOff..] and returns its
 * length, or 0 when no answer may be sent (malformed packet, an ICMP error itself, a non-first
 * fragment, a source that cannot be answered). `out` needs room for 576 (IPv4) or 1280 (IPv6)
 * bytes. For IPv4 the caller decides first whether the packet has DF set (else it may fragment).
 */
export function buildTooBig(pkt: Uint8Array, off: number, len: number, mtu: number, out: Uint8Array, outOff = 0, opts: TooBigOptions = {}): number {
  const h = scratchHeader;
  if (!parseIpHeader(pkt, off, len, h) || h.fragmentOffset !== 0) return 0;
  const t = off + h.headerLength;
  const ttl = opts.ttl ?? 64;
  const origLen = Math.min(len, h.totalLength);
  if (h.version === 4) {
    if (isIpv4Unanswerable(pkt, h.srcOffset, h.dstOffset)) return 0;
    // Never answer an ICMP error (only echo/timestamp/info requests and replies may be answered).
    if (h.protocol === IPPROTO.ICMP) {
      if (t >= off + origLen) return 0;
      const type = pkt[t]!;
      if (type !== 0 && type !== 8 && type !== 13 && type !== 14 && type !== 15 && type !== 16) return 0;
    }
    const quote = Math.min(origLen, ICMP_TOO_BIG_MAX_V4 - 28);
    const total = 28 + quote;
    if (outOff + total > out.length) return 0;
    const o = outOff;
    out.fill(0, o, o + 28);
    out[o] = 0x45;
    out[o + 1] = 0xc0; // precedence "internetwork control", as Linux sends ICMP errors
    out[o + 2] = total >> 8;
    out[o + 3] = total & 0xff;
    out[o + 8] = ttl;
    out[o + 9] = IPPROTO.ICMP;
    const src = opts.source ?? pkt.subarray(h.dstOffset, h.dstOffset + 4);
    out.set(src.subarray(0, 4), o + 12);
    out.set(pkt.subarray(h.srcOffset, h.srcOffset + 4), o + 16);
    writeIpv4HeaderChecksum(out, o);
    const m = o + 20;
    out[m] = 3; // destination unreachable
    out[m + 1] = 4; // fragmentation needed and DF set
    out[m + 6] = (mtu >> 8) & 0xff;
    out[m + 7] = mtu & 0xff;
    out.set(pkt.subarray(off, off + quote), m + 8);
    const c = finishChecksum(onesComplementSum(out, m, 8 + quote));
    out[m + 2] = c >> 8;
    out[m + 3] = c & 0xff;
    return total;
  }
  // IPv6: not about packets from :: or a multicast source (RFC 4443 2.4 e), nor about ICMPv6 errors.
  const s = h.srcOffset;
  let unspecified = true;
  for (let i = 0; i < 16; i++) if (pkt[s + i] !== 0) { unspecified = false; break; }
  if (unspecified || pkt[s] === 0xff) return 0;
  if (h.protocol === IPPROTO.ICMPV6 && (t >= off + origLen || pkt[t]! < 128)) return 0;
  const source = opts.source ?? pkt.subarray(h.dstOffset, h.dstOffset + 16);
  if (source.length < 16 || source[0] === 0xff) return 0; // a multicast destination needs an explicit source
  const quote = Math.min(origLen, ICMP_TOO_BIG_MAX_V6 - 48);
  const total = 48 + quote;
  if (outOff + total > out.length) return 0;
  const o = outOff;
  out.fill(0, o, o + 48);
  out[o] = 0x60;
  const payload = 8 + quote;
  out[o + 4] = payload >> 8;
  out[o + 5] = payload & 0xff;
  out[o + 6] = IPPROTO.ICMPV6;
  out[o + 7] = ttl;
  out.set(source.subarray(0, 16), o + 8);
  out.set(pkt.subarray(s, s + 16), o + 24);
  const m = o + 40;
  out[m] = 2; // packet too big
  out[m + 4] = (mtu >>> 24) & 0xff;
  out[m + 5] = (mtu >>> 16) & 0xff;
  out[m + 6] = (mtu >>> 8) & 0xff;
  out[m + 7] = mtu & 0xff;
  out.set(pkt.subarray(off, off + quote), m + 8);
  const c = finishChecksum(onesComplementSum(out, m, payload, pseudoHeaderSum(out, o, IPPROTO.ICMPV6, payload)));
  out[m + 2] = c >> 8;
  out[m + 3] = c & 0xff;
  return total;
}
