// The registry contract on a real etcd (started here): the same behaviour the embedded registry
// guarantees, with several OS processes writing, reading and watching at once; garbage values;
// compaction.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { EtcdWatch } from '../../src/control/etcd/etcd-watch.js';
import type { WatchEvent } from '../../src/control/registry.js';
import type { EtcdRegistry } from '../../src/control/etcd/etcd-registry.js';
import { isVeilError } from '../../src/util/errors.js';
import { etcd3 } from '../../src/control/etcd/etcd3-lib.js';
import { MAX_OBJECT_BYTES } from '../../src/control/etcd/object-codec.js';
import { etcdChild, etcdForTests, regOptions, waitFor } from './etcd-helpers.js';

const t = etcdForTests({ members: 1 });
let seq = 0;
/** A registry on a cluster name of its own, so tests do not see each other's objects. */
const freshRegistry = (name = `c${seq++}`, extra = {}) => t.registry(name, extra);

const INCREMENT = `for (let i = 0; i < N; i++) {
  await reg.mutate('ConfigMap', 'counter', (cur) => {
    const n = Number(cur?.data?.n ?? 0) + 1;
    return { kind: 'ConfigMap', metadata: { name: 'counter' }, data: { n: String(n), by: String(process.pid) } };
  });
}`;

test('concurrent mutate from 4 processes loses no update', async () => {
  const reg = freshRegistry();
  const seen: WatchEvent[] = [];
  const w = reg.watch('ConfigMap', await reg.revision(), (ev) => seen.push(ev));
  const procs = 4, n = 40;
  const results = await Promise.all(Array.from({ length: procs }, () => etcdChild(regOptions(t.etcd, reg.cluster), `const N = ${n};\n${INCREMENT}`)));
  for (const r of results) assert.equal(r.code, 0, r.stderr);
  const obj = await reg.get('ConfigMap', 'counter');
  assert.equal(obj?.data?.['n'], String(procs * n));
  await waitFor(() => seen.length === procs * n, 10_000, () => `${seen.length}/${procs * n} watch events`);
  w.stop();
  // every value 1..160 exactly once, in revision order: no lost and no doubled increment
  assert.deepEqual(seen.map((e) => Number(e.object.data!['n'])), Array.from({ length: procs * n }, (_, i) => i + 1));
  assert.equal(new Set(seen.map((e) => e.object.data!['by'])).size, procs, 'the writes interleaved between processes');
  assert.equal(obj?.metadata.resourceVersion, seen.at(-1)!.revision);
});

test('a watcher sees every change in revision order while other processes write', async () => {
  const reg = freshRegistry();
  const seen: WatchEvent[] = [];
  const total = 3 * 30 + 3;
  const w = reg.watch('ConfigMap', 0, (ev) => seen.push(ev));
  const writers = [0, 1, 2].map((i) => etcdChild(regOptions(t.etcd, reg.cluster), `await reg.create({ kind: 'ConfigMap', metadata: { name: 'c${i}' }, data: { n: '0' } });
for (let i = 0; i < 30; i++) await reg.mutate('ConfigMap', 'c${i}', (cur) => ({ ...cur, data: { n: String(Number(cur.data.n) + 1) } }));`));
  for (const r of await Promise.all(writers)) assert.equal(r.code, 0, r.stderr);
  await waitFor(() => seen.length >= total, 10_000, () => `${seen.length}/${total} events`);
  await new Promise((r) => setTimeout(r, 100));
  w.stop();
  assert.equal(seen.length, total, 'no event twice');
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i]!.revision > seen[i - 1]!.revision, 'strictly increasing');
  for (const name of ['c0', 'c1', 'c2']) {
    const mine = seen.filter((e) => e.object.metadata.name === name);
    assert.equal(mine[0]!.type, 'ADDED');
    assert.ok(mine.slice(1).every((e) => e.type === 'MODIFIED'));
    assert.deepEqual(mine.map((e) => Number(e.object.data!['n'])), Array.from({ length: 31 }, (_, i) => i));
    for (const e of mine) assert.equal(e.object.metadata.resourceVersion, e.revision);
  }
  // a watcher that starts later from a revision gets exactly what came after it
  const from = seen.at(-6)!.revision;
  const later: number[] = [];
  const w2 = reg.watch(undefined, from, (ev) => later.push(ev.revision));
  await waitFor(() => later.length >= 5, 5000, () => `${later.length}/5 later events`);
  await new Promise((r) => setTimeout(r, 100));
  w2.stop();
  assert.deepEqual(later, seen.slice(-5).map((e) => e.revision));
});

