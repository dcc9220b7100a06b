// Our ESP against third-party implementations: tshark dissects and decrypts our packets from a pcap,
// scapy decrypts them and verifies their ICVs (with ESN), and our decoder opens scapy's packets.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sealEsp } from '../../src/esp/esp-encoder.js';
import { decodeEsp, newDropCounters } from '../../src/esp/esp-decoder.js';
import type { OutboundSa } from '../../src/esp/security-association.js';
import { cbc, espInUdpPcap, gcm, icmpEcho, saPair } from './esp-helpers.js';

const OUTER_SRC = '10.0.0.1';
const OUTER_DST = '10.0.0.2';
const MARKER = 'veil-marker-0123456789';
let dir = '';

before(() => { dir = mkdtempSync(join(tmpdir(), 'veil-tesp-')); });
after(() => { rmSync(dir, { recursive: true, force: true }); });

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

function sealAll(sa: OutboundSa, count: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 1; i <= count; i++) {
    const p = sealEsp(sa, icmpEcho('192.168.1.10', '192.168.2.20', `${MARKER}-${i}`, i), 0);
    assert.ok(p instanceof Uint8Array);
    out.push(p);
  }
  return out;
}

function tshark(args: string[]): string {
  return execFileSync('tshark', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/**
 * scapy (Debian's, with its cryptography) decrypting ESP payloads given as hex lines; prints inner
 * packets or raises. scapy 2.5 leaves the ESN high bits out of ESP HMAC ICVs (it appends them only
 * for AH), against RFC 4303 §2.2.1 and Linux's authencesn; so for CBC+HMAC the ICV is checked here
 * with Python's hmac over ESP-without-ICV || seq-high, and scapy decrypts without its own check.
 */
const SCAPY_DECRYPT = `
import sys, hmac, hashlib, struct
from scapy.all import IP, ESP, ICMP, Raw
from scapy.layers.ipsec import SecurityAssociation
mode, spi, esn = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if mode == 'gcm':
    sa = SecurityAssociation(ESP, spi=spi, crypt_algo='AES-GCM', crypt_key=bytes.fromhex(sys.argv[4]), auth_algo=None, esn_en=True, esn=esn)
else:
    sa = SecurityAssociation(ESP, spi=spi, crypt_algo='AES-CBC', crypt_key=bytes.fromhex(sys.argv[4]),
                             auth_algo='SHA2-256-128', auth_key=bytes.fromhex(sys.argv[5]), esn_en=True, esn=esn)
for line in sys.stdin.read().split():
    raw = bytes.fromhex(line)
    # scapy knows HMAC-SHA-256 only with a 128-bit ICV: our 96-bit one is checked here, and 4 filler bytes stand in for the rest
    pkt = IP(src='${OUTER_SRC}', dst='${OUTER_DST}', proto=50) / ESP(raw if mode == 'gcm' else raw + bytes(4))
    if mode == 'gcm':
        out = sa.decrypt(pkt)
    else:
        icv = hmac.new(bytes.fromhex(sys.argv[5]), raw[:-12] + struct.pack('!L', esn), hashlib.sha256).digest()[:12]
        if icv != raw[-12:]:
            raise Exception('integrity check failed (RFC 4303 ESN ICV)')
        out = sa.decrypt(pkt, verify=False)
    inner = out.getlayer(IP, 2)
    print(inner.src, inner.dst, inner[ICMP].type, inner[Raw].load.decode())
`;

/** scapy encrypting tunnel-mode ESP with ESN; prints the ESP bytes as hex, one packet per line (CBC ICV re-signed with ESN, see above). */
const SCAPY_ENCRYPT = `
import sys, hmac, hashlib, struct
from scapy.all import IP, ESP, ICMP, Raw
from scapy.layers.ipsec import SecurityAssociation
mode, spi = sys.argv[1], int(sys.argv[2])
tunnel = IP(src='${OUTER_SRC}', dst='${OUTER_DST}')
if mode == 'gcm':
    sa = SecurityAssociation(ESP, spi=spi, crypt_algo='AES-GCM', crypt_key=bytes.fromhex(sys.argv[3]), auth_algo=None,
                             tunnel_header=tunnel, esn_en=True, esn=0)
else:
    sa = SecurityAssociation(ESP, spi=spi, crypt_algo='AES-CBC', crypt_key=bytes.fromhex(sys.argv[3]),
                             auth_algo='SHA2-256-128', auth_key=bytes.fromhex(sys.argv[4]), tunnel_header=tunnel, esn_en=True, esn=0)
for i in range(1, 4):
    p = IP(src='192.168.9.1', dst='192.168.9.2') / ICMP(type=8, seq=i) / Raw(('from-scapy-%d' % i).encode())
    esp = bytes(sa.encrypt(p, seq_num=i)[ESP])
    if mode != 'gcm':
        esp = esp[:-16] + hmac.new(bytes.fromhex(sys.argv[4]), esp[:-16] + struct.pack('!L', 0), hashlib.sha256).digest()[:12]
    print(esp.hex())
`;

function python(script: string, args: string[], input = ''): string {
  return execFileSync('/usr/bin/python3', ['-c', script, ...args], { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
}

test('tshark dissects our ESP-in-UDP as ESP with the right SPI and sequence numbers, and decrypts AES-GCM to the inner ICMP', () => {
  const t = gcm(16, 16);
  assert.ok(t.kind === 'aead');
  const { out } = saPair(t, 3, OUTER_SRC, OUTER_DST);
  const file = join(dir, 'gcm.pcap');
  writeFileSync(file, espInUdpPcap(OUTER_SRC, OUTER_DST, sealAll(out, 3)));

  const plain = tshark(['-r', file, '-T', 'fields', '-e', 'udp.dstport', '-e', 'esp.spi', '-e', 'esp.sequence']).trim().split('\n');
  assert.equal(plain.length, 3);
  plain.forEach((line, i) => {
    const [port, spi, seq] = line.split('\t');
    assert.equal(port, '4500');
    assert.equal(Number(spi), 3, line);
    assert.equal(Number(seq), i + 1, line);
  });
  const summary = tshark(['-r', file]);
  assert.match(summary, /ESP \(SPI=0x00000003\)/);

  const keyHex = hex(t.key) + hex(t.salt);
  const decrypted = tshark(['-r', file, '-o', 'esp.enable_encryption_decode:TRUE', '-o', 'esp.enable_authentication_check:TRUE',
    '-o', `uat:esp_sa:"IPv4","${OUTER_SRC}","${OUTER_DST}","0x00000003","AES-GCM with 16 octet ICV [RFC4106]","0x${keyHex}","NULL",""`,
    '-T', 'fields', '-e', 'ip.src', '-e', 'icmp.type', '-e', 'data.data']).trim().split('\n');
  assert.equal(decrypted.length, 3);
  decrypted.forEach((line, i) => {
    const [ips, type, data] = line.split('\t');
    assert.equal(ips, `${OUTER_SRC},192.168.1.10`, line);
    assert.equal(type, '8', line);
    assert.equal(Buffer.from(data!, 'hex').toString(), `${MARKER}-${i + 1}`);
  });
  // A wrong key: tshark cannot find the marker.
  const wrong = tshark(['-r', file, '-o', 'esp.enable_encryption_decode:TRUE',
    '-o', `uat:esp_sa:"IPv4","${OUTER_SRC}","${OUTER_DST}","0x00000003","AES-GCM with 16 octet ICV [RFC4106]","0x${'00'.repeat(20)}","NULL",""`,
    '-T', 'fields', '-e', 'icmp.type']);
  assert.equal(wrong.trim().replace(/\s/g, ''), '');
});

test('scapy decrypts our AES-GCM packets and verifies their ICVs with ESN (high bits 0 and 1); a flipped ICV is refused', () => {
  const t = gcm(16, 16);
  assert.ok(t.kind === 'aead');
  const keyHex = hex(t.key) + hex(t.salt);
  for (const high of [0, 1]) {
    const { out } = saPair(t, 3, OUTER_SRC, OUTER_DST, high * 2 ** 32 + 10);
    const packets = sealAll(out, 3);
    const lines = python(SCAPY_DECRYPT, ['gcm', '3', String(high), keyHex], packets.map(hex).join('\n')).trim().split('\n');
    assert.deepEqual(lines, [1, 2, 3].map((i) => `192.168.1.10 192.168.2.20 8 ${MARKER}-${i}`));
    const bad = Uint8Array.from(packets[0]!);
    bad[bad.length - 1]! ^= 1;
    assert.throws(() => python(SCAPY_DECRYPT, ['gcm', '3', String(high), keyHex], hex(bad)), /IPSecIntegrityError|integrity/i);
  }
  // With the wrong ESN high bits scapy's ICV check fails: the high bits really are in our ICV.
  const { out } = saPair(t, 3, OUTER_SRC, OUTER_DST, 2 ** 32 + 10);
  assert.throws(() => python(SCAPY_DECRYPT, ['gcm', '3', '0', keyHex], hex(sealAll(out, 1)[0]!)), /IPSecIntegrityError|integrity/i);
});

test('scapy decrypts our AES-CBC packets; their HMAC-SHA-256 ICVs (96 bits, with ESN) verify in Python', () => {
  const t = cbc('hmac(sha256)', 16);
  assert.ok(t.kind === 'authenc');
  for (const high of [0, 2]) {
    const { out } = saPair(t, 5, OUTER_SRC, OUTER_DST, high * 2 ** 32);
    const lines: string[] = python(SCAPY_DECRYPT, ['cbc', '5', String(high), hex(t.encKey), hex(t.authKey)], sealAll(out, 3).map(hex).join('\n'))
      .trim().split('\n');
    assert.deepEqual(lines, [1, 2, 3].map((i) => `192.168.1.10 192.168.2.20 8 ${MARKER}-${i}`));
    const wrongHigh: string = python(SCAPY_DECRYPT.replace("raise Exception", "print('BAD'); continue; raise Exception"),
      ['cbc', '5', String(high + 1), hex(t.encKey), hex(t.authKey)], hex(sealAll(saPair(t, 5, OUTER_SRC, OUTER_DST, high * 2 ** 32).out, 1)[0]!));
    assert.equal(wrongHigh.trim(), 'BAD', 'the ICV covers the ESN high bits');
  }
});

test('our decoder opens scapy-encrypted tunnel-mode packets (AES-GCM and CBC+HMAC, ESN)', () => {
  for (const t of [gcm(16, 16), cbc('hmac(sha256)', 16)]) {
    const args = t.kind === 'aead' ? ['gcm', '3', hex(t.key) + hex(t.salt)] : ['cbc', '3', hex(t.encKey), hex(t.authKey)];
    const packets = python(SCAPY_ENCRYPT, args).trim().split('\n').map((h) => Buffer.from(h, 'hex'));
    assert.equal(packets.length, 3);
    const { in: inSa } = saPair(t, 3, OUTER_SRC, OUTER_DST);
    const drops = newDropCounters();
    packets.forEach((p, i) => {
      const r = decodeEsp(inSa, p, 0, drops);
      assert.ok(r.ok, `${t.kind} packet ${i + 1}: ${JSON.stringify(drops)}`);
      assert.equal(r.seq, i + 1);
      assert.equal(r.nextHeader, 4);
      assert.match(Buffer.from(r.inner).toString('latin1'), new RegExp(`from-scapy-${i + 1}$`));
    });
    assert.equal(decodeEsp(inSa, packets[0]!, 0, drops).ok, false, 'replayed scapy packet dropped');
    assert.equal(drops.replay, 1);
  }
});
