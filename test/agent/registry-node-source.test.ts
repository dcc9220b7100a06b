// The node source over a real embedded registry: the own node from its Node object (pod gateway
// derived, boot id from the kernel's file), peers followed through the watch, own fields written
// only when they change (and written again when someone else rewrote them), and liveness apart:
// another agent's lease renewals or health reports never look like a peer change, and a node is a
// peer only while its agent's lease lives. (The embedded registry is the test library; the e2e
// tests run the same source on etcd.)
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedRegistry } from '../../src/control/embedded-registry.js';
import type { RegistryObject } from '../../src/control/registry.js';
import { LEASE_GRACE_MS, RegistryNodeSource, withOwnFields } from '../../src/agent/registry-node-source.js';
import type { OwnFields } from '../../src/agent/node-source.js';
import { listOf } from '../../src/util/one-or-more.js';
import { waitFor } from '../wait-for.js';

const root = mkdtempSync(join(tmpdir(), 'veil-t-nodesource-'));
after(() => rmSync(root, { recursive: true, force: true }));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const bootIDFile = (): string => { const f = join(root, 'boot_id'); writeFileSync(f, 'D1C8A8E9-1111-2222-3333-444455556666\n'); return f; };
const node = (name: string, i: number, extra: Record<string, unknown> = {}): RegistryObject => ({
  kind: 'Node', metadata: { name }, spec: { internalIP: `172.18.0.${2 + i}`, podCIDR: `10.244.${i}.0/24`, underlayInterface: 'eth0', mtu: 1500, ...extra }, status: {},
});
const fields = (key: string, problems: string[] = []): OwnFields => ({
  agent: { ready: true, pid: 1, bootID: 'b', startedAt: 't', health: { state: problems.length ? 'Degraded' : 'Ok', problems } },
  annotations: { 'network.veil.io/wg-pub-key': key }, encryptionKey: 255,
});

