import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Pair, ipv4Packet } from './harness.js';

test('handshake, then data both ways', () => {
  const p = new Pair();
  p.send('a', ipv4Packet('hello b'));
  assert.equal(p.tunnel.b.length, 1);
  assert.deepEqual(p.tunnel.b[0], ipv4Packet('hello b'));
  p.send('b', ipv4Packet('hello a'));
  assert.deepEqual(p.tunnel.a, [ipv4Packet('hello a')]);
  console.log(p.wire.map(w => w.from + w.datagram[0] + ':' + w.datagram.length).join(' '));
});
