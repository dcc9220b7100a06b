// Too-big answers written to a pcap and dissected by tshark: types, codes, MTU, addresses,
// checksums (tshark verifies them) and the quoted original.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildTooBig, ICMP_TOO_BIG_MAX_V4, ICMP_TOO_BIG_MAX_V6 } from '../../src/net/icmp-too-big.js';
import { parseIp } from '../../src/net/cidr.js';
import { internetChecksum, pseudoHeaderSum, writeIpv4HeaderChecksum } from '../../src/net/ip-packet.js';
import { mustRun } from '../../src/util/exec.js';

/** A len-byte UDP packet src -> dst (ports 4000 -> 5000) with valid checksums. */
function udpPacket(src: string, dst: string, len: number): Uint8Array {
  const s = parseIp(src), d = parseIp(dst);
  const p = new Uint8Array(len);
  const v6 = s.family === 6;
  const hl = v6 ? 40 : 20;
  if (v6) {
    p[0] = 0x60; p[4] = (len - 40) >> 8; p[5] = (len - 40) & 0xff; p[6] = 17; p[7] = 64;
    p.set(s.bytes, 8); p.set(d.bytes, 24);
  } else {
    p[0] = 0x45; p[2] = len >> 8; p[3] = len & 0xff; p[6] = 0x40; p[8] = 64; p[9] = 17;
    p.set(s.bytes, 12); p.set(d.bytes, 16);
    writeIpv4HeaderChecksum(p, 0);
  }
  const u = len - hl;
  p[hl] = 4000 >> 8; p[hl + 1] = 4000 & 0xff; p[hl + 2] = 5000 >> 8; p[hl + 3] = 5000 & 0xff;
  p[hl + 4] = u >> 8; p[hl + 5] = u & 0xff;
  for (let i = hl + 8; i < len; i++) p[i] = i & 0xff;
  const c = internetChecksum(p, hl, u, pseudoHeaderSum(p, 0, 17, u));
  p[hl + 6] = c >> 8; p[hl + 7] = c & 0xff;
  return p;
}

function writePcap(file: string, packets: Uint8Array[]): void {
  const head = Buffer.alloc(24);
  head.writeUInt32LE(0xa1b2c3d4, 0); head.writeUInt16LE(2, 4); head.writeUInt16LE(4, 6);
  head.writeUInt32LE(65535, 16); head.writeUInt32LE(101, 20); // LINKTYPE_RAW
  const parts: Buffer[] = [head];
  packets.forEach((p, i) => {
    const rec = Buffer.alloc(16);
    rec.writeUInt32LE(1_700_000_000 + i, 0); rec.writeUInt32LE(p.length, 8); rec.writeUInt32LE(p.length, 12);
    parts.push(rec, Buffer.from(p));
  });
  writeFileSync(file, Buffer.concat(parts));
}

function tshark(file: string, fields: string[]): string[][] {
  const out = mustRun(['tshark', '-r', file, '-o', 'ip.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE',
    '-T', 'fields', '-E', 'separator=|', ...fields.flatMap((f) => ['-e', f])]);
  return out.trim().split('\n').map((l) => l.split('|'));
}

