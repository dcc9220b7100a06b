// Conformance of the key-file parser with spec ipsec.md §2-§5 and §7.1, exact error strings included.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseKeyFile, parseKeyLine, decodeKeyField, type IpsecKey } from '../../src/keys/ipsec-keyfile.js';
import { checkKeyFileUpdate, IpsecKeyLoader } from '../../src/keys/ipsec-key-loader.js';
import { ciliumOverhead, espInUdpOverhead, ipsecTunnelMtu } from '../../src/keys/ipsec-mtu.js';

const K20 = '0123456789abcdef0123456789abcdef01234567'; // 20 bytes: AES-128 + salt
const K28 = 'aa'.repeat(28);
const K36 = 'bb'.repeat(36);
const H16 = 'cc'.repeat(16);
const H32 = 'dd'.repeat(32);
const A16 = 'ee'.repeat(16);

function key(line: string): IpsecKey {
  const r = parseKeyLine(line);
  if (!r.ok) assert.fail(`expected "${line}" to parse, got: ${r.error.message}`);
  return r.value;
}

function err(text: string): string {
  const r = parseKeyFile(text);
  assert.equal(r.ok, false, `expected an error for ${JSON.stringify(text)}`);
  return r.ok ? '' : r.error.message;
}

test('§3 examples: AEAD and auth+enc lines parse with Cilium KeyLen', () => {
  const a = key(`3+ rfc4106(gcm(aes)) ${K20} 128`);
  assert.equal(a.kind, 'aead');
  assert.equal(a.spi, 3);
  assert.equal(a.plus, true);
  assert.equal(a.keyLen, 16);
  assert.equal(a.reqid, 1);
  assert.equal(a.kind === 'aead' && Buffer.from(a.key).toString('hex'), K20);
  assert.equal(key(`3+ rfc4106(gcm(aes)) ${K20} 96`).keyLen, 12);
  assert.equal(key(`4 rfc4106(gcm(aes)) ${K28} 128`).kind, 'aead');
  assert.equal(key(`4 rfc4106(gcm(aes)) ${K36} 128`).kind, 'aead');
  const h = key(`3+ hmac(sha256) ${H16} cbc(aes) ${A16}`);
  assert.equal(h.kind, 'authenc');
  assert.equal(h.keyLen, 32, 'KeyLen = hex characters of the auth key');
  assert.equal(key(`3+ hmac(sha512) ${H32} cbc(aes) ${A16}`).keyLen, 64);
  assert.equal(key(`3+ hmac(sha256) 0x${H16} cbc(aes) ${A16}`).keyLen, 32, '"0x" is not counted');
  assert.equal(key(`3+ hmac(sha256) ${H16} cbc(aes) ${'ab'.repeat(32)}`).kind, 'authenc');
});

test('§3 example digest_null/cipher_null is refused: no integrity, no encryption', () => {
  assert.equal(err('3 digest_null "" cipher_null ""'), 'authentication algorithm "digest_null" refused: it provides no integrity protection');
  assert.equal(err(`3 hmac(sha256) ${H16} cipher_null ""`), 'encryption algorithm "cipher_null" refused: it provides no encryption');
});