test('own node, peers, publish only on change, re-assert after a clobber, liveness apart from peers', async () => {
  const dir = join(root, 'reg');
  const reg = new EmbeddedRegistry(dir);
  await reg.create(node('a', 0));
  await reg.create(node('b', 1, { podGateway: '10.244.1.1' }));
  const bootFile = join(root, 'boot_id');
  writeFileSync(bootFile, 'D1C8A8E9-1111-2222-3333-444455556666\n');
  const src = new RegistryNodeSource(new EmbeddedRegistry(dir), 'a', bootFile);

  const self = await src.self();
  assert.deepEqual(self, { name: 'a', internalIPs: ['172.18.0.2'], podCIDRs: ['10.244.0.0/24'], podGateway: '10.244.0.1',
    underlayInterface: 'eth0', underlayMtu: 1500, bootID: 'd1c8a8e9-1111-2222-3333-444455556666' });

  const bAlive = await reg.holdLease('b', 15, { pid: 2 });
  let changes = 0;
  await src.watchPeers(() => { changes++; });
  assert.deepEqual(src.peers().map((p) => [p.name, p.internalIP, p.podCIDRs, p.podGateway]), [['b', '172.18.0.3', '10.244.1.0/24', '10.244.1.1']], 'one pod CIDR is the string itself');
  const afterList = changes;

  // own fields: one write, then none while they stay the same
  const rev0 = await reg.revision();
  await src.publish(fields('K1'));
  await src.publish(fields('K1'));
  assert.equal(await reg.revision(), rev0 + 1, 'the same fields are written once');
  const a = (await reg.get('Node', 'a'))!;
  assert.equal(a.metadata.annotations?.['network.veil.io/wg-pub-key'], 'K1');
  assert.deepEqual(a.spec?.['encryption'], { key: 255 });
  assert.equal(withOwnFields(a, fields('K1')), undefined, 'nothing to change: mutate leaves the object alone');

  // another agent's liveness and health are no peer change; its published key is
  const lease = await reg.holdLease('b', 0.3, { pid: 2 });
  await reg.mutate('Node', 'b', (cur) => cur && { ...cur, status: { agent: { ready: true, health: { state: 'Degraded', problems: ['x'] } } } });
  await sleep(700); // two lease renewals and the health write delivered by the watch
  assert.equal(changes, afterList, 'no reconcile for a heartbeat or a health report');
  await reg.mutate('Node', 'b', (cur) => cur && { ...cur, metadata: { ...cur.metadata, annotations: { 'network.veil.io/wg-pub-key': 'KB' } } });
  await waitFor('the peer change', () => changes === afterList + 1, 5000, { everyMs: 20 });
  assert.equal(src.peers()[0]!.annotations['network.veil.io/wg-pub-key'], 'KB');
  await bAlive.release();
  await lease.release();
  // b's agent is gone: b leaves the peers; back when a lease of b lives again
  const leaseGone = Date.now();
  await waitFor('b gone with its lease', () => src.peers().length === 0, LEASE_GRACE_MS + 5000, { everyMs: 20 });
  assert.ok(Date.now() - leaseGone >= LEASE_GRACE_MS - 100, 'a peer outlives its lease by the grace (a lapse after a registry outage is bridged)');
  const bBack = await reg.holdLease('b', 15, { pid: 3 });
  await waitFor('b back with a new lease', () => src.peers().map((p) => p.name).join() === 'b', 5000, { everyMs: 20 });

  // someone rewrites our fields (e.g. an old uninstall): the source writes them again
  await reg.mutate('Node', 'a', (cur) => cur && { ...cur, metadata: { ...cur.metadata, annotations: {} } });
  await waitFor('the own fields re-asserted', async () => (await reg.get('Node', 'a'))?.metadata.annotations?.['network.veil.io/wg-pub-key'] === 'K1', 5000, { everyMs: 20 });

  // liveness: the lease names the node and carries the holder's fields
  const mine = await src.holdLiveness(15, { pid: 7 }, () => undefined);
  assert.deepEqual({ ...(await reg.get('Lease', 'a'))!.spec, renewTime: undefined }, { node: 'a', pid: 7, renewTime: undefined, ttlSeconds: 15 });
  await mine.release();
  assert.equal(await reg.get('Lease', 'a'), undefined);

  // a node without addresses is no peer; an unusable own node says why
  await reg.create({ kind: 'Node', metadata: { name: 'c' }, spec: {}, status: {} });
  const cAlive = await reg.holdLease('c', 15, { pid: 4 });
  await sleep(300);
  assert.deepEqual(src.peers().map((p) => p.name), ['b']);
  const c = new RegistryNodeSource(new EmbeddedRegistry(dir), 'c', bootFile);
  await assert.rejects(c.self(), /node 'c' in the registry is unusable: no internal IP/);
  c.close();
  await bBack.release();
  await cAlive.release();
  src.close();
  reg.close();
});

