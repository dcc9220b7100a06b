// The Peer objects on a registry that watches, added to the node source's peers: the admission is
// made again exactly when a Peer object or a node's claim moves (a node taking a Peer's range
// refuses it, the node gone admits it again), and not per call: with nothing changed (or no Peer
// object at all) every pass gets the same array, so the modes and the tunnel tell it unchanged by identity.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedRegistry } from '../../src/control/embedded-registry.js';
import type { RegistryObject } from '../../src/control/registry.js';
import { RegistryNodeSource } from '../../src/agent/registry-node-source.js';
import { RegistryPeerObjects, WithExternalPeers, externalPeerObject, newExternalPeer } from '../../src/agent/external-peers.js';
import { waitFor } from '../wait-for.js';

const root = mkdtempSync(join(tmpdir(), 'veil-t-extpeers-'));
after(() => rmSync(root, { recursive: true, force: true }));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const node = (name: string, i: number, podCIDR = `10.244.${i}.0/24`): RegistryObject => ({
  kind: 'Node', metadata: { name }, spec: { internalIP: `172.18.0.${2 + i}`, podCIDR, underlayInterface: 'eth0', mtu: 1500 }, status: {},
});

test('Peer objects follow node claims: re-admitted when a claim or a Peer moves, the same peers array while nothing does', { timeout: 60_000 }, async () => {
  const dir = join(root, 'reg');
  const reg = new EmbeddedRegistry(dir);
  await reg.create(node('a', 0));
  await reg.create(node('b', 1));
  const bAlive = await reg.holdLease('b', 15, { pid: 2 });
  const bootFile = join(root, 'boot_id');
  writeFileSync(bootFile, 'd1c8a8e9-1111-2222-3333-444455556666\n');
  const inner = new RegistryNodeSource(new EmbeddedRegistry(dir), 'a', bootFile);
  const s = new WithExternalPeers(inner, new RegistryPeerObjects(new EmbeddedRegistry(dir)));
  try {
    await s.self();
    await s.watchPeers(() => undefined);
    await waitFor('b a peer', () => s.peers().length === 1, 10_000, { everyMs: 20 });
    assert.equal(s.peers(), inner.peers(), 'no Peer object: the node source\'s own array, not a copy per pass');

    const laptop = newExternalPeer('laptop', { endpoint: '192.0.2.10:51820', allowedIPs: ['10.250.0.0/24'] });
    await reg.create(externalPeerObject(laptop));
    await waitFor('the Peer admitted', () => s.peers().some((p) => p.name === 'laptop'), 10_000, { everyMs: 20 });
    assert.equal(s.peers(), s.peers(), 'nothing changed: the same array');
    assert.deepEqual(s.peers().map((p) => p.name), ['b', 'laptop']);

    // A node (its agent away: its claim counts all the same) takes the Peer's range: refused.
    await reg.create(node('c', 2, '10.250.0.0/24'));
    await waitFor('the Peer refused', () => /overlap 10.250.0.0\/24 of node 'c'/.test(s.refusedPeers().get('peer laptop') ?? ''), 10_000, { everyMs: 20 });
    assert.deepEqual(s.peers().map((p) => p.name), ['b']);
    // The node goes: admitted again.
    await reg.delete('Node', 'c');
    await waitFor('the Peer admitted again', () => s.peers().some((p) => p.name === 'laptop') && !s.refusedPeers().has('peer laptop'), 10_000, { everyMs: 20 });
    // A second Peer on the first one's range: the older keeps it.
    await sleep(10); // a later creation time
    await reg.create(externalPeerObject(newExternalPeer('phone', { endpoint: '192.0.2.11:51820', allowedIPs: ['10.250.0.7/32'] })));
    await waitFor('the later Peer refused', () => /overlap 10.250.0.0\/24 of peer 'laptop'/.test(s.refusedPeers().get('peer phone') ?? ''), 10_000, { everyMs: 20 });
    await reg.delete('Peer', 'laptop');
    await waitFor('the remaining Peer admitted', () => s.peers().map((p) => p.name).join() === 'b,phone' && s.refusedPeers().size === 0, 10_000, { everyMs: 20 });
  } finally {
    await bAlive.release();
    s.close();
    reg.close();
  }
});