test('§4 exact errors in Cilium order', () => {
  assert.equal(err('3+ rfc4106(gcm(aes))'), 'missing IPSec key or invalid format');
  assert.equal(err('abc rfc4106(gcm(aes)) 00 128'), 'failed to parse SPI: the first argument of the IPsec secret is not a number. Attempted "abc"');
  assert.equal(err('16 rfc4106(gcm(aes)) 00 128'), 'failed to parse SPI: encryption key space exhausted. ID must be nonzero and less than 16. Attempted "16"');
  assert.equal(err('16+ rfc4106(gcm(aes)) 00 128'), 'failed to parse SPI: encryption key space exhausted. ID must be nonzero and less than 16. Attempted "16"');
  assert.equal(err('0+ rfc4106(gcm(aes)) 00 128'), 'failed to parse SPI: zero is not a valid key ID. ID must be nonzero and less than 16. Attempted "0"');
  assert.equal(err(`3+ rfc4106(gcm(aes)) ${K20} 128 extra more`), 'invalid format: too many fields in the IPsec secret');
  // SPI errors come before the field count.
  assert.equal(err(`x a b c d e f`), 'failed to parse SPI: the first argument of the IPsec secret is not a number. Attempted "x"');
  assert.equal(err(`3+ gcm(aes) ${K20} 128`), 'invalid AEAD algorithm "gcm(aes)"');
  assert.equal(err('3+ rfc4106(gcm(aes)) xyz1 128'), 'unable to decode AEAD key string "xyz1"');
  assert.equal(err('3+ rfc4106(gcm(aes)) abc 128'), 'unable to decode AEAD key string "abc"');
  assert.equal(err(`3+ rfc4106(gcm(aes)) ${K20} abc`), 'ICV length is invalid or missing');
  assert.equal(err(`3+ rfc4106(gcm(aes)) ${K20} 64`), 'only ICV lengths 96, 128, and 256 are accepted');
  assert.equal(err(`3+ hmac(sha256) zz cbc(aes) ${A16}`), 'unable to decode authentication key string "zz"');
  assert.equal(err(`3+ hmac(sha256) ${H16} cbc(aes) 123`), 'unable to decode encryption key string "123"');
});

test('§4 decodeKey: "" is empty, one lower-case 0x stripped, 0X kept, either case, odd or non-hex refused', () => {
  assert.deepEqual(decodeKeyField('""'), new Uint8Array(0));
  assert.deepEqual(decodeKeyField('0xABcd'), Uint8Array.of(0xab, 0xcd));
  assert.deepEqual(decodeKeyField('ABcd'), Uint8Array.of(0xab, 0xcd));
  assert.equal(decodeKeyField('0XABcd'), undefined);
  assert.equal(decodeKeyField('0x0xab'), undefined);
  assert.equal(decodeKeyField('abc'), undefined);
  assert.equal(decodeKeyField('gg'), undefined);
  assert.equal(key(`3+ rfc4106(gcm(aes)) 0x${K20.toUpperCase()} 128`).kind, 'aead');
  assert.equal(err(`3+ rfc4106(gcm(aes)) 0X${K20} 128`), `unable to decode AEAD key string "0X${K20}"`);
});

test('§4 versions: a missing SPI is "not a number", a 6th [IP] field is "too many fields"', () => {
  assert.equal(err(`rfc4106(gcm(aes)) ${K20} 128`), 'failed to parse SPI: the first argument of the IPsec secret is not a number. Attempted "rfc4106(gcm(aes))"');
  assert.equal(err(`3 hmac(sha256) ${H16} cbc(aes) ${A16} 10.0.0.1`), 'invalid format: too many fields in the IPsec secret');
});

test('§5 SPI forms: 3++ and + are not numbers, +3 and 03 accepted, -1 refused', () => {
  assert.equal(err(`3++ rfc4106(gcm(aes)) ${K20} 128`), 'failed to parse SPI: the first argument of the IPsec secret is not a number. Attempted "3+"');
  assert.equal(err(`+ rfc4106(gcm(aes)) ${K20} 128`), 'failed to parse SPI: the first argument of the IPsec secret is not a number. Attempted ""');
  assert.equal(key(`+3 rfc4106(gcm(aes)) ${K20} 128`).spi, 3);
  assert.equal(key(`03 rfc4106(gcm(aes)) ${K20} 128`).spi, 3);
  assert.equal(key(`15+ rfc4106(gcm(aes)) ${K20} 128`).spi, 15);
  assert.equal(err(`-1 rfc4106(gcm(aes)) ${K20} 128`), 'failed to parse SPI: negative key ID. ID must be nonzero and less than 16. Attempted "-1"');
  assert.equal(err(`99999999999999999999 rfc4106(gcm(aes)) ${K20} 128`),
    'failed to parse SPI: the first argument of the IPsec secret is not a number. Attempted "99999999999999999999"');
});