test('a watcher filtered by kind, and deletions', async () => {
  const reg = freshRegistry();
  const got: string[] = [];
  const start = await reg.revision();
  const w = reg.watch('Pod', start, (ev) => got.push(`${ev.type} ${ev.object.metadata.name} ${ev.revision - start}`));
  await reg.create({ kind: 'Node', metadata: { name: 'n1' } });
  await reg.create({ kind: 'Pod', metadata: { name: 'p1' }, spec: { node: 'n1' } });
  assert.equal(await reg.delete('Pod', 'p1'), true);
  assert.equal(await reg.delete('Pod', 'p1'), false);
  await waitFor(() => got.length >= 2, 5000, () => got.join(', '));
  await new Promise((r) => setTimeout(r, 100));
  w.stop();
  assert.deepEqual(got, ['ADDED p1 2', 'DELETED p1 3']);
  assert.deepEqual(await reg.list('Pod'), []);
  assert.equal((await reg.list('Node')).length, 1);
  // keys really are veil/<cluster>/<plural>/<name>
  assert.match(await t.etcd.etcdctl(['get', '--prefix', '--keys-only', `veil/${reg.cluster}/`]), new RegExp(`^veil/${reg.cluster}/nodes/n1$`, 'm'));
});

test('update is compare-and-swap on resourceVersion (etcd mod_revision)', async () => {
  const reg = freshRegistry();
  const a = await reg.create({ kind: 'Secret', metadata: { name: 's' }, data: { k: 'MQ==' } });
  await assert.rejects(reg.create({ kind: 'Secret', metadata: { name: 's' } }), (e) => isVeilError(e) && e.code === 'ALREADY_EXISTS');
  const b = await reg.update({ ...a, data: { k: 'Mg==' } });
  assert.equal(b.metadata.resourceVersion, a.metadata.resourceVersion! + 1);
  assert.equal(b.metadata.creationTimestamp, a.metadata.creationTimestamp);
  await assert.rejects(reg.update({ ...a, data: { k: 'Mw==' } }), (e) => isVeilError(e) && e.code === 'CONFLICT');
  await assert.rejects(reg.update({ kind: 'Secret', metadata: { name: 'nope', resourceVersion: 1 } }), (e) => isVeilError(e) && e.code === 'NOT_FOUND');
  await assert.rejects(reg.get('Secret', '../etc'), (e) => isVeilError(e) && e.code === 'INVALID_NAME');
  const got = await reg.get('Secret', 's');
  assert.equal(got?.data?.['k'], 'Mg==');
  assert.equal(got?.metadata.resourceVersion, b.metadata.resourceVersion);
  assert.equal(await reg.revision(), b.metadata.resourceVersion);
  // the stored value carries no resourceVersion of its own: mod_revision is the only truth
  assert.doesNotMatch(await t.etcd.etcdctl(['get', '--print-value-only', `veil/${reg.cluster}/secrets/s`]), /resourceVersion/);
});

