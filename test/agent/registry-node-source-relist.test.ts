// The node source's relist on a real etcd, with no watch running (what it is for: changes a watch
// missed): it lists names and versions, reads only the Node objects that moved, and ends where a
// full list would (a changed node, a deleted one, a new one, a dead lease, an unreadable object);
// with nothing changed it reads no object at all, and on etcd lists no name either (what changed
// since the last relist and the count: every name only when the count says something went).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Registry, RegistryObject } from '../../src/control/registry.js';
import { LEASE_GRACE_MS, RegistryNodeSource } from '../../src/agent/registry-node-source.js';
import { etcdForTests } from '../control/etcd-helpers.js';

const t = etcdForTests({ members: 1 });
const root = mkdtempSync(join(tmpdir(), 'veil-t-relist-'));
after(() => rmSync(root, { recursive: true, force: true }));

const node = (name: string, i: number, annotations: Record<string, string> = {}): RegistryObject => ({
  kind: 'Node', metadata: { name, annotations }, spec: { internalIP: `172.18.0.${2 + i}`, podCIDR: `10.244.${i}.0/24`, underlayInterface: 'eth0', mtu: 1500 }, status: {},
});

test('a relist reads only the Node objects that moved and ends where a full list would', { timeout: 60_000 }, async () => {
  const reg = t.registry(`relist${process.pid}`);
  for (const [i, n] of ['a', 'b', 'c'].entries()) await reg.create(node(n, i));
  const leases = { b: await reg.holdLease('b', 15, { pid: 2 }), c: await reg.holdLease('c', 15, { pid: 3 }) };
  let gets = 0, nodeLists = 0;
  /** Relists that listed every name (per kind) and that asked for what changed only. */
  const listings = { complete: 0, changes: 0 };
  const counting: Registry = Object.assign(Object.create(reg) as Registry, {
    get: (kind: 'Node', name: string) => { gets++; return reg.get(kind, name); },
    list: (kind: 'Node') => { if (kind === 'Node') nodeLists++; return reg.list(kind); },
    changedSince: (kind: 'Node', since: number | undefined) => { listings[since === undefined ? 'complete' : 'changes']++; return reg.changedSince!(kind, since); },
    close: () => undefined,
  });
  const bootFile = join(root, 'boot_id');
  writeFileSync(bootFile, 'd1c8a8e9-1111-2222-3333-444455556666\n');
  const src = new RegistryNodeSource(counting, 'a', bootFile);
  const relist = () => (src as unknown as { relist(): Promise<void> }).relist();
  const peers = () => src.peers().map((p) => `${p.name}:${p.annotations['k'] ?? ''}`).join();
  try {
    await src.self();
    gets = 0;
    await relist();
    assert.equal(peers(), 'b:,c:');
    assert.deepEqual([gets, nodeLists], [2, 0], 'the two peers read one by one, no list');

    assert.deepEqual(listings, { complete: 2, changes: 0 }, 'the first relist lists every name of both kinds');
    await relist();
    assert.deepEqual([gets, nodeLists], [2, 0], 'nothing moved: no object read');
    assert.deepEqual(listings, { complete: 2, changes: 2 }, 'nothing moved: what changed asked for, no name listed');

    // What a missed watch would have said: b changed, c deleted, d new (and alive), e unreadable.
    await reg.mutate('Node', 'b', (cur) => cur && { ...cur, metadata: { ...cur.metadata, annotations: { k: 'v2' } } });
    await reg.delete('Node', 'c');
    await reg.create(node('d', 3));
    const dLease = await reg.holdLease('d', 15, { pid: 4 });
    await reg.create(node('e', 4));
    const eLease = await reg.holdLease('e', 15, { pid: 5 });
    await relist();
    assert.equal(peers(), 'b:v2,d:,e:', 'oldest first');
    assert.deepEqual(listings, { complete: 3, changes: 4 }, 'a node gone: the count differs, every node name listed (the leases added up)');
    const before = gets;
    await t.etcd.etcdctl(['put', `veil/relist${process.pid}/nodes/e`, 'not json']);
    await relist();
    assert.equal(gets - before, 1, 'only the moved object is read');
    assert.equal(peers(), 'b:v2,d:', 'an unreadable object leaves, as a full list says');
    assert.match(src.refusedPeers().get('peer e') ?? '', /registry object .*nodes\/e refused: not JSON/);

    // A lease gone: the node stays a peer for the grace, then leaves.
    await leases.b.release();
    await relist();
    assert.equal(peers(), 'b:v2,d:', 'within the grace');
    await new Promise((r) => setTimeout(r, LEASE_GRACE_MS + 300));
    assert.equal(peers(), 'd:');
    await Promise.all([leases.c.release(), dLease.release(), eLease.release()]);
  } finally {
    src.close();
  }
});
