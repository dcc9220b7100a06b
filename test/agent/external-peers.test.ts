// Peers that run no veil agent: what `veil peer add` accepts and refuses, how a stored object is
// read back (hostile ones named, not thrown), collisions with nodes and other peers, and the
// PeerNode the encryption modes get.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  externalPeerFromObject, externalPeerNode, externalPeerObject, newExternalPeer, parseEndpoint, peerCollision,
} from '../../src/agent/external-peers.js';
import { isVeilError } from '../../src/util/errors.js';

const KEY = Buffer.alloc(32, 7).toString('base64');
const OTHER = Buffer.alloc(32, 9).toString('base64');
const peer = (name: string, allowed: string[], publicKey = KEY) => newExternalPeer(name, { publicKey, endpoint: '192.0.2.10:51820', allowedIPs: allowed });
const refused = (fn: () => unknown, re: RegExp) => assert.throws(fn, (e: unknown) => isVeilError(e) && e.code === 'INVALID_PEER' && re.test(e.message));

test('peer add input: endpoint with and without port, bare addresses as host prefixes, keepalive, boot id', () => {
  assert.deepEqual(parseEndpoint('192.0.2.10:51820'), { address: '192.0.2.10', port: 51820 });
  assert.deepEqual(parseEndpoint('192.0.2.10'), { address: '192.0.2.10', port: 51871 });
  assert.deepEqual(parseEndpoint('[2001:db8::1]:4500'), { address: '2001:db8::1', port: 4500 });
  const p = newExternalPeer('vm1', { publicKey: KEY, endpoint: '192.0.2.10:51820', allowedIPs: ['10.250.0.1', '10.251.0.0/24', '2001:db8:1::/64'], keepalive: 25 });
  assert.deepEqual(p.allowedIPs, ['10.250.0.1/32', '10.251.0.0/24', '2001:db8:1::/64']);
  assert.equal(p.persistentKeepalive, 25);
  assert.match(p.bootID, /^[0-9a-f-]{36}$/);
  refused(() => peer('x', ['10.0.0.1/24']), /not a CIDR/);
  refused(() => peer('x', []), /needs --allowed-ips/);
  refused(() => peer('x', ['10.0.0.0/24'], 'AAAA'), /not 32 bytes/);
  refused(() => peer('x', ['10.0.0.0/24'], Buffer.alloc(31, 1).toString('base64')), /not 32 bytes/);
  refused(() => peer('x', ['10.0.0.0/24'], Buffer.alloc(32).toString('base64')), /all zero/);
  refused(() => newExternalPeer('x', { publicKey: KEY, endpoint: 'host.example:1', allowedIPs: ['10.0.0.0/24'] }), /not IP:PORT/);
  refused(() => newExternalPeer('x', { publicKey: KEY, endpoint: '192.0.2.1:70000', allowedIPs: ['10.0.0.0/24'] }), /not 1\.\.65535/);
  refused(() => newExternalPeer('x', { publicKey: KEY, endpoint: '192.0.2.1', allowedIPs: ['10.0.0.0/24'], keepalive: -1 }), /keepalive/);
  refused(() => newExternalPeer('x', { endpoint: '192.0.2.1', allowedIPs: ['10.0.0.0/24'], bootID: 'nope' }), /not a UUID/);
});

test('stored peers round-trip; a hand-written or hostile object is named unusable, never thrown', () => {
  const p = { ...peer('vm1', ['10.250.0.1/32']), ipsecKeyId: 3 };
  assert.deepEqual(externalPeerFromObject(externalPeerObject(p)), p);
  const obj = externalPeerObject(p);
  for (const [spec, why] of [
    [{ ...obj.spec, endpoint: 'x' }, /no endpoint/],
    [{ ...obj.spec, allowedIPs: [1, 2] }, /no allowed IPs/],
    [{ ...obj.spec, allowedIPs: ['10.0.0.1/8'] }, /not a CIDR/],
    [{ ...obj.spec, publicKey: 'short' }, /not 32 bytes/],
    [{ ...obj.spec, bootID: 'x' }, /not a UUID/],
  ] as const) {
    const r = externalPeerFromObject({ ...obj, spec: spec as Record<string, unknown> });
    assert.equal(typeof r, 'string');
    assert.match(r as string, why);
  }
  assert.equal((externalPeerFromObject({ ...obj, spec: { ...obj.spec, ipsecKeyId: 99 } }) as { ipsecKeyId?: number }).ipsecKeyId, undefined);
});

test('collisions: a node\'s pod CIDR or address, another peer\'s allowed IPs or key, a node\'s name or key', () => {
  const nodes = [{ name: 'n1', ips: ['172.18.0.2'], podCIDRs: ['10.244.1.0/24'], publicKey: OTHER }];
  const first = peer('a', ['10.250.0.0/24']);
  assert.equal(peerCollision(first, nodes, []), undefined);
  assert.match(peerCollision(peer('b', ['10.244.0.0/16'], OTHER.replace('J', 'K')), nodes, [])!, /overlap 10\.244\.1\.0\/24 of node 'n1'/);
  assert.match(peerCollision(peer('b', ['172.18.0.0/16'], Buffer.alloc(32, 3).toString('base64')), nodes, [])!, /contain the address 172\.18\.0\.2 of node 'n1'/);
  assert.match(peerCollision(peer('b', ['10.250.0.128/25'], Buffer.alloc(32, 3).toString('base64')), nodes, [first])!, /overlap 10\.250\.0\.0\/24 of peer 'a'/);
  assert.match(peerCollision(peer('b', ['10.252.0.0/24']), nodes, [first])!, /public key is that of peer 'a'/);
  assert.match(peerCollision(peer('b', ['10.252.0.0/24'], OTHER), nodes, [])!, /public key is that of node 'n1'/);
  assert.match(peerCollision(peer('n1', ['10.252.0.0/24']), nodes, [])!, /name is that of node 'n1'/);
});

test('the modes see a peer with its own port and keepalive, its allowed IPs as prefixes, no node IPs and nothing to probe', () => {
  const n = externalPeerNode({ ...newExternalPeer('vm1', { publicKey: KEY, endpoint: '192.0.2.10:51820', allowedIPs: ['10.250.0.1/32'], keepalive: 25 }), ipsecKeyId: 4 }, 7);
  assert.deepEqual([n.slot, n.internalIP, n.internalIPs, n.podCIDRs, n.podGateway, n.encryptionKey], [7, '192.0.2.10', [], ['10.250.0.1/32'], '', 4]);
  assert.deepEqual(n.external, { port: 51820, persistentKeepalive: 25 });
  assert.equal(n.annotations['network.veil.io/wg-pub-key'], KEY);
});
