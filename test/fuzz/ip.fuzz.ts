// IP headers from the TUN device: parseIpHeader on any bytes at any offset and length (never a
// field outside the packet), its round trip on built IPv4 (options) and IPv6 (extension header
// chains) headers, and buildTooBig's answers: well formed, checksummed, within the RFC sizes,
// addressed back to the sender, never about an ICMP error.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ICMP_TOO_BIG_MAX_V4, ICMP_TOO_BIG_MAX_V6, buildTooBig } from '../../src/net/icmp-too-big.js';
import { IPPROTO, IpHeader, ipv4HeaderChecksumValid, parseIpHeader, transportChecksumValid, writeIpv4HeaderChecksum } from '../../src/net/ip-packet.js';
import { harness } from './harness.js';

interface Built { bytes: Uint8Array; headerLength: number; protocol: number; totalLength: number; fragmentOffset: number; moreFragments: boolean }

const EXT = [IPPROTO.HOPOPTS, IPPROTO.ROUTING, IPPROTO.DSTOPTS, IPPROTO.FRAGMENT, IPPROTO.AH] as const;

const ipv4 = fc.record({
  optionWords: fc.nat(10), protocol: fc.nat(255), payload: fc.uint8Array({ maxLength: 120 }), ttl: fc.nat(255),
  frag: fc.nat(0x1fff), more: fc.boolean(), df: fc.boolean(), src: fc.uint8Array({ minLength: 4, maxLength: 4 }), dst: fc.uint8Array({ minLength: 4, maxLength: 4 }),
  slack: fc.nat(16),
}).map((f): Built => {
  const hl = 20 + f.optionWords * 4;
  const total = hl + f.payload.length;
  const b = new Uint8Array(total + f.slack); // slack: the buffer may be longer than the packet
  b[0] = 0x40 | (hl / 4);
  b[2] = total >> 8; b[3] = total & 0xff;
  const frag = f.frag | (f.more ? 0x2000 : 0) | (f.df ? 0x4000 : 0);
  b[6] = frag >> 8; b[7] = frag & 0xff;
  b[8] = f.ttl; b[9] = f.protocol;
  b.set(f.src, 12); b.set(f.dst, 16);
  b.set(f.payload, hl);
  writeIpv4HeaderChecksum(b, 0);
  return { bytes: b, headerLength: hl, protocol: f.protocol, totalLength: total, fragmentOffset: f.frag * 8, moreFragments: f.more };
});

const ipv6 = fc.record({
  chain: fc.array(fc.record({ type: fc.constantFrom(...EXT), units: fc.nat(3), frag: fc.nat(0x1fff), more: fc.boolean() }), { maxLength: 6 }),
  protocol: fc.constantFrom(IPPROTO.TCP, IPPROTO.UDP, IPPROTO.ICMPV6, 59, IPPROTO.ESP),
  payload: fc.uint8Array({ maxLength: 100 }),
}).map((f): Built => {
  const exts: Uint8Array[] = [];
  let fragmentOffset = 0, moreFragments = false;
  f.chain.forEach((e, i) => {
    const next = i + 1 < f.chain.length ? f.chain[i + 1]!.type : f.protocol;
    let h: Uint8Array;
    if (e.type === IPPROTO.FRAGMENT) {
      h = new Uint8Array(8);
      const fo = (e.frag << 3) | (e.more ? 1 : 0);
      h[2] = fo >> 8; h[3] = fo & 0xff;
      fragmentOffset = e.frag << 3; moreFragments = e.more;
    } else if (e.type === IPPROTO.AH) {
      h = new Uint8Array((e.units + 2) * 4 + 4); // payload len in 4-byte units minus 2; keep it 8-aligned
      h[1] = h.length / 4 - 2;
    } else {
      h = new Uint8Array((e.units + 1) * 8);
      h[1] = e.units;
    }
    h[0] = next;
    exts.push(h);
  });
  const extLength = exts.reduce((n, h) => n + h.length, 0);
  const b = new Uint8Array(40 + extLength + f.payload.length);
  b[0] = 0x60;
  const plen = extLength + f.payload.length;
  b[4] = plen >> 8; b[5] = plen & 0xff;
  b[6] = f.chain.length ? f.chain[0]!.type : f.protocol;
  b[7] = 64; b[8] = 0xfd; b[23] = 1; b[24] = 0xfd; b[39] = 2;
  let p = 40;
  for (const h of exts) { b.set(h, p); p += h.length; }
  b.set(f.payload, p);
  return { bytes: b, headerLength: 40 + extLength, protocol: f.protocol, totalLength: b.length, fragmentOffset, moreFragments };
});

const h = new IpHeader();