test('IPv4 "fragmentation needed" and ICMPv6 "packet too big" parse back in tshark with good checksums', () => {
  const dir = mkdtempSync(join(tmpdir(), 'veil-ttb-'));
  try {
    const v4 = udpPacket('10.1.0.5', '10.2.0.9', 1500);
    const v6 = udpPacket('fd00:1::5', 'fd00:2::9', 1500);
    const out4 = new Uint8Array(ICMP_TOO_BIG_MAX_V4);
    const out6 = new Uint8Array(ICMP_TOO_BIG_MAX_V6);
    const n4 = buildTooBig(v4, 0, v4.length, 1420, out4);
    const n6 = buildTooBig(v6, 0, v6.length, 1420, out6, 0, { source: parseIp('fd00:ff::1').bytes });
    assert.equal(n4, 576); // quotes as much as fits in 576 bytes
    assert.equal(n6, 1280); // quotes as much as fits in the IPv6 minimum MTU
    const file = join(dir, 'too-big.pcap');
    writePcap(file, [out4.subarray(0, n4), out6.subarray(0, n6)]);
    const [r4, r6] = tshark(file, ['ip.src', 'ip.dst', 'ip.checksum.status', 'icmp.type', 'icmp.code', 'icmp.mtu',
      'icmp.checksum.status', 'ipv6.src', 'ipv6.dst', 'icmpv6.type', 'icmpv6.mtu', 'icmpv6.checksum.status', 'udp.srcport', 'udp.dstport']);
    // IPv4: outer from the original destination back to the sender, then the quoted header
    const [src4, dst4, ipck, type4, code4, mtu4, icmpck4, , , , , , sport4, dport4] = r4!;
    assert.match(ipck!, /^1/); // 1 = good (outer header)
    // addresses, ICMP type and code (3/4: fragmentation needed), MTU, ICMP checksum good, quoted ports
    assert.deepEqual([src4, dst4, type4, code4, mtu4, icmpck4, sport4, dport4],
      ['10.2.0.9,10.1.0.5', '10.1.0.5,10.2.0.9', '3', '4', '1420', '1', '4000', '5000']);
    const [, , , , , , , src6, dst6, type6, mtu6, icmpck6, sport6] = r6!;
    // ICMPv6 2: packet too big
    assert.deepEqual([src6, dst6, type6, mtu6, icmpck6, sport6], ['fd00:ff::1,fd00:1::5', 'fd00:1::5,fd00:2::9', '2', '1420', '1', '4000']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('small originals are quoted whole; the default IPv6 source is the original destination', () => {
  const v4 = udpPacket('10.1.0.5', '10.2.0.9', 200);
  const out = new Uint8Array(2000);
  assert.equal(buildTooBig(v4, 0, v4.length, 100, out), 28 + 200);
  assert.deepEqual(out.subarray(28, 228), v4);
  assert.equal(internetChecksum(out, 20, 208), 0);
  const v6 = udpPacket('fd00:1::5', 'fd00:2::9', 300);
  const n = buildTooBig(v6, 0, v6.length, 1280, out, 10);
  assert.equal(n, 48 + 300);
  assert.deepEqual(out.subarray(18, 34), parseIp('fd00:2::9').bytes);
  assert.equal(internetChecksum(out, 50, 8 + 300, pseudoHeaderSum(out, 10, 58, 8 + 300)), 0);
});

test('no answer to ICMP errors, later fragments, unanswerable sources or malformed packets', () => {
  const out = new Uint8Array(2000);
  const icmpErr = udpPacket('10.1.0.5', '10.2.0.9', 600);
  icmpErr[9] = 1; icmpErr[20] = 3; // an ICMP destination unreachable
  writeIpv4HeaderChecksum(icmpErr, 0);
  assert.equal(buildTooBig(icmpErr, 0, 600, 1400, out), 0);
  const echo = Uint8Array.from(icmpErr); echo[20] = 8; // echo request: answered
  assert.ok(buildTooBig(echo, 0, 600, 1400, out) > 0);
  const frag = udpPacket('10.1.0.5', '10.2.0.9', 600);
  frag[6] = 0x20; frag[7] = 0x10; // offset 128 bytes
  assert.equal(buildTooBig(frag, 0, 600, 1400, out), 0);
  assert.equal(buildTooBig(udpPacket('0.0.0.0', '10.2.0.9', 600), 0, 600, 1400, out), 0);
  assert.equal(buildTooBig(udpPacket('10.1.0.5', '224.0.0.5', 600), 0, 600, 1400, out), 0);
  assert.equal(buildTooBig(udpPacket('::', 'fd00::1', 600), 0, 600, 1400, out), 0);
  assert.equal(buildTooBig(udpPacket('ff02::1', 'fd00::1', 600), 0, 600, 1400, out), 0);
  const v6err = udpPacket('fd00::2', 'fd00::1', 600);
  v6err[6] = 58; v6err[40] = 1;
  assert.equal(buildTooBig(v6err, 0, 600, 1400, out), 0);
  assert.equal(buildTooBig(new Uint8Array(30), 0, 30, 1400, out), 0);
  assert.equal(buildTooBig(udpPacket('10.1.0.5', '10.2.0.9', 600), 0, 600, 1400, new Uint8Array(100)), 0);
});