test('§5 whitespace: trailing space trimmed, tab accepted; leading space, double space, blank and whitespace-only lines refused', () => {
  assert.equal(key(`3+ rfc4106(gcm(aes)) ${K20} 128 `).kind, 'aead', 'trailing space on an AEAD line is trimmed, not read as auth+enc');
  assert.equal(key(`3+\trfc4106(gcm(aes))\t${K20}\t128`).kind, 'aead');
  assert.equal(err(` 3+ rfc4106(gcm(aes)) ${K20} 128`), 'failed to parse SPI: the first argument of the IPsec secret is not a number. Attempted ""');
  assert.equal(err(`3+ rfc4106(gcm(aes))  ${K20} 128`), 'invalid format: empty field in the IPsec secret (two separators in a row)');
  assert.equal(err(`3+ hmac(sha256)  cbc(aes) ${A16}`), 'invalid format: empty field in the IPsec secret (two separators in a row)');
  assert.equal(err('   '), 'missing IPSec key or invalid format');
  assert.equal(err(`\n3+ rfc4106(gcm(aes)) ${K20} 128`), 'missing IPSec key or invalid format');
  assert.equal(err(`3+ rfc4106(gcm(aes)) ${K20} 128\n\n4+ rfc4106(gcm(aes)) ${K20} 128`), 'missing IPSec key or invalid format');
  assert.equal(err(`# my key\n3+ rfc4106(gcm(aes)) ${K20} 128`),
    'failed to parse SPI: the first argument of the IPsec secret is not a number. Attempted "#"', 'no comment syntax');
  assert.equal(err(`#\n3+ rfc4106(gcm(aes)) ${K20} 128`), 'missing IPSec key or invalid format');
});

test('§5 three fields is an error, not a panic', () => {
  assert.equal(err(`3+ hmac(sha256) ${H16}`),
    'invalid format: 3 fields in the IPsec secret; an AEAD key has 4 and an authentication + encryption key has 5');
});

test('§5 key sizes validated; unknown algorithms refused by name; ICV 256 refused for GCM', () => {
  assert.match(err(`3+ rfc4106(gcm(aes)) ${'aa'.repeat(16)} 128`), /^invalid rfc4106\(gcm\(aes\)\) key length: 16 bytes; it must be 20, 28 or 36 bytes/);
  assert.match(err('3+ rfc4106(gcm(aes)) "" 128'), /key length: 0 bytes/);
  assert.match(err(`3+ hmac(sha256) ${H16} cbc(aes) ${'ab'.repeat(20)}`), /^invalid cbc\(aes\) key length: 20 bytes/);
  assert.match(err(`3+ hmac(sha256) ${'ab'.repeat(8)} cbc(aes) ${A16}`), /^invalid hmac\(sha256\) key length: 8 bytes; it must be 16 to 64 bytes/);
  assert.match(err(`3+ hmac(sha512) ${'ab'.repeat(65)} cbc(aes) ${A16}`), /^invalid hmac\(sha512\) key length: 65 bytes/, 'keys > 64 bytes');
  assert.equal(err(`3+ rfc7539esp(chacha20,poly1305) ${'aa'.repeat(36)} 128`),
    'unsupported AEAD algorithm "rfc7539esp(chacha20,poly1305)": veil implements rfc4106(gcm(aes))');
  assert.equal(err(`3+ rfc4543(gcm(aes)) ${K20} 128`), 'unsupported AEAD algorithm "rfc4543(gcm(aes))": veil implements rfc4106(gcm(aes))');
  assert.equal(err(`3+ rfc4106(gcm(aes)) ${K20} 256`), 'ICV length 256 is not valid for rfc4106(gcm(aes)): RFC 4106 allows 96 or 128 bits');
  assert.equal(err(`3+ hmac(md5) ${H16} cbc(aes) ${A16}`), 'unsupported authentication algorithm "hmac(md5)": veil implements hmac(sha256) and hmac(sha512)');
  assert.equal(err(`3+ hmac(sha256) ${H16} cbc(des3_ede) ${A16}`), 'unsupported encryption algorithm "cbc(des3_ede)": veil implements cbc(aes)');
});