/** The parse's fields all lie within buf[off..off+len). */
function checkBounds(buf: Uint8Array, off: number, len: number): void {
  assert.ok(h.version === 4 || h.version === 6);
  assert.ok(h.headerLength >= (h.version === 4 ? 20 : 40) && h.headerLength <= h.totalLength && h.totalLength <= len);
  assert.ok(off + len <= buf.length);
  assert.ok(h.srcOffset >= off && h.dstOffset + h.addressLength <= off + h.headerLength);
}

export const ipHeaders = harness({
  name: 'ip-header',
  target: 'src/net/ip-packet.ts parseIpHeader and checksums on TUN packets',
  runs: 2_000_000,
  ciRuns: 50_000,
  property: () => fc.property(
    fc.oneof(ipv4.map((b) => b.bytes), ipv6.map((b) => b.bytes), fc.uint8Array({ maxLength: 120 })),
    fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 3 }), fc.integer({ min: -4, max: 200 }), fc.integer({ min: -4, max: 400 }),
    ipv4, ipv6,
    (raw, edits, off, len, b4, b6) => {
      // Any bytes, any window (including ones outside the buffer): false, or fields inside the packet.
      const buf = Uint8Array.from(raw);
      for (const [at, v] of edits) if (buf.length) buf[at % buf.length] = v;
      if (parseIpHeader(buf, off, len, h)) {
        checkBounds(buf, off, len);
        transportChecksumValid(buf, off, h);
        if (h.version === 4) ipv4HeaderChecksumValid(buf, off);
      } else assert.equal(h.version, 0);
      // Round trips: the header we built is the header parsed.
      for (const b of [b4, b6]) {
        assert.ok(parseIpHeader(b.bytes, 0, b.bytes.length, h), 'a well-formed header was refused');
        checkBounds(b.bytes, 0, b.bytes.length);
        assert.deepEqual(
          [h.headerLength, h.protocol, h.totalLength, h.fragmentOffset, h.moreFragments],
          [b.headerLength, b.protocol, b.totalLength, b.fragmentOffset, b.moreFragments]);
      }
      assert.ok(ipv4HeaderChecksumValid(b4.bytes, 0));
    },
  ),
});

const out = new Uint8Array(1500);
const answer = new IpHeader();
let answered = 0;

export const icmpTooBig = harness({
  name: 'icmp-too-big',
  target: 'src/net/icmp-too-big.ts buildTooBig on oversized TUN packets',
  runs: 1_000_000,
  ciRuns: 30_000,
  property: () => fc.property(
    fc.oneof(ipv4.map((b) => b.bytes), ipv6.map((b) => b.bytes)), fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 3 }),
    fc.integer({ min: 68, max: 9000 }),
    (raw, edits, mtu) => {
      const pkt = Uint8Array.from(raw);
      for (const [at, v] of edits) pkt[at % pkt.length] = v;
      const n = buildTooBig(pkt, 0, pkt.length, mtu, out);
      if (n === 0) return;
      answered++;
      assert.ok(parseIpHeader(out, 0, n, answer), 'the answer is an IP packet');
      assert.equal(answer.totalLength, n);
      const v4 = answer.version === 4;
      assert.ok(n <= (v4 ? ICMP_TOO_BIG_MAX_V4 : ICMP_TOO_BIG_MAX_V6), 'the answer stays within the RFC size');
      assert.equal(answer.protocol, v4 ? IPPROTO.ICMP : IPPROTO.ICMPV6);
      if (v4) assert.ok(ipv4HeaderChecksumValid(out, 0), 'IPv4 header checksum');
      assert.ok(transportChecksumValid(out, 0, answer), 'ICMP checksum');
      assert.equal(out[answer.headerLength], v4 ? 3 : 2);
      // Addressed back to the sender, quoting the original packet's start.
      const src = pkt[0]! >> 4 === 4 ? pkt.subarray(12, 16) : pkt.subarray(8, 24);
      assert.deepEqual(Buffer.from(out.subarray(answer.dstOffset, answer.dstOffset + answer.addressLength)), Buffer.from(src));
      assert.deepEqual(Buffer.from(out.subarray(answer.headerLength + 8, answer.headerLength + 28)), Buffer.from(pkt.subarray(0, 20)));
      // Never about an ICMP error (RFC 1812 4.3.2.7, RFC 4443 2.4).
      const parsed = new IpHeader();
      assert.ok(parseIpHeader(pkt, 0, pkt.length, parsed));
      const t = pkt[parsed.headerLength];
      if (parsed.protocol === IPPROTO.ICMP && parsed.version === 4) assert.ok([0, 8, 13, 14, 15, 16].includes(t!));
      if (parsed.protocol === IPPROTO.ICMPV6 && parsed.version === 6) assert.ok(t! >= 128);
    },
  ),
  report: () => `answered ${answered} packets`,
});

export const harnesses = [ipHeaders, icmpTooBig];
