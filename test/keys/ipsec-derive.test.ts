// Per-tunnel key derivation (spec ipsec.md §7) checked against Python's hashlib and openssl, computed
// here from the spec's recipe, never against this implementation's own output. Also SPI pairing (§8).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { canonicalTunnelIp, deriveTunnelKey, deriveTunnelTransforms, derivedMaterialLength, derivedSaSpec } from '../../src/keys/ipsec-derive.js';
import { packTransforms, packedLength, packedSa } from '../../src/esp/esp-transform.js';
import { parseKeyLine, type IpsecKey } from '../../src/keys/ipsec-keyfile.js';
import { nextKeyId, pairSpi } from '../../src/keys/ipsec-spi.js';
import { isVeilError } from '../../src/util/errors.js';

const BOOT_L = '3f2504e0-4f89-41d3-9a0c-0305e82c3301';
const BOOT_R = 'a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d';

/** The spec's recipe in Python: canonical IPs with ipaddress, SHA-256/512 with hashlib, truncation. */
function pythonDerive(pskHex: string, src: string, dst: string, srcBoot: string, dstBoot: string): string {
  const script = `
import hashlib, ipaddress, sys
psk = bytes.fromhex(sys.argv[1])
def canon(s):
    a = ipaddress.ip_address(s)
    if a.version == 6 and a.ipv4_mapped is not None:
        a = a.ipv4_mapped
    return a.packed
msg = psk + canon(sys.argv[2]) + canon(sys.argv[3]) + sys.argv[4].encode()[:36] + sys.argv[5].encode()[:36]
h = hashlib.sha256(msg) if len(psk) <= 32 else hashlib.sha512(msg)
print(h.digest()[:len(psk)].hex())
`;
  return execFileSync('python3', ['-c', script, pskHex, src, dst, srcBoot, dstBoot], { encoding: 'utf8' }).trim();
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const parse = (line: string): IpsecKey => {
  const r = parseKeyLine(line);
  assert.ok(r.ok);
  return r.value;
};

test('derivation matches hashlib: IPv4, IPv6, IPv4-mapped IPv6, SHA-256 and SHA-512 keys, long boot ids', () => {
  const cases: Array<[string, string, string, string, string]> = [
    ['0123456789abcdef0123456789abcdef01234567', '10.0.0.1', '10.0.0.2', BOOT_L, BOOT_R],
    ['0123456789abcdef0123456789abcdef01234567', '10.0.0.2', '10.0.0.1', BOOT_R, BOOT_L],
    ['ff'.repeat(32), 'fd00::1', 'fd00:0:0:1::2', BOOT_L, BOOT_R],
    ['a5'.repeat(36), '::ffff:192.168.1.7', '192.168.1.8', BOOT_L, BOOT_R],
    ['5a'.repeat(64), '2001:db8::1', '2001:db8::ffff:1.2.3.4', BOOT_L + '-and-more', BOOT_R + 'xyz'],
    ['01'.repeat(16), '172.16.0.1', '::ffff:ac10:2', BOOT_L, BOOT_R],
  ];
  for (const [psk, src, dst, sb, db] of cases) {
    const mine = hex(deriveTunnelKey(Buffer.from(psk, 'hex'), src, dst, sb, db));
    assert.equal(mine, pythonDerive(psk, src, dst, sb, db), `${psk.length / 2}-byte psk ${src} -> ${dst}`);
    assert.equal(mine.length, psk.length);
  }
});

test('derivation matches `openssl dgst -sha256` for the seed-style rfc4106 key', () => {
  const psk = Buffer.from('00112233445566778899aabbccddeeff01020304', 'hex');
  const msg = Buffer.concat([psk, Buffer.from([10, 1, 0, 5]), Buffer.from([10, 1, 0, 6]), Buffer.from(BOOT_L), Buffer.from(BOOT_R)]);
  const out = execFileSync('openssl', ['dgst', '-sha256', '-hex'], { input: msg, encoding: 'utf8' });
  const digest = /([0-9a-f]{64})\s*$/.exec(out)![1]!;
  assert.equal(hex(deriveTunnelKey(psk, '10.1.0.5', '10.1.0.6', BOOT_L, BOOT_R)), digest.slice(0, 40));
});

test('OUT(L->R) = derive(L, R), IN(R->L) = derive(R, L); L\'s OUT is R\'s IN; GCM salt is the last 4 bytes', () => {
  const pskHex = '0123456789abcdef0123456789abcdef01234567';
  const key = parse(`3+ rfc4106(gcm(aes)) ${pskHex} 128`);
  const L = { ip: '10.0.0.1', bootId: BOOT_L };
  const R = { ip: '10.0.0.2', bootId: BOOT_R };
  const onL = deriveTunnelTransforms(key, L, R);
  const onR = deriveTunnelTransforms(key, R, L);
  const expectOut = pythonDerive(pskHex, L.ip, R.ip, L.bootId, R.bootId);
  const expectIn = pythonDerive(pskHex, R.ip, L.ip, R.bootId, L.bootId);
  assert.ok(onL.out.kind === 'aead' && onL.in.kind === 'aead' && onR.out.kind === 'aead' && onR.in.kind === 'aead');
  assert.equal(hex(onL.out.key), expectOut.slice(0, 32));
  assert.equal(hex(onL.out.salt), expectOut.slice(32, 40));
  assert.equal(hex(onL.in.key) + hex(onL.in.salt), expectIn);
  assert.deepEqual(onL.out, onR.in);
  assert.deepEqual(onL.in, onR.out);
  assert.notEqual(hex(onL.out.key), hex(onL.in.key));
  assert.equal(onL.out.icvLength, 16);
  assert.equal(deriveTunnelTransforms(parse(`3+ rfc4106(gcm(aes)) ${pskHex} 96`), L, R).out.icvLength, 12);
});

test('auth+enc keys: each blob derived separately with the same inputs', () => {
  const authHex = '11'.repeat(32);
  const encHex = '22'.repeat(16);
  const key = parse(`4+ hmac(sha256) ${authHex} cbc(aes) ${encHex}`);
  const t = deriveTunnelTransforms(key, { ip: '10.0.0.1', bootId: BOOT_L }, { ip: '10.0.0.2', bootId: BOOT_R });
  assert.ok(t.out.kind === 'authenc');
  assert.equal(hex(t.out.authKey), pythonDerive(authHex, '10.0.0.1', '10.0.0.2', BOOT_L, BOOT_R));
  assert.equal(hex(t.out.encKey), pythonDerive(encHex, '10.0.0.1', '10.0.0.2', BOOT_L, BOOT_R));
  assert.equal(t.out.icvLength, 12, "96 bits: the kernel's default for hmac(sha256), which Cilium's keys get");
  const sha512 = parse(`4+ hmac(sha512) ${'33'.repeat(64)} cbc(aes) ${encHex}`);
  const t512 = deriveTunnelTransforms(sha512, { ip: '10.0.0.1', bootId: BOOT_L }, { ip: '10.0.0.2', bootId: BOOT_R });
  assert.ok(t512.out.kind === 'authenc');
  assert.equal(hex(t512.out.authKey), pythonDerive('33'.repeat(64), '10.0.0.1', '10.0.0.2', BOOT_L, BOOT_R));
  assert.equal(t512.out.icvLength, 32);
});

test("an SA spec from the key alone is packedSa of the transform derived under it, for every family and size", () => {
  const lines = [
    `3+ rfc4106(gcm(aes)) ${'01'.repeat(20)} 128`, `5+ rfc4106(gcm(aes)) ${'02'.repeat(36)} 96`,
    `4+ hmac(sha256) ${'11'.repeat(32)} cbc(aes) ${'22'.repeat(16)}`, `7+ hmac(sha512) ${'33'.repeat(64)} cbc(aes) ${'44'.repeat(32)}`,
  ];
  for (const line of lines) {
    const key = parse(line);
    const t = deriveTunnelTransforms(key, { ip: '10.0.0.1', bootId: BOOT_L }, { ip: '10.0.0.2', bootId: BOOT_R });
    const [out, inb] = packTransforms([t.out, t.in], new Uint8Array(512), 100);
    assert.equal(derivedMaterialLength(key), packedLength(out!), line);
    assert.deepEqual(derivedSaSpec(key, out!.material, out!.at), packedSa(key.spi, out!), line);
    assert.deepEqual(derivedSaSpec(key, out!.material, out!.at + derivedMaterialLength(key)), packedSa(key.spi, inb!), `${line}: the in transform right after`);
  }
});

test('bad inputs: short boot id (exact Cilium message), psk over 64 bytes, bad IP', () => {
  const psk = new Uint8Array(20);
  assert.throws(() => deriveTunnelKey(psk, '10.0.0.1', '10.0.0.2', BOOT_L, 'short'),
    (e: unknown) => isVeilError(e) && e.message === 'incorrect size for boot ID, should be at least 36 characters long');
  assert.throws(() => deriveTunnelKey(psk, '10.0.0.1', '10.0.0.2', '', BOOT_R), /incorrect size for boot ID/);
  assert.throws(() => deriveTunnelKey(new Uint8Array(65), '10.0.0.1', '10.0.0.2', BOOT_L, BOOT_R), /too long/);
  assert.throws(() => deriveTunnelKey(psk, '10.0.0.256', '10.0.0.2', BOOT_L, BOOT_R), /invalid tunnel IP/);
  assert.throws(() => deriveTunnelKey(psk, 'fe80::1%eth0', '10.0.0.2', BOOT_L, BOOT_R), /invalid tunnel IP/);
});

test('canonical tunnel IPs: 4 bytes for IPv4 and ::ffff:a.b.c.d, 16 for IPv6', () => {
  assert.deepEqual(canonicalTunnelIp('10.1.2.3'), Uint8Array.of(10, 1, 2, 3));
  assert.deepEqual(canonicalTunnelIp('::ffff:10.1.2.3'), Uint8Array.of(10, 1, 2, 3));
  assert.equal(hex(canonicalTunnelIp('fd00::1')), 'fd000000000000000000000000000001');
  assert.equal(hex(canonicalTunnelIp('1:2:3:4:5:6:7:8')), '00010002000300040005000600070008');
  assert.equal(hex(canonicalTunnelIp('::')), '0'.repeat(32));
});

test('§8 pairSpi: the older of the two SPIs, 15 older than 1; nextKeyId wraps 15 -> 1', () => {
  assert.equal(pairSpi(3, 3), 3);
  assert.equal(pairSpi(3, 4), 3);
  assert.equal(pairSpi(4, 3), 3);
  assert.equal(pairSpi(15, 1), 15);
  assert.equal(pairSpi(1, 15), 15);
  assert.equal(pairSpi(15, 14), 14);
  assert.equal(pairSpi(14, 15), 14);
  assert.equal(pairSpi(15, 15), 15);
  assert.equal(pairSpi(0, 3), 0, 'a peer without a key: no encryption');
  assert.equal(pairSpi(3, 0), 0);
  assert.equal(nextKeyId(3), 4);
  assert.equal(nextKeyId(14), 15);
  assert.equal(nextKeyId(15), 1);
});
