// Peer admission: a node object that repeats another node's address or pod CIDR, this node's own,
// or a pod CIDR over node addresses is refused with both names, the first claim kept; and the same
// on a real etcd through the node source, where a forged object and a garbage value never become
// peers and each is named.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { admitPeers } from '../../src/agent/peer-admission.js';
import { RegistryNodeSource } from '../../src/agent/registry-node-source.js';
import type { RegistryObject } from '../../src/control/registry.js';
import { etcdForTests } from '../control/etcd-helpers.js';

const claim = (name: string, ip: string, cidr: string) => ({ name, ips: [ip], podCIDRs: [cidr] });
const self = claim('w1', '172.18.0.3', '10.244.1.0/24');

test('collisions are refused naming both nodes; the first claim is kept', () => {
  const { admitted, refused } = admitPeers(self, [
    claim('w2', '172.18.0.4', '10.244.2.0/24'),
    claim('thief', '172.18.0.50', '10.244.2.0/24'), // w2's pod CIDR, another IP
    claim('twin', '172.18.0.4', '10.244.7.0/24'), // w2's IP
    claim('mine', '172.18.0.51', '10.244.1.128/25'), // inside this node's pod CIDR
    claim('underlay', '172.18.0.52', '172.18.0.0/16'), // the underlay subnet as a pod CIDR
    claim('inpods', '10.244.2.9', '10.244.9.0/24'), // its address inside w2's pods
    claim('bad', 'not-an-ip', '10.244.8.0/24'),
    claim('w3', '172.18.0.5', '10.244.3.0/24'),
  ]);
  assert.deepEqual(admitted.map((a) => a.name), ['w2', 'w3']);
  assert.deepEqual(Object.fromEntries(refused), {
    'peer thief': "node object refused: its pod CIDR 10.244.2.0/24 overlaps 10.244.2.0/24 of node 'w2' (the first claim is kept)",
    'peer twin': "node object refused: it claims the address 172.18.0.4 of node 'w2' (the first claim is kept)",
    'peer mine': 'node object refused: its pod CIDR 10.244.1.128/25 overlaps 10.244.1.0/24 of this node (w1) (the first claim is kept)',
    'peer underlay': 'node object refused: its pod CIDR 172.18.0.0/16 contains the address 172.18.0.3 of this node (w1) (the first claim is kept)',
    'peer inpods': "node object refused: its address 10.244.2.9 lies in the pod CIDR 10.244.2.0/24 of node 'w2' (the first claim is kept)",
    'peer bad': 'node object refused: its address "not-an-ip" is not an IP address',
  });
});

test('IPv6 and IPv4 claims do not collide across families; an unusable own object claims nothing', () => {
  const { admitted } = admitPeers(undefined, [claim('a', 'fd00::1', 'fd00:10::/64'), claim('b', '10.0.0.1', '10.244.0.0/24')]);
  assert.deepEqual(admitted.map((a) => a.name), ['a', 'b']);
});

const t = etcdForTests({ members: 1 });
const node = (name: string, ip: string, cidr: string): RegistryObject => ({
  kind: 'Node', metadata: { name }, spec: { internalIP: ip, podCIDR: cidr, underlayInterface: 'eth0', mtu: 1500 }, status: {},
});

test('on real etcd: a forged node object and a garbage value are refused by the node source, named, and never peers', async () => {
  const reg = t.registry('admit');
  await reg.create(node('w1', '172.18.0.3', '10.244.1.0/24'));
  await reg.create(node('w2', '172.18.0.4', '10.244.2.0/24'));
  const leases = [await reg.holdLease('w2', 15, { pid: 2 })];
  const src = new RegistryNodeSource(t.registry('admit'), 'w1');
  let changes = 0;
  await src.watchPeers(() => { changes++; });
  assert.deepEqual(src.peers().map((p) => p.name), ['w2']);

  // the impostor repeats w2's pod CIDR from another address, with a live "agent"
  await new Promise((r) => setTimeout(r, 5)); // a later creation time: w2's claim is the first
  await reg.create(node('impostor', '172.18.0.66', '10.244.2.0/24'));
  leases.push(await reg.holdLease('impostor', 15, { pid: 3 }));
  const deadline = Date.now() + 10_000;
  while (!src.refusedPeers().has('peer impostor') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.match(src.refusedPeers().get('peer impostor') ?? '', /its pod CIDR 10\.244\.2\.0\/24 overlaps 10\.244\.2\.0\/24 of node 'w2' \(the first claim is kept\)/);
  assert.deepEqual(src.peers().map((p) => [p.name, p.internalIP]), [['w2', '172.18.0.4']], 'w2 keeps its pods; nothing moves to the impostor');
  assert.ok(changes > 0, 'the refusal reached the agent as a change');

  // garbage where a node should be: skipped by the registry, named by the source
  await t.etcd.etcdctl(['put', 'veil/admit/nodes/garbage', '{not json']);
  await (src as unknown as { relist(): Promise<void> }).relist(); // the periodic relist, now
  assert.match(src.refusedPeers().get('peer garbage') ?? '', /^registry object veil\/admit\/nodes\/garbage refused: /);
  assert.deepEqual(src.peers().map((p) => p.name), ['w2']);
  for (const l of leases) await l.release();
  src.close();
});
