// ESP encode/decode: round trips for every transform and both inner families, the wire layout checked
// with an independent AES implementation (@noble/ciphers), drops counted by reason, hostile bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import { gcm as nobleGcm, cbc as nobleCbc } from '@noble/ciphers/aes.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { decodeEsp, newDropCounters, XFRM_STAT_NAMES } from '../../src/esp/esp-decoder.js';
import { encodeEsp, sealEsp } from '../../src/esp/esp-encoder.js';
import { espPacketLength, gcmAad, gcmNonce, readEspSeqLow, readEspSpi, writeEspHeader, writeEspTrailer, writeGcmIv } from '../../src/esp/esp-packet.js';
import { OutboundSequence } from '../../src/esp/sequence-store.js';
import { InboundSaTable, OutboundSa, SaOrigin } from '../../src/esp/security-association.js';
import { classifyUdpEncap, decodeEspInUdp } from '../../src/esp/udp-encap.js';
import { cbc, gcm, icmpEcho, ipv6Packet, saPair } from './esp-helpers.js';

function seal(sa: OutboundSa, inner: Uint8Array, now = 1): Uint8Array {
  const p = sealEsp(sa, inner, now);
  assert.ok(p instanceof Uint8Array, `seal failed: ${String(p)}`);
  return p;
}

test('round trip: GCM 128/192/256 with ICV 12/16, CBC+SHA-256/512, IPv4 and IPv6 inner packets of many sizes', () => {
  const transforms = [gcm(16, 16), gcm(24, 16), gcm(32, 16), gcm(16, 12), cbc('hmac(sha256)', 16), cbc('hmac(sha512)', 32)];
  for (const t of transforms) {
    const { out, in: inSa } = saPair(t);
    const drops = newDropCounters();
    for (let size = 0; size < 40; size++) {
      for (const inner of [icmpEcho('192.168.0.1', '192.168.0.2', randomBytes(size)), ipv6Packet(randomBytes(size))]) {
        const p = seal(out, inner, 10);
        assert.equal(p.length, espPacketLength(t, inner.length));
        const block = t.kind === 'aead' ? 4 : 16;
        assert.equal((p.length - 8 - (t.kind === 'aead' ? 8 : 16) - t.icvLength) % block, 0);
        assert.equal(readEspSpi(p), 3);
        const r = decodeEsp(inSa, p, 20, drops);
        assert.ok(r.ok, `${JSON.stringify(drops)}`);
        assert.deepEqual(Buffer.from(r.inner), Buffer.from(inner));
        assert.equal(r.nextHeader, inner[0]! >> 4 === 4 ? 4 : 41);
      }
    }
    assert.equal(out.packets, 80);
    assert.equal(inSa.packets, 80);
    assert.equal(inSa.bytes, out.bytes);
    assert.equal(inSa.useTimeMs, 20);
    assert.equal(out.sequence.last, 80);
  }
});

test('GCM layout per RFC 4106 with ESN: IV = 64-bit seq, nonce = salt||IV, AAD = SPI||seq-high||seq-low (checked with @noble/ciphers)', () => {
  const t = gcm(16, 16);
  assert.ok(t.kind === 'aead');
  const seqStart = 2 ** 32 + 5; // high bits non-zero, so ESN matters
  const { out } = saPair(t, 7, '10.0.0.1', '10.0.0.2', seqStart - 1);
  const inner = icmpEcho('192.168.0.1', '192.168.0.2', 'marker-abc');
  const p = seal(out, inner);
  const seq = seqStart;
  assert.equal(readEspSeqLow(p), 5);
  assert.equal(Buffer.from(p.subarray(8, 16)).toString('hex'), '0000000100000005');
  const aad = Buffer.from('00000007' + '00000001' + '00000005', 'hex');
  assert.deepEqual(Buffer.from(gcmAad(7, seq)), aad);
  const nonce = Buffer.concat([Buffer.from(t.salt), p.subarray(8, 16)]);
  assert.deepEqual(Buffer.from(gcmNonce(t.salt, p.subarray(8, 16))), nonce);
  const plain = nobleGcm(t.key, nonce, aad).decrypt(p.subarray(16));
  const padLen = plain[plain.length - 2]!;
  assert.equal(plain[plain.length - 1], 4);
  assert.deepEqual([...plain.subarray(inner.length, inner.length + padLen)], Array.from({ length: padLen }, (_, i) => i + 1));
  assert.equal(plain.length % 4, 0);
  assert.deepEqual(Buffer.from(plain.subarray(0, inner.length)), Buffer.from(inner));
  // Without the high bits in the AAD the ICV does not verify: ESN is really in the ICV.
  assert.throws(() => nobleGcm(t.key, nonce, Buffer.from('0000000700000005', 'hex')).decrypt(p.subarray(16)));
});