test('errors carry a code and a hint naming the line', () => {
  const r = parseKeyFile(`3+ rfc4106(gcm(aes)) ${K20} 128\nbad`);
  assert.ok(!r.ok);
  assert.equal(r.error.code, 'IPSEC_KEY_FORMAT');
  assert.match(r.error.hint ?? '', /^line 2 of the IPsec key file/);
});

test('§2 lines: LF split, one CR dropped, final newline adds no line, 64 KiB limit, empty file refused', () => {
  const crlf = parseKeyFile(`3+ rfc4106(gcm(aes)) ${K20} 128\r\n4+ rfc4106(gcm(aes)) ${K20} 128\r\n`);
  assert.ok(crlf.ok);
  assert.deepEqual(crlf.value.map((k) => k.spi), [3, 4]);
  assert.ok(parseKeyFile(`3+ rfc4106(gcm(aes)) ${K20} 128\r\r\n`).ok, 'one CR is dropped, a second is trailing whitespace');
  assert.ok(parseKeyFile(`3+ rfc4106(gcm(aes)) ${K20} 128`).ok, 'no final newline needed');
  assert.equal(err(`3+ rfc4106(gcm(aes)) ${'a'.repeat(70000)} 128`), 'error scanning IPsec keys: bufio.Scanner: token too long');
  assert.equal(err(''), 'the IPsec key file is empty');
});

test('§7.1 with and without "+": both accepted, both per-tunnel (the flag is only recorded)', () => {
  assert.equal(key(`3 rfc4106(gcm(aes)) ${K20} 128`).plus, false);
  assert.equal(key(`3+ rfc4106(gcm(aes)) ${K20} 128`).plus, true);
});

test('§4/§5 loader: rotations, same-SPI and key-length errors, skipped ids, wrap 15 -> 1, no-op reload', () => {
  const l = new IpsecKeyLoader();
  const k3 = `3+ rfc4106(gcm(aes)) ${K20} 128`;
  const first = l.load(k3, 1000);
  assert.ok(first.ok && first.value.changed && first.value.current.spi === 3);
  const again = l.load(k3 + '\n', 2000);
  assert.ok(again.ok && !again.value.changed, 'an unchanged file reloaded is a no-op');
  const same = l.load(`3+ rfc4106(gcm(aes)) ${'11'.repeat(20)} 128`, 3000);
  assert.ok(!same.ok);
  assert.equal(same.error.message, 'invalid SPI: changing IPSec keys requires incrementing the key id');
  assert.equal(same.error.code, 'IPSEC_KEY_ROTATION');
  const len = l.load(`4+ rfc4106(gcm(aes)) ${K20} 96`, 3000);
  assert.ok(!len.ok);
  assert.equal(len.error.message, 'invalid key rotation: key length must not change');
  const lenAlgo = l.load(`4+ hmac(sha256) ${H16} cbc(aes) ${A16}`, 3000);
  assert.ok(!lenAlgo.ok && lenAlgo.error.message === 'invalid key rotation: key length must not change');
  const skip = l.load(`5+ rfc4106(gcm(aes)) ${K20} 128`, 3000);
  assert.ok(!skip.ok);
  assert.equal(skip.error.message, 'invalid key rotation: key id 5 does not follow key id 3; the next key id is 4');
  const back = l.load(`2+ rfc4106(gcm(aes)) ${K20} 128`, 3000);
  assert.ok(!back.ok && /key id 2 does not follow key id 3/.test(back.error.message));
  assert.equal(l.current?.spi, 3, 'after errors the old key stays in force');

  // Multi-line file: the line in force, then the rotation.
  const multi = l.load(`${k3}\n4+ rfc4106(gcm(aes)) ${'22'.repeat(20)} 128\n`, 5000);
  assert.ok(multi.ok && multi.value.changed);
  assert.equal(multi.value.current.spi, 4);
  assert.deepEqual(multi.value.rotatedFrom.map((k) => k.spi), [3]);
  assert.deepEqual(l.retired().map((r) => [r.key.spi, r.sinceMs]), [[3, 5000]]);
  assert.deepEqual(l.expire(5000 + 299_999, 300_000), []);
  assert.deepEqual(l.expire(5000 + 300_000, 300_000).map((k) => k.spi), [3]);
  assert.deepEqual(l.retired(), []);
});