test('garbage at a node key is skipped and reported; list and watch keep going', async () => {
  const invalid: string[] = [];
  const reg = freshRegistry(undefined, { onInvalid: (key: string, reason: string) => invalid.push(`${key}: ${reason}`) });
  const c = reg.cluster;
  const seen: string[] = [];
  const w = reg.watch('Node', 0, (ev) => seen.push(`${ev.type} ${ev.object.metadata.name}`));
  await reg.create({ kind: 'Node', metadata: { name: 'good1' } });
  await t.etcd.etcdctl(['put', `veil/${c}/nodes/bad`, '{"kind":"Node","metadata":{"na']);
  await t.etcd.etcdctl(['put', `veil/${c}/nodes/liar`, JSON.stringify({ kind: 'Node', metadata: { name: 'good1' } })]);
  await reg.create({ kind: 'Node', metadata: { name: 'good2' } });
  await waitFor(() => seen.length >= 2, 5000, () => seen.join(', '));
  assert.deepEqual(seen, ['ADDED good1', 'ADDED good2'], 'the watch skipped the garbage and went on');
  assert.ok(invalid.some((l) => l.startsWith(`veil/${c}/nodes/bad: not JSON`)), invalid.join('\n'));
  assert.ok(invalid.some((l) => l.startsWith(`veil/${c}/nodes/liar: metadata.name is "good1"`)), invalid.join('\n'));
  assert.deepEqual((await reg.list('Node')).map((o) => o.metadata.name), ['good1', 'good2']);
  await assert.rejects(reg.get('Node', 'bad'), (e) => isVeilError(e) && e.code === 'INVALID_OBJECT' && e.message.includes(`veil/${c}/nodes/bad`));
  assert.deepEqual(reg.invalidObjects().map((o) => o.key).sort(), [`veil/${c}/nodes/bad`, `veil/${c}/nodes/liar`]);
  // a writer that owns the name repairs it: mutate replaces the garbage (CAS on its revision)
  await reg.mutate('Node', 'bad', (cur) => { assert.equal(cur, undefined); return { kind: 'Node', metadata: { name: 'bad' }, spec: { fixed: true } }; });
  await reg.delete('Node', 'liar');
  await waitFor(() => seen.length >= 3, 5000, () => seen.join(', '));
  w.stop();
  assert.deepEqual(seen, ['ADDED good1', 'ADDED good2', 'ADDED bad']);
  assert.deepEqual(reg.invalidObjects(), []);
});

test('oversized values are refused by their size, unread, and named; a list page they fill (over the default 4 MiB of gRPC) still returns the rest; etcd refuses 60 MB itself', async () => {
  const reg = freshRegistry();
  const c = reg.cluster;
  const raw = new (etcd3().Etcd3)({ hosts: t.etcd.endpoints });
  try {
    // four values under etcd's 1.5 MiB request limit, together over what one gRPC answer may carry
    for (let i = 0; i < 4; i++) {
      await raw.put(`veil/${c}/nodes/big${i}`).value(JSON.stringify({ kind: 'Node', metadata: { name: `big${i}`, annotations: { x: 'a'.repeat(1_400_000) } } }));
    }
    await reg.create({ kind: 'Node', metadata: { name: 'good' } });
    assert.deepEqual((await reg.list('Node')).map((o) => o.metadata.name), ['good']);
    const invalid = reg.invalidObjects();
    assert.deepEqual(invalid.map((o) => o.key).sort(), [0, 1, 2, 3].map((i) => `veil/${c}/nodes/big${i}`));
    for (const o of invalid) assert.match(o.reason, new RegExp(`^\\d+ bytes, more than the ${MAX_OBJECT_BYTES} a veil object may hold \\(not read\\)$`));
    await assert.rejects(reg.get('Node', 'big0'), (e) => isVeilError(e) && e.code === 'INVALID_OBJECT' && /bytes, more than/.test(e.message));
    await assert.rejects(raw.put(`veil/${c}/nodes/huge`).value(Buffer.alloc(60_000_000, 0x61)).exec(), /received message larger than max|request is too large/);
  } finally {
    raw.close();
  }
});

test('a watch from a revision that was already compacted relists instead of failing', async () => {
  const reg = freshRegistry();
  const from = await reg.revision();
  for (let i = 0; i < 4; i++) await reg.create({ kind: 'Pod', metadata: { name: `p${i}` }, spec: { n: 0 } });
  await reg.mutate('Pod', 'p0', (cur) => ({ ...cur!, spec: { n: 1 } }));
  await reg.delete('Pod', 'p3');
  await t.etcd.etcdctl(['compact', String(await reg.revision())]);
  const got: WatchEvent[] = [];
  const w = reg.watch('Pod', from, (ev) => got.push(ev)) as EtcdWatch;
  await waitFor(() => w.relists === 1 && got.length >= 3, 10_000, () => `relists=${w.relists}, ${got.length} events`);
  assert.deepEqual(got.map((e) => `${e.type} ${e.object.metadata.name}`).sort(), ['ADDED p0', 'ADDED p1', 'ADDED p2']);
  assert.deepEqual(got.find((e) => e.object.metadata.name === 'p0')!.object.spec, { n: 1 });
  // and it goes on from the list's revision
  await reg.create({ kind: 'Pod', metadata: { name: 'p4' } });
  await waitFor(() => got.length === 4, 5000, () => 'the event after the relist');
  w.stop();
  assert.equal(got[3]!.object.metadata.name, 'p4');
});