test('one event re-decides that node only, and the peers equal a decision over every node from scratch; an unchanged peer keeps its object', { timeout: 120_000 }, async () => {
  const { admitPeers } = await import('../../src/agent/peer-admission.js');
  const dir = join(root, 'reg-incremental');
  const reg = new EmbeddedRegistry(dir);
  await reg.create(node('self', 0));
  const src = new RegistryNodeSource(new EmbeddedRegistry(dir), 'self', bootIDFile());
  await src.self();
  await src.watchPeers(() => undefined);
  /** The old rule, over every node: live ones oldest first, each against this node and the ones admitted before it. */
  const fromScratch = async (): Promise<string> => {
    const live = new Set((await reg.list('Lease')).map((l) => l.metadata.name));
    const nodes = (await reg.list('Node')).filter((n) => n.metadata.name !== 'self' && live.has(n.metadata.name))
      .sort((x, y) => String(x.metadata.creationTimestamp).localeCompare(String(y.metadata.creationTimestamp)) || x.metadata.name.localeCompare(y.metadata.name));
    const claims = nodes.map((n) => ({ name: n.metadata.name, internalIPs: [String(n.spec?.['internalIP'])], podCIDRs: [String(n.spec?.['podCIDR'])], key: n.metadata.annotations?.['k'] }));
    const { admitted } = admitPeers({ name: 'self', internalIPs: ['172.18.0.2'], podCIDRs: ['10.244.0.0/24'] }, claims);
    return JSON.stringify(admitted.map((c) => [c.name, c.podCIDRs[0], c.key]));
  };
  const seen = () => JSON.stringify(src.peers().map((p) => [p.name, listOf(p.podCIDRs)[0], p.annotations['k']]));
  let seed = 12345;
  const rand = (n: number) => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
  const leases = new Map<string, Awaited<ReturnType<typeof reg.holdLease>>>();
  for (let step = 0; step < 40; step++) {
    const name = `n${rand(8)}`;
    const exists = await reg.get('Node', name);
    const what = rand(5);
    if (!exists || what === 0) {
      // created, or its pod CIDR moved: it may now collide with another node (or this node's)
      const obj = node(name, 1 + rand(6));
      if (exists) await reg.mutate('Node', name, (cur) => cur && { ...cur, spec: obj.spec });
      else await reg.create(obj);
      if (!leases.has(name)) leases.set(name, await reg.holdLease(name, 30, {}));
    } else if (what === 1) {
      await reg.mutate('Node', name, (cur) => cur && { ...cur, metadata: { ...cur.metadata, annotations: { k: `v${step}` } } });
    } else if (what === 2) {
      await reg.delete('Node', name);
    } else if (what === 3 && leases.has(name) && rand(2) === 0) {
      await leases.get(name)!.release(); // its agent is gone: it leaves after the grace
      leases.delete(name);
    } else {
      // status only (health, a heartbeat): no peer change, the same object
      const before = src.peers().find((p) => p.name === name);
      await reg.mutate('Node', name, (cur) => cur && { ...cur, status: { agent: { ready: true, health: { state: 'Ok', problems: [`s${step}`] }, bootID: cur.status?.['agent'] ? (cur.status['agent'] as { bootID?: string }).bootID : undefined } } });
      await sleep(50);
      if (before) assert.equal(src.peers().find((p) => p.name === name), before, 'a status-only write leaves the peer object as it was');
    }
    const want = await fromScratch();
    await waitFor(`step ${step}: peers as decided from scratch ${want}`, async () => seen() === want || seen() === await fromScratch(), LEASE_GRACE_MS + 10_000, { everyMs: 20 });
  }
  for (const l of leases.values()) await l.release();
  src.close();
  reg.close();
});