test('loader: a multi-line file at start applies each line as a rotation; last wins; wrap 15 -> 1', () => {
  const l = new IpsecKeyLoader();
  const r = l.load([14, 15, 1, 2].map((id) => `${id}+ rfc4106(gcm(aes)) ${K20.slice(0, 38)}${String(id).padStart(2, '0')} 128`).join('\n'), 0);
  assert.ok(r.ok);
  assert.equal(r.value.current.spi, 2);
  assert.deepEqual(r.value.rotatedFrom.map((k) => k.spi), [14, 15, 1]);
  const l2 = new IpsecKeyLoader();
  assert.ok(l2.load(`15+ rfc4106(gcm(aes)) ${K20} 128`, 0).ok);
  const wrap = l2.load(`1+ rfc4106(gcm(aes)) ${K28.slice(0, 40)} 128`, 1);
  assert.ok(wrap.ok && wrap.value.current.spi === 1);
  const bad = new IpsecKeyLoader().load(`3+ rfc4106(gcm(aes)) ${K20} 128\n3+ rfc4106(gcm(aes)) ${K28.slice(0, 40)} 128`, 0);
  assert.ok(!bad.ok && bad.error.message === 'invalid SPI: changing IPSec keys requires incrementing the key id');
  const partial = new IpsecKeyLoader();
  assert.ok(!partial.load(`3+ rfc4106(gcm(aes)) ${K20} 128\nbad line here`, 0).ok);
  assert.equal(partial.current, undefined, 'a load is all or nothing');
});

test('§6 KeyLen and MTU: Cilium overhead, real ESP-in-UDP overhead, the larger one wins', () => {
  assert.equal(ciliumOverhead(16), 77);
  assert.equal(ciliumOverhead(32), 93);
  assert.equal(ciliumOverhead(12), 73);
  assert.equal(ciliumOverhead(64), 125);
  const gcm = key(`3+ rfc4106(gcm(aes)) ${K20} 128`);
  assert.equal(espInUdpOverhead(gcm, 4), 20 + 8 + 8 + 8 + 3 + 2 + 16);
  assert.equal(espInUdpOverhead(gcm, 6), 40 + 8 + 8 + 8 + 3 + 2 + 16);
  assert.deepEqual(ipsecTunnelMtu(1500, gcm, 4), { mtu: 1423, overhead: 77, ciliumOverhead: 77, espOverhead: 65 });
  assert.equal(ipsecTunnelMtu(1500, gcm, 6).mtu, 1500 - 85, 'over IPv6 the real overhead is larger than Cilium\'s');
  const sha512 = key(`3+ hmac(sha512) ${H32} cbc(aes) ${A16}`);
  assert.equal(espInUdpOverhead(sha512, 4), 20 + 8 + 8 + 16 + 15 + 2 + 32);
  assert.equal(ipsecTunnelMtu(1500, sha512).mtu, 1500 - 125);
});

