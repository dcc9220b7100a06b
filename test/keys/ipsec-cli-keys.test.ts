// The pure halves of `veil encryption create-key` / `rotate-key` (spec ipsec.md §12.2).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createKeyLine, rotateKeyLine } from '../../src/keys/ipsec-cli-keys.js';
import { parseKeyLine } from '../../src/keys/ipsec-keyfile.js';
import { IpsecKeyLoader } from '../../src/keys/ipsec-key-loader.js';

/** Deterministic "random" bytes: 0x01 0x02 0x03 ... so the generated hex is predictable. */
const counting = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i + 1) & 0xff);
const seq = (n: number): string => Buffer.from(counting(n)).toString('hex');

test('create-key: the three cilium-cli formats, lower-case hex, id 1+, and they parse', () => {
  assert.equal(createKeyLine('rfc4106-gcm-aes', counting), `1+ rfc4106(gcm(aes)) ${seq(20)} 128`);
  assert.equal(createKeyLine('cbc-aes-sha256', counting), `1+ hmac(sha256) ${seq(16)} cbc(aes) ${seq(16)}`);
  assert.equal(createKeyLine('cbc-aes-sha512', counting), `1+ hmac(sha512) ${seq(32)} cbc(aes) ${seq(16)}`);
  for (const algo of ['rfc4106-gcm-aes', 'cbc-aes-sha256', 'cbc-aes-sha512'] as const) {
    const line = createKeyLine(algo, randomBytes);
    assert.match(line, /^1\+ [^A-F]+$/);
    assert.ok(parseKeyLine(line).ok, line);
  }
});

test('rotate-key: id + 1, always "+", same algorithm, fresh key of the same hex length', () => {
  const r = rotateKeyLine(`3 rfc4106(gcm(aes)) ${'ab'.repeat(20)} 128`, counting);
  assert.ok(r.ok);
  assert.deepEqual(r.value, { line: `4+ rfc4106(gcm(aes)) ${seq(20)} 128`, spi: 4 });
  const h = rotateKeyLine(`7+ hmac(sha512) ${'cd'.repeat(32)} cbc(aes) ${'ef'.repeat(16)}`, counting);
  assert.ok(h.ok);
  assert.equal(h.value.line, `8+ hmac(sha512) ${seq(32)} cbc(aes) ${seq(16)}`);
  const big = rotateKeyLine(`3+ rfc4106(gcm(aes)) ${'ab'.repeat(36)} 96`, counting);
  assert.ok(big.ok && big.value.line === `4+ rfc4106(gcm(aes)) ${seq(36)} 96`);
});

test('rotate-key wraps 15 -> 1 (and anything >= 15 -> 1); a trailing newline is tolerated; 0x not counted', () => {
  const w = rotateKeyLine(`15+ rfc4106(gcm(aes)) ${'ab'.repeat(20)} 128\n`, counting);
  assert.ok(w.ok && w.value.spi === 1 && w.value.line.startsWith('1+ '));
  const w2 = rotateKeyLine(`20+ rfc4106(gcm(aes)) ${'ab'.repeat(20)} 128`, counting);
  assert.ok(w2.ok && w2.value.spi === 1);
  const x = rotateKeyLine(`3+ rfc4106(gcm(aes)) 0x${'ab'.repeat(20)} 128`, counting);
  assert.ok(x.ok && x.value.line === `4+ rfc4106(gcm(aes)) ${seq(20)} 128`);
});

test('rotate-key errors: unsupported format, invalid SPI, algorithm change that changes KeyLen', () => {
  for (const bad of ['', 'garbage', `3+  rfc4106(gcm(aes)) ${'ab'.repeat(20)} 128`, `3+ rfc4106(gcm(aes)) ${'ab'.repeat(20)} 128 extra x`,
    `a+ rfc4106(gcm(aes)) ${'ab'.repeat(20)} 128`, `3+ rfc4106(gcm(aes)) ab-cd 128`,
    `3+ rfc4106(gcm(aes)) ${'ab'.repeat(20)} 128\n4+ rfc4106(gcm(aes)) ${'ab'.repeat(20)} 128`]) {
    const r = rotateKeyLine(bad, counting);
    assert.ok(!r.ok, bad);
    assert.equal(r.error.message, 'IPsec key has unsupported format');
  }
  const spi = rotateKeyLine(`99999999999999999999+ rfc4106(gcm(aes)) ${'ab'.repeat(20)} 128`, counting);
  assert.ok(!spi.ok && spi.error.message === 'invalid IPsec key SPI: 99999999999999999999');
  const change = rotateKeyLine(`3+ rfc4106(gcm(aes)) ${'ab'.repeat(20)} 128`, counting, 'cbc-aes-sha256');
  assert.ok(!change.ok);
  assert.equal(change.error.message, 'changing the IPsec algorithm to cbc-aes-sha256 changes the key length (KeyLen 16 to 32)');
  const same = rotateKeyLine(`3+ rfc4106(gcm(aes)) ${'ab'.repeat(20)} 128`, counting, 'rfc4106-gcm-aes');
  assert.ok(same.ok && same.value.line === `4+ rfc4106(gcm(aes)) ${seq(20)} 128`);
});

test('a rotated line is accepted by the key loader as the next key', () => {
  const loader = new IpsecKeyLoader();
  let line = createKeyLine('rfc4106-gcm-aes', randomBytes);
  assert.ok(loader.load(line, 0).ok);
  for (let i = 0; i < 16; i++) {
    const r = rotateKeyLine(line, randomBytes);
    assert.ok(r.ok);
    line = r.value.line;
    const loaded = loader.load(line, i);
    assert.ok(loaded.ok && loaded.value.changed, line);
    assert.equal(loader.current?.spi, r.value.spi);
  }
  assert.equal(loader.current?.spi, 2, '1 + 16 rotations, wrapping at 15');
});