test('CBC+HMAC layout: random IV, ICV = HMAC-SHA-256 truncated to 96 bits (the kernel\'s default for Cilium\'s keys) over header||IV||ciphertext||seq-high (checked with noble)', () => {
  const t = cbc('hmac(sha256)', 16);
  assert.ok(t.kind === 'authenc');
  const { out } = saPair(t, 3, '10.0.0.1', '10.0.0.2', 2 ** 33 + 99);
  const inner = icmpEcho('192.168.0.1', '192.168.0.2', 'cbc');
  const p = seal(out, inner);
  const icv = p.subarray(p.length - 12);
  const expect = hmac(sha256, t.authKey, Buffer.concat([p.subarray(0, p.length - 12), Buffer.from('00000002', 'hex')])).subarray(0, 12);
  assert.deepEqual(Buffer.from(icv), Buffer.from(expect));
  const plain = nobleCbc(t.encKey, p.subarray(8, 24), { disablePadding: true }).decrypt(p.subarray(24, p.length - 12));
  assert.equal(plain.length % 16, 0);
  assert.deepEqual(Buffer.from(plain.subarray(0, inner.length)), Buffer.from(inner));
  const p2 = seal(out, inner);
  assert.notDeepEqual(Buffer.from(p2.subarray(8, 24)), Buffer.from(p.subarray(8, 24)), 'fresh IV per packet');
});

test('drops by reason: replayed, truncated, bit-flipped, unknown SPI, unknown source, too old; counters and xfrm names', () => {
  for (const t of [gcm(), cbc()]) {
    const { out, in: inSa } = saPair(t);
    const table = new InboundSaTable();
    table.add(inSa);
    const drops = newDropCounters();
    const inner = icmpEcho('192.168.0.1', '192.168.0.2', 'hello');
    const p1 = seal(out, inner);
    assert.ok(decodeEspInUdp(table, '10.0.0.1', p1, 1, drops).ok);
    assert.deepEqual(decodeEspInUdp(table, '10.0.0.1', p1, 1, drops), { ok: false, reason: 'replay' });
    assert.equal(drops.replay, 1);
    const p2 = seal(out, inner);
    for (const cut of [0, 4, 7, 8, 16, 20, p2.length - 17, p2.length - 1]) {
      const r = decodeEspInUdp(table, '10.0.0.1', p2.subarray(0, cut), 1, drops);
      assert.ok(!r.ok && (r.reason === 'truncated' || r.reason === 'bad-length'), `cut ${cut}: ${JSON.stringify(r)}`);
    }
    assert.equal(drops.truncated + drops['bad-length'], 8);
    // Every single-bit flip after the SPI is caught: in the sequence number as a replay or an ICV
    // failure, anywhere else as an ICV failure.
    const seen = { 'auth-failed': 0, replay: 0 };
    for (let i = 4; i < p2.length; i++) {
      const bad = Uint8Array.from(p2);
      bad[i]! ^= 1 << (i % 8);
      const r = decodeEspInUdp(table, '10.0.0.1', bad, 1, drops);
      assert.ok(!r.ok, `flip at byte ${i}`);
      assert.ok(r.reason === 'auth-failed' || (i < 8 && r.reason === 'replay'), `flip at ${i}: ${r.reason}`);
      seen[r.reason as 'auth-failed' | 'replay']++;
    }
    assert.equal(drops['auth-failed'], seen['auth-failed']);
    assert.equal(drops.replay, 1 + seen.replay);
    assert.ok(seen['auth-failed'] >= p2.length - 8);
    assert.ok(decodeEspInUdp(table, '10.0.0.1', p2, 1, drops).ok, 'the intact packet still decodes after the forgeries');
    const other = Uint8Array.from(p2);
    writeEspHeader(other, 0, 9, 77);
    assert.deepEqual(decodeEspInUdp(table, '10.0.0.1', other, 1, drops), { ok: false, reason: 'no-state' });
    assert.deepEqual(decodeEspInUdp(table, '10.9.9.9', seal(out, inner), 1, drops), { ok: false, reason: 'no-state' });
    assert.deepEqual(decodeEsp(undefined, p2, 1, drops), { ok: false, reason: 'no-state' });
    assert.equal(drops['no-state'], 3);
    // Too old: 1100 packets later, an unseen old one is outside the 1024 window.
    const old = seal(out, inner);
    for (let i = 0; i < 1100; i++) assert.ok(decodeEsp(inSa, seal(out, inner), 1, drops).ok);
    const before = drops.replay;
    assert.deepEqual(decodeEsp(inSa, old, 1, drops), { ok: false, reason: 'replay' });
    assert.equal(drops.replay, before + 1);
    assert.equal(XFRM_STAT_NAMES['no-state'], 'XfrmInNoStates');
    assert.equal(XFRM_STAT_NAMES.replay, 'XfrmInStateSeqError');
    assert.equal(XFRM_STAT_NAMES['auth-failed'], 'XfrmInStateProtoError');
  }
});