test('loader: each line in Cilium\'s order, grammar, then Cilium\'s rotation rules, then veil\'s own refusals; a rotation error stops before a later line', () => {
  const loaded = (first: string) => { const l = new IpsecKeyLoader(); assert.ok(l.load(first, 0).ok); return l; };
  const gcm3 = `3+ rfc4106(gcm(aes)) ${K20} 128`;
  const sha3 = `3+ hmac(sha256) ${H16} cbc(aes) ${A16}`; // KeyLen 32 (hex characters of the auth key)
  // digest_null "" has KeyLen 0: Cilium says the key length changed before the kernel sees digest_null
  for (const [inForce, next] of [[gcm3, '4+ digest_null "" cipher_null ""'], [sha3, '4+ digest_null "" cipher_null ""']] as const) {
    const second = loaded(inForce).load(`${inForce}\n${next}`, 0);
    assert.ok(!second.ok);
    assert.equal(second.error.message, 'invalid key rotation: key length must not change');
    const first = new IpsecKeyLoader().load(`${inForce}\n${next}`, 0);
    assert.ok(!first.ok && first.error.message === 'invalid key rotation: key length must not change', 'also as the second line of a first load');
  }
  // same KeyLen: the rotation passes Cilium's rules and veil refuses the algorithm
  const nul = loaded(`3+ hmac(sha256) ${H16} cbc(aes) ${A16}`).load(`4+ digest_null ${H16} cipher_null ${A16}`, 0);
  assert.ok(!nul.ok && nul.error.message.startsWith('authentication algorithm "digest_null" refused'));
  // same id and an unsupported algorithm: the same-SPI rule comes first
  const same = loaded(gcm3).load('3+ rfc7539esp(chacha20,poly1305) aa 128', 0);
  assert.ok(!same.ok && same.error.message === 'invalid SPI: changing IPSec keys requires incrementing the key id');
  // a rotation error on line 2 is reported before a grammar error on line 3
  const order = new IpsecKeyLoader().load(`${gcm3}\n${gcm3.replace(K20, K28.slice(0, 40))}\nnot a key`, 0);
  assert.ok(!order.ok && order.error.message === 'invalid SPI: changing IPSec keys requires incrementing the key id');
  // grammar before rotation: a bad line 2 is a format error even with the same id
  const grammar = loaded(gcm3).load('3+ rfc4106(gcm(aes)) xyz 128', 0);
  assert.ok(!grammar.ok && /unable to decode AEAD key string/.test(grammar.error.message));
});

test('checkKeyFileUpdate: a key file is checked against the one agents loaded before, as they check it', () => {
  const gcm3 = `3+ rfc4106(gcm(aes)) ${K20} 128`;
  const msg = (prev: string | undefined, next: string) => { const r = checkKeyFileUpdate(prev, next); return r.ok ? 'ok' : r.error.message; };
  assert.equal(msg(undefined, gcm3), 'ok');
  assert.equal(msg(gcm3, gcm3), 'ok', 'unchanged');
  assert.equal(msg(gcm3, `4+ rfc4106(gcm(aes)) ${K28.slice(0, 40)} 128`), 'ok', 'the next id');
  assert.equal(msg(gcm3, `3+ rfc4106(gcm(aes)) ${K28.slice(0, 40)} 128`), 'invalid SPI: changing IPSec keys requires incrementing the key id');
  assert.equal(msg(gcm3, `4+ rfc4106(gcm(aes)) ${K20} 96`), 'invalid key rotation: key length must not change');
  assert.equal(msg(gcm3, `4+ hmac(sha256) ${H16} cbc(aes) ${A16}`), 'invalid key rotation: key length must not change', 'an algorithm change');
  assert.match(msg(gcm3, `5+ rfc4106(gcm(aes)) ${K20} 128`), /key id 5 does not follow key id 3/);
  assert.match(msg(gcm3, ''), /the IPsec key file is empty/);
  assert.match(msg('garbage', gcm3.replace('3+', '7+')), /^ok$/, 'after a file agents refused, the next is checked as a first load');
});
