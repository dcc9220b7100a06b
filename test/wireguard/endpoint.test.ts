// Endpoints as the core keeps them: an IPv4 one as two numbers (Ipv4Endpoint), what reads back
// the same text it was given; any other (IPv6, an address spelled otherwise) as a plain copy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compactEndpoint, copyEndpoint, formatEndpoint, Ipv4Endpoint, plainEndpoint, sameEndpoint } from '../../src/wireguard/endpoint.js';

test('an IPv4 endpoint given as text is kept as numbers and reads back as given', () => {
  for (const address of ['10.0.0.1', '192.168.255.254', '255.255.255.255', '0.0.0.0', '172.18.1.0']) {
    const e = compactEndpoint({ address, port: 51820 });
    assert.ok(e instanceof Ipv4Endpoint, address);
    assert.equal(e.address, address);
    assert.equal(e.port, 51820);
    assert.deepEqual(plainEndpoint(e), { address, port: 51820 });
    assert.equal(formatEndpoint(e), `${address}:51820`);
  }
});

test('an IPv6 endpoint, or an IPv4 one spelled otherwise, is kept as given (a plain copy)', () => {
  for (const address of ['fd00::1', '::ffff:10.0.0.1', '010.0.0.1', '10.0.0', '10.0.0.256', ' 10.0.0.1', '1e1.0.0.1']) {
    const given = { address, port: 7 };
    const e = compactEndpoint(given);
    assert.ok(!(e instanceof Ipv4Endpoint), address);
    assert.notEqual(e, given, 'a copy, not the object given');
    assert.deepEqual(e, given);
  }
});

test('sameEndpoint compares either form with either', () => {
  const n = compactEndpoint({ address: '10.1.2.3', port: 1 });
  assert.ok(sameEndpoint(n, new Ipv4Endpoint((10 << 24) | (1 << 16) | (2 << 8) | 3, 1)));
  assert.ok(sameEndpoint(n, { address: '10.1.2.3', port: 1 }));
  assert.ok(sameEndpoint({ address: '10.1.2.3', port: 1 }, n));
  assert.ok(!sameEndpoint(n, { address: '10.1.2.4', port: 1 }));
  assert.ok(!sameEndpoint(n, new Ipv4Endpoint((10 << 24) | (1 << 16) | (2 << 8) | 3, 2)));
  assert.ok(!sameEndpoint(n, null));
  assert.ok(sameEndpoint({ address: 'fd00::1', port: 1 }, { address: 'fd00::1', port: 1 }));
  // An address with its top bit set is a negative int32: still its own address.
  const high = compactEndpoint({ address: '200.1.1.1', port: 1 }) as Ipv4Endpoint;
  assert.ok(high.ipv4 < 0);
  assert.equal(high.address, '200.1.1.1');
  assert.ok(!sameEndpoint(high, compactEndpoint({ address: '72.1.1.1', port: 1 })));
});

test('copyEndpoint keeps an Ipv4Endpoint (never changed: shared) and copies a plain one as plain', () => {
  const n = new Ipv4Endpoint(1, 2);
  assert.equal(copyEndpoint(n), n);
  const plain = { address: '10.0.0.1', port: 3 };
  const c = copyEndpoint(plain);
  assert.notEqual(c, plain);
  assert.ok(!(c instanceof Ipv4Endpoint), 'the core API keeps what it is given: a plain endpoint stays plain');
  assert.deepEqual(c, plain);
});