test('bad padding and bad next header are dropped after authentication', () => {
  const t = gcm();
  assert.ok(t.kind === 'aead');
  const { in: inSa } = saPair(t);
  const drops = newDropCounters();
  // Hand-built, correctly authenticated packets with a wrong trailer.
  const build = (seq: number, plain: Uint8Array): Uint8Array => {
    const hdr = new Uint8Array(16);
    writeEspHeader(hdr, 0, 3, seq);
    writeGcmIv(hdr, 8, seq);
    const c = createCipheriv('aes-128-gcm', t.key, gcmNonce(t.salt, hdr.subarray(8)), { authTagLength: 16 });
    c.setAAD(gcmAad(3, seq));
    return Buffer.concat([hdr, c.update(plain), c.final(), c.getAuthTag()]);
  };
  const inner = icmpEcho('192.168.0.1', '192.168.0.2', 'x'); // 29 bytes: pad 1
  const trailer = new Uint8Array(3);
  writeEspTrailer(trailer, 0, 1, 4);
  trailer[0] = 7; // padding must be 1
  assert.deepEqual(decodeEsp(inSa, build(1, Buffer.concat([inner, trailer])), 1, drops), { ok: false, reason: 'bad-padding' });
  assert.deepEqual(decodeEsp(inSa, build(2, Uint8Array.of(0, 0, 0, 200, 4, 4, 4, 4)).subarray(0), 1, drops).ok, false);
  writeEspTrailer(trailer, 0, 1, 6); // next header TCP: not a tunnel-mode inner packet
  assert.deepEqual(decodeEsp(inSa, build(3, Buffer.concat([inner, trailer])), 1, drops), { ok: false, reason: 'bad-next-header' });
  writeEspTrailer(trailer, 0, 1, 41); // says IPv6, carries IPv4
  assert.deepEqual(decodeEsp(inSa, build(4, Buffer.concat([inner, trailer])), 1, drops), { ok: false, reason: 'bad-next-header' });
  assert.equal(drops['bad-padding'], 2);
  assert.equal(drops['bad-next-header'], 2);
  writeEspTrailer(trailer, 0, 1, 4);
  assert.ok(decodeEsp(inSa, build(1, Buffer.concat([inner, trailer])), 1, drops).ok, 'a failed trailer check does not burn the sequence number');
});

test('UDP 4500: IKE marker dropped and counted, NAT keepalive ignored, short datagrams truncated', () => {
  const table = new InboundSaTable();
  const drops = newDropCounters();
  assert.equal(classifyUdpEncap(Uint8Array.of(0xff)), 'keepalive');
  assert.equal(classifyUdpEncap(Uint8Array.of(0, 0, 0, 0, 1, 2, 3, 4, 5)), 'ike');
  assert.equal(classifyUdpEncap(Uint8Array.of(0, 0, 0, 3, 1)), 'truncated');
  assert.equal(classifyUdpEncap(new Uint8Array(0)), 'truncated');
  assert.deepEqual(decodeEspInUdp(table, '10.0.0.1', Uint8Array.of(0xff), 0, drops), { ok: false, reason: 'keepalive' });
  assert.deepEqual(decodeEspInUdp(table, '10.0.0.1', new Uint8Array(40), 0, drops), { ok: false, reason: 'ike' });
  assert.deepEqual(decodeEspInUdp(table, '10.0.0.1', Uint8Array.of(1, 2), 0, drops), { ok: false, reason: 'truncated' });
  assert.equal(drops.keepalive, 1);
  assert.equal(drops.ike, 1);
  assert.equal(drops.truncated, 1);
  assert.equal(XFRM_STAT_NAMES.keepalive, undefined);
});

test('hostile bytes never throw: 20000 random datagrams against GCM and CBC SAs', () => {
  const table = new InboundSaTable();
  const g = saPair(gcm(), 3);
  const c = saPair(cbc(), 4);
  table.add(g.in);
  table.add(c.in);
  const drops = newDropCounters();
  for (let i = 0; i < 20000; i++) {
    const p = randomBytes(i % 120);
    if (p.length >= 4) p.writeUInt32BE(i % 2 ? 3 : 4, 0);
    const r = decodeEspInUdp(table, '10.0.0.1', p, 0, drops);
    assert.equal(r.ok, false);
  }
  const total = Object.values(drops).reduce((a, b) => a + b, 0);
  assert.equal(total, 20000);
});

test('encoder refusals: not an IP packet, sequence not reserved, buffer too small', () => {
  const { out } = saPair(gcm());
  assert.equal(sealEsp(out, Uint8Array.of(0x10, 0, 0), 0), 'not-ip');
  assert.equal(sealEsp(out, new Uint8Array(0), 0), 'not-ip');
  const inner = icmpEcho('192.168.0.1', '192.168.0.2', 'x');
  assert.deepEqual(encodeEsp(out, inner, new Uint8Array(10), 0), { ok: false, reason: 'buffer-too-small' });
  const o = saPair(gcm()).out;
  const unreserved = new OutboundSa(o.spi, o.dst, o, new OutboundSequence(0), new SaOrigin(0, o.src, o.origin.slabs)); // o's keys, not yet reserved
  assert.equal(sealEsp(unreserved, inner, 0), 'sequence-not-reserved');
  assert.equal(out.sequence.last, 0, 'refusals use no sequence number');
});
