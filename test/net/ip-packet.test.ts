import { test } from 'node:test';
import assert from 'node:assert/strict';
import { internetChecksum, ipFamilyOf, IpHeader, IPPROTO, ipv4Destination, ipv4HeaderChecksumValid, ipv4Source, parseIpHeader,
  pseudoHeaderSum, transportChecksumValid, writeIpv4HeaderChecksum } from '../../src/net/ip-packet.js';
import { native } from '../../src/native/addon.js';

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));

// IPv4 header from Wikipedia's "IPv4 header checksum" example: checksum b861.
const WIKI_V4 = hex('4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7');

// An ICMP echo request 10.0.0.1 -> 10.0.0.2 with 8 bytes of data, built by scapy (its checksums).
const PING_V4 = hex('45000024 5d2a4000 4001c9ac 0a000001 0a000002 0800 dc7c 0b6e 0001 0102030405060708');

// An ICMPv6 echo request fd00::1 -> fd00::2, built by scapy (its pseudo-header checksum).
const PING_V6 = hex('6000000000103a40 fd000000000000000000000000000001 fd000000000000000000000000000002 8000 d9ee 1a2b 0001 6162636465666768');

test('IPv4 header checksum matches a known packet', () => {
  assert.equal(internetChecksum(WIKI_V4, 0, 20), 0);
  assert.ok(ipv4HeaderChecksumValid(WIKI_V4, 0));
  const copy = Uint8Array.from(WIKI_V4);
  copy[10] = copy[11] = 0xaa;
  writeIpv4HeaderChecksum(copy, 0);
  assert.equal(copy[10], 0xb8);
  assert.equal(copy[11], 0x61);
});

test('parses IPv4 with no allocation into a reusable header', () => {
  const h = new IpHeader();
  const buf = new Uint8Array(100);
  buf.set(PING_V4, 7);
  assert.ok(parseIpHeader(buf, 7, PING_V4.length, h));
  assert.equal(h.version, 4);
  assert.equal(h.headerLength, 20);
  assert.equal(h.totalLength, 36);
  assert.equal(h.protocol, IPPROTO.ICMP);
  assert.equal(h.srcOffset, 19);
  assert.equal(h.dstOffset, 23);
  assert.ok(h.dontFragment);
  assert.equal(ipv4Source(buf, 7), 0x0a000001);
  assert.equal(ipv4Destination(buf, 7), 0x0a000002);
  assert.ok(transportChecksumValid(buf, 7, h));
  buf[7 + 30] ^= 1;
  assert.ok(!transportChecksumValid(buf, 7, h));
});

test('IPv6 parse and ICMPv6 pseudo-header checksum', () => {
  const h = new IpHeader();
  assert.ok(parseIpHeader(PING_V6, 0, PING_V6.length, h));
  assert.equal(h.version, 6);
  assert.equal(h.protocol, IPPROTO.ICMPV6);
  assert.equal(h.totalLength, 56);
  assert.equal(h.ttl, 64);
  // recompute from zero and compare with the checksum scapy wrote
  const p = Uint8Array.from(PING_V6);
  p[42] = p[43] = 0;
  const c = internetChecksum(p, 40, 16, pseudoHeaderSum(p, 0, IPPROTO.ICMPV6, 16));
  assert.equal(c, 0xd9ee);
  assert.ok(transportChecksumValid(PING_V6, 0, h));
});

test('IPv6 extension headers are walked to the upper layer', () => {
  // hop-by-hop (8 bytes) then a fragment header (offset 0, M=1) then UDP
  const p = new Uint8Array(40 + 8 + 8 + 8);
  p[0] = 0x60; p[4] = 0; p[5] = 24; p[6] = IPPROTO.HOPOPTS; p[7] = 1;
  p[40] = IPPROTO.FRAGMENT; p[41] = 0;
  p[48] = IPPROTO.UDP; p[50] = 0; p[51] = 1;
  const h = new IpHeader();
  assert.ok(parseIpHeader(p, 0, p.length, h));
  assert.equal(h.protocol, IPPROTO.UDP);
  assert.equal(h.headerLength, 56);
  assert.ok(h.moreFragments);
  assert.equal(h.fragmentOffset, 0);
});

test('malformed headers are refused, never thrown', () => {
  const h = new IpHeader();
  assert.ok(!parseIpHeader(new Uint8Array(10), 0, 10, h));
  const short = Uint8Array.from(PING_V4);
  assert.ok(!parseIpHeader(short, 0, 30, h)); // total length 36 > 30 bytes
  const badIhl = Uint8Array.from(PING_V4); badIhl[0] = 0x44;
  assert.ok(!parseIpHeader(badIhl, 0, badIhl.length, h));
  const v5 = Uint8Array.from(PING_V4); v5[0] = 0x55;
  assert.ok(!parseIpHeader(v5, 0, v5.length, h));
  const v6 = Uint8Array.from(PING_V6); v6[5] = 200;
  assert.ok(!parseIpHeader(v6, 0, v6.length, h));
  assert.equal(h.version, 0);
});

test('the native checksum agrees with the TypeScript one on random data and odd lengths', () => {
  const n = native();
  const buf = new Uint8Array(3000);
  for (let i = 0; i < buf.length; i++) buf[i] = (i * 7919 + 13) & 0xff;
  for (const [off, len] of [[0, 0], [0, 1], [2, 3], [4, 20], [0, 1500], [6, 1499], [10, 2990], [0, 33], [2, 64]] as const) {
    assert.equal(n.checksum(buf, off, len, 0), internetChecksum(buf, off, len), `off ${off} len ${len}`);
  }
  assert.equal(n.checksum(WIKI_V4, 0, 20, 0), 0);
});

test('ipFamilyOf: the version, only with room for its fixed header', () => {
  const p = new Uint8Array(60);
  p[5] = 0x45;
  assert.equal(ipFamilyOf(p, 5, 20), 4);
  assert.equal(ipFamilyOf(p, 5, 19), 0);
  p[5] = 0x60;
  assert.equal(ipFamilyOf(p, 5, 40), 6);
  assert.equal(ipFamilyOf(p, 5, 39), 0);
  p[5] = 0x10;
  assert.equal(ipFamilyOf(p, 5, 55), 0);
  assert.equal(ipFamilyOf(p, 5, 0), 0);
});