test('a relist answered before a deletion the watch delivered brings neither the lease nor the node back', { timeout: 60_000 }, async () => {
  const dir = join(root, 'reg-stale-list');
  const reg = new EmbeddedRegistry(dir);
  await reg.create(node('self', 0));
  await reg.create(node('b', 1));
  await reg.create(node('c', 2));
  const leaseB = await reg.holdLease('b', 30, {});
  const leaseC = await reg.holdLease('c', 30, {});
  // The source's registry answers lists from a snapshot taken before b's lease and c's node go.
  const stale = { Lease: await reg.list('Lease'), Node: await reg.list('Node') };
  const view = new EmbeddedRegistry(dir);
  let useStale = false;
  const list = view.list.bind(view);
  view.list = (async (kind: 'Lease' | 'Node') => (useStale ? stale[kind] : list(kind))) as typeof view.list;
  // As etcd's watch does: a deletion carries the object as last seen (its version, not the deletion's).
  const seenRv = new Map<string, number | undefined>();
  for (const o of [...stale.Lease, ...stale.Node]) seenRv.set(`${o.kind}/${o.metadata.name}`, o.metadata.resourceVersion);
  const watch = view.watch.bind(view);
  view.watch = ((kind, rev, cb) => watch(kind, rev, (ev) => {
    const k = `${ev.object.kind}/${ev.object.metadata.name}`;
    if (ev.type === 'DELETED') cb({ ...ev, object: { ...ev.object, metadata: { ...ev.object.metadata, resourceVersion: seenRv.get(k) } } });
    else { seenRv.set(k, ev.object.metadata.resourceVersion); cb(ev); }
  })) as typeof view.watch;
  const src = new RegistryNodeSource(view, 'self', bootIDFile());
  try {
    await src.self();
    await src.watchPeers(() => undefined);
    assert.deepEqual(src.peers().map((p) => p.name), ['b', 'c']);
    await leaseB.release();
    await reg.delete('Node', 'c');
    await waitFor('c gone (its node deleted)', () => !src.peers().some((p) => p.name === 'c'), 5000, { everyMs: 20 });
    useStale = true;
    await (src as unknown as { relist(): Promise<void> }).relist(); // the safety net, with the old answer
    assert.ok(!src.peers().some((p) => p.name === 'c'), 'the deleted node stays deleted');
    await waitFor('b gone after its lease and the grace', () => src.peers().length === 0, LEASE_GRACE_MS + 5000, { everyMs: 20 });
    await (src as unknown as { relist(): Promise<void> }).relist();
    assert.deepEqual(src.peers(), [], 'the lease deleted stays deleted');
  } finally {
    await leaseC.release();
    src.close();
  }
  reg.close();
});

test("peers' slots: a node keeps its own, one gone gives it back to the next; boot ids only for a follower that reads them", { timeout: 60_000 }, async () => {
  for (const bootIDs of [true, false]) {
    const dir = join(root, `reg-slots-${bootIDs}`);
    const reg = new EmbeddedRegistry(dir);
    await reg.create(node('self', 0));
    const withBoot = (name: string, i: number, boot: string): RegistryObject => ({ ...node(name, i), status: { agent: { ready: true, bootID: boot } } });
    await reg.create(withBoot('b', 1, 'boot-b1'));
    await reg.create(withBoot('c', 2, 'boot-c1'));
    const leases = [await reg.holdLease('b', 30, {}), await reg.holdLease('c', 30, {})];
    const src = new RegistryNodeSource(new EmbeddedRegistry(dir), 'self', bootIDFile());
    await src.self();
    await src.watchPeers(() => undefined, { bootIDs });
    const peer = (name: string) => src.peers().find((p) => p.name === name);
    assert.deepEqual(src.peers().map((p) => p.bootID), bootIDs ? ['boot-b1', 'boot-c1'] : [undefined, undefined], 'boot ids as asked');
    const slots = src.peers().map((p) => p.slot);
    assert.equal(new Set(slots).size, 2, 'two peers, two slots');
    // b reboots (a new boot id), then c's node object goes: once c is gone, b's rewrite was seen (the watch delivers in order).
    const b = peer('b')!, cSlot = peer('c')!.slot;
    await reg.mutate('Node', 'b', (cur) => cur && { ...cur, status: { agent: { ready: true, bootID: 'boot-b2' } } });
    await reg.delete('Node', 'c');
    await waitFor('c gone', () => peer('c') === undefined);
    assert.equal(peer('b') === b, !bootIDs, bootIDs ? 'a reboot is a new peer' : 'a reboot alone changes nothing the follower reads');
    assert.equal(peer('b')!.bootID, bootIDs ? 'boot-b2' : undefined);
    assert.equal(peer('b')!.slot, b.slot, 'b keeps its slot');
    // d comes: it is handed the slot c gave back.
    await reg.create(withBoot('d', 3, 'boot-d1'));
    leases.push(await reg.holdLease('d', 30, {}));
    await waitFor('d a peer', () => peer('d') !== undefined);
    assert.equal(peer('d')!.slot, cSlot, "the slot c gave back is d's");
    assert.notEqual(peer('d')!.slot, peer('b')!.slot);
    src.close();
    for (const l of leases) await l.release();
  }
});
