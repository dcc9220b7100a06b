import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cidrContains, cidrContainsCidr, cidrsOverlap, formatCidr, formatIp, parseCidr, parseIp, tryParseIp } from '../../src/net/cidr.js';
import { isVeilError } from '../../src/util/errors.js';

test('parses and formats IPv4 and IPv6 addresses canonically', () => {
  assert.deepEqual([...parseIp('10.1.2.3').bytes], [10, 1, 2, 3]);
  const cases: [string, string][] = [
    ['fd00::1', 'fd00::1'], ['FD00:0:0:0:0:0:0:1', 'fd00::1'], ['::', '::'], ['::1', '::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'], ['::ffff:10.0.0.1', '::ffff:10.0.0.1'], ['64:ff9b::192.0.2.33', '64:ff9b::c000:221'],
    ['fe80::', 'fe80::'],
  ];
  for (const [input, want] of cases) assert.equal(formatIp(parseIp(input).bytes), want, input);
  assert.equal(parseIp('::ffff:1.2.3.4').bytes[15], 4);
});

test('rejects malformed addresses with a VeilError', () => {
  for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1::2::3', '12345::', 'fd00::g', '1:2:3:4:5:6:7:8:9', 'fd00::1%eth0', 'x']) {
    assert.equal(tryParseIp(bad), undefined, bad);
    assert.throws(() => parseIp(bad), (e) => isVeilError(e) && e.code === 'BAD_IP', bad);
  }
});

test('parses CIDRs, masks host bits, strict mode refuses them', () => {
  assert.equal(formatCidr(parseCidr('10.0.0.7/24')), '10.0.0.0/24');
  assert.equal(formatCidr(parseCidr('fd00:1:2:3::5/48')), 'fd00:1:2::/48');
  assert.equal(formatCidr(parseCidr('10.0.0.7')), '10.0.0.7/32');
  assert.equal(formatCidr(parseCidr('::/0')), '::/0');
  assert.equal(formatCidr(parseCidr('10.1.255.255/17')), '10.1.128.0/17');
  assert.throws(() => parseCidr('10.0.0.7/24', { strict: true }), (e) => isVeilError(e) && /did you mean 10\.0\.0\.0\/24/.test(e.hint ?? ''));
  for (const bad of ['10.0.0.0/33', 'fd00::/129', '10.0.0.0/', '10.0.0.0/-1', '10.0.0.0/08', 'x/8']) {
    assert.throws(() => parseCidr(bad), (e) => isVeilError(e) && e.code === 'BAD_CIDR', bad);
  }
});

test('contains and overlaps', () => {
  const net = parseCidr('10.1.0.0/16');
  assert.ok(cidrContains(net, parseIp('10.1.200.3')));
  assert.ok(!cidrContains(net, parseIp('10.2.0.1')));
  assert.ok(!cidrContains(net, parseIp('::ffff:10.1.0.1')));
  assert.ok(cidrContains(parseCidr('0.0.0.0/0'), parseIp('1.2.3.4')));
  assert.ok(cidrContains(parseCidr('fd00::/8'), Uint8Array.from([0, 0, 0xfd, 0x12, ...new Array(14).fill(0)]), 2));
  assert.ok(cidrContainsCidr(net, parseCidr('10.1.5.0/24')));
  assert.ok(!cidrContainsCidr(parseCidr('10.1.5.0/24'), net));
  assert.ok(cidrsOverlap(net, parseCidr('10.0.0.0/8')));
  assert.ok(cidrsOverlap(parseCidr('10.0.0.0/8'), net));
  assert.ok(!cidrsOverlap(net, parseCidr('10.2.0.0/16')));
  assert.ok(!cidrsOverlap(parseCidr('::/0'), parseCidr('0.0.0.0/0')));
  assert.ok(cidrsOverlap(parseCidr('fd00:1::/32'), parseCidr('fd00:1:0:5::/64')));
});