test('a watch given what its caller holds relists against that after a compaction: what changed, what went, nothing else', async () => {
  const reg = freshRegistry();
  const held = new Map<string, number>();
  for (let i = 0; i < 4; i++) {
    const o = await reg.create({ kind: 'Pod', metadata: { name: `p${i}` }, spec: { n: 0 } });
    held.set(o.metadata.name, o.metadata.resourceVersion!);
  }
  const from = await reg.revision();
  held.delete('p2'); // the caller does not hold it (its list missed it)
  await reg.mutate('Pod', 'p0', (cur) => ({ ...cur!, spec: { n: 1 } }));
  await reg.delete('Pod', 'p3');
  const p3 = held.get('p3');
  await t.etcd.etcdctl(['compact', String(await reg.revision())]);
  const got: WatchEvent[] = [];
  const w = reg.watch('Pod', from, (ev) => {
    got.push(ev);
    if (ev.type === 'DELETED') held.delete(ev.object.metadata.name); else held.set(ev.object.metadata.name, ev.object.metadata.resourceVersion!);
  }, { version: (name) => held.get(name), names: () => held.keys() }) as EtcdWatch;
  await waitFor(() => w.relists === 1 && got.length >= 3, 10_000, () => `relists=${w.relists}, ${got.length} events`);
  assert.deepEqual(got.map((e) => `${e.type} ${e.object.metadata.name}`).sort(), ['ADDED p2', 'DELETED p3', 'MODIFIED p0'], 'p1 is held as it is: no event');
  assert.equal(got.find((e) => e.type === 'DELETED')!.object.metadata.resourceVersion, p3, 'the deletion names the version the caller held');
  // and it goes on from the list's revision, telling ADDED from MODIFIED by what the caller holds
  await reg.create({ kind: 'Pod', metadata: { name: 'p4' } });
  await reg.mutate('Pod', 'p1', (cur) => ({ ...cur!, spec: { n: 2 } }));
  await waitFor(() => got.length === 5, 5000, () => 'the events after the relist');
  w.stop();
  assert.deepEqual(got.slice(3).map((e) => `${e.type} ${e.object.metadata.name}`), ['ADDED p4', 'MODIFIED p1']);
});

test('the names and versions of a kind, listed in pages, are what a list reads, as of one revision', async () => {
  const reg = freshRegistry(undefined, { keysPage: 3 }); // 7 nodes: three pages, the last one short
  const node = (name: string) => ({ kind: 'Node' as const, metadata: { name }, spec: { internalIP: '172.18.0.2', podCIDR: '10.244.1.0/24' } });
  for (const name of ['n1', 'n2', 'n3', 'n4', 'n5', 'n6', 'n7', 'n8']) await reg.create(node(name));
  await reg.mutate('Node', 'n2', (cur) => cur && { ...cur, metadata: { ...cur.metadata, annotations: { moved: 'yes' } } });
  await reg.delete('Node', 'n5');
  await reg.create({ kind: 'ConfigMap', metadata: { name: 'n9' }, data: {} }); // another kind: not listed
  const all = await reg.changedSince!('Node', undefined);
  assert.equal((reg as EtcdRegistry).listsNamesUndecoded, true, 'the listing reads etcd\'s answers undecoded: after an etcd3 upgrade, adapt rawRangeInstalled to it');
  const listed = (await reg.list('Node')).map((o) => [o.metadata.name, o.metadata.resourceVersion]);
  assert.deepEqual([...all.versions], listed, 'every name once, in key order, with its mod_revision');
  assert.equal(all.count, 7);
  assert.equal(all.revision, await reg.revision());
  // what changed since that revision: the one node written after it, and the count of all
  await reg.mutate('Node', 'n7', (cur) => cur && { ...cur, metadata: { ...cur.metadata, annotations: { moved: 'later' } } });
  const news = await reg.changedSince!('Node', all.revision);
  assert.deepEqual([...news.versions], [['n7', (await reg.get('Node', 'n7'))!.metadata.resourceVersion]]);
  assert.equal(news.count, 7);
  reg.close();
});
