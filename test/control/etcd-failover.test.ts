// The etcd registry on a real 3-member etcd while members die: watches resume without missing or
// replaying an event, relist after a compaction they slept through, and calls fail over.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { EtcdRegistry } from '../../src/control/etcd/etcd-registry.js';
import type { EtcdWatch } from '../../src/control/etcd/etcd-watch.js';
import type { WatchEvent } from '../../src/control/registry.js';
import { etcdForTests, waitFor } from './etcd-helpers.js';

const t = etcdForTests({ members: 3 });
let seq = 0;
/** A registry that talks only to the given members. */
const registry = (cluster: string, members: number[]) => t.registry(cluster, { endpoints: members.map((i) => t.etcd.members[i]!.clientUrl) });

/** Writes one Node change through reg; the revision it made. */
async function bump(reg: EtcdRegistry, name: string): Promise<number> {
  const o = await reg.mutate('Node', name, (cur) => ({ kind: 'Node', metadata: { name }, spec: { n: Number(cur?.spec?.['n'] ?? 0) + 1 } }));
  return o!.metadata.resourceVersion!;
}

/**
 * Every member's id (hex) and whether it leads, by client URL. Read from etcdctl's table: JSON would
 * round the 64-bit ids. The table pads each cell to its column's widest (an id with a leading zero
 * digit is one digit shorter), so cells are split and trimmed, not matched with fixed spacing. A
 * member too slow to answer is left out of the table: asked again until all are in it.
 */
async function memberStatus(): Promise<Map<string, { id: string; leader: boolean }>> {
  const members = new Map<string, { id: string; leader: boolean }>();
  let table = '';
  await waitFor(async () => {
    table = await t.etcd.etcdctl(['endpoint', 'status', '-w', 'table']).catch((e: Error) => e.message);
    members.clear();
    for (const line of table.split('\n')) {
      const cells = line.split('|').map((c) => c.trim());
      if (cells.length > 5 && /^https?:\/\//.test(cells[1]!)) members.set(cells[1]!, { id: cells[2]!, leader: cells[5] === 'true' });
    }
    return t.etcd.members.every((m) => members.has(m.clientUrl));
  }, 15_000, () => `every member in etcdctl endpoint status:\n${table}`);
  return members;
}

/** Every member's id (hex) by client URL. */
async function memberIds(): Promise<Map<string, string>> {
  return new Map([...await memberStatus()].map(([url, s]) => [url, s.id]));
}

test('a watch on a member that is killed and restarted resumes without missing or replaying', async () => {
  const c = `f${seq++}`;
  const watcherReg = registry(c, [0]);
  const writer = registry(c, [1, 2]);
  const seen: WatchEvent[] = [];
  const w = watcherReg.watch('Node', await writer.revision(), (ev) => seen.push(ev)) as EtcdWatch;
  const written: number[] = [];
  for (let i = 0; i < 10; i++) written.push(await bump(writer, `n${i % 3}`));
  await waitFor(() => seen.length === 10, 10_000, () => `${seen.length}/10 events before the kill`);
  await t.etcd.kill(0);
  for (let i = 0; i < 10; i++) written.push(await bump(writer, `n${i % 4}`));
  await writer.delete('Node', 'n1');
  written.push(await writer.revision());
  await t.etcd.restart(0);
  for (let i = 0; i < 10; i++) written.push(await bump(writer, `n${i % 2}`));
  await waitFor(() => seen.length >= written.length, 15_000, () => `${seen.length}/${written.length} events after the restart`);
  await new Promise((r) => setTimeout(r, 200));
  w.stop();
  assert.deepEqual(seen.map((e) => e.revision), written, 'every event once, in order');
  assert.equal(seen[20]!.type, 'DELETED');
  assert.equal(w.relists, 0);
});

test('a watch that slept through a compaction on a dead member relists and converges', async () => {
  const c = `f${seq++}`;
  const watcherReg = registry(c, [0]);
  const writer = registry(c, [1, 2]);
  for (let i = 0; i < 6; i++) await writer.create({ kind: 'Node', metadata: { name: `n${i}` }, spec: { n: 0 } });
  const state = new Map<string, WatchEvent>();
  const w = watcherReg.watch('Node', 0, (ev) => state.set(ev.object.metadata.name, ev)) as EtcdWatch;
  await waitFor(() => state.size === 6, 10_000, () => `${state.size}/6 nodes`);
  await t.etcd.kill(0);
  for (let i = 0; i < 6; i++) await bump(writer, `n${i}`);
  for (let i = 0; i < 3; i++) await writer.delete('Node', `n${i}`);
  await writer.create({ kind: 'Node', metadata: { name: 'n9' }, spec: { n: 9 } });
  const top = await writer.revision();
  await t.etcd.etcdctl(['compact', String(top), '--physical'], [t.etcd.members[1]!, t.etcd.members[2]!]);
  await t.etcd.restart(0);
  await waitFor(() => w.relists >= 1 && w.revision >= top, 15_000, () => `relists=${w.relists} revision=${w.revision}/${top}`);
  const live = [...state.values()].filter((e) => e.type !== 'DELETED').map((e) => e.object.metadata.name).sort();
  assert.deepEqual(live, ['n3', 'n4', 'n5', 'n9']);
  for (const n of ['n0', 'n1', 'n2']) assert.equal(state.get(n)!.type, 'DELETED');
  for (const n of ['n3', 'n4', 'n5']) assert.deepEqual([state.get(n)!.type, state.get(n)!.object.spec], ['MODIFIED', { n: 1 }]);
  assert.equal(state.get('n9')!.type, 'ADDED');
  const after = await bump(writer, 'n9');
  await waitFor(() => state.get('n9')!.revision === after, 5000, () => 'the change after the relist');
  w.stop();
});

test('the member a client watches through is SIGKILLed: reads, writes and the watch go on', async () => {
  const c = `f${seq++}`;
  const reg = registry(c, [0, 1, 2]);
  for (const i of [0, 1, 2]) if (!t.etcd.members[i]!.process || t.etcd.members[i]!.process!.exitCode !== null) await t.etcd.restart(i);
  const seen: WatchEvent[] = [];
  const w = reg.watch('Node', await reg.revision(), (ev) => seen.push(ev)) as EtcdWatch;
  const written: number[] = [];
  for (let i = 0; i < 5; i++) written.push(await bump(reg, 'a'));
  await waitFor(() => seen.length === 5 && w.memberId !== '', 10_000, () => `${seen.length}/5 events`);
  const ids = await memberIds();
  const victim = t.etcd.members.findIndex((m) => ids.get(m.clientUrl) === w.memberId);
  assert.ok(victim >= 0, `the watch's member ${w.memberId} is one of ours (${[...ids].join(', ')})`);
  await t.etcd.kill(victim);
  for (let i = 0; i < 15; i++) written.push(await bump(reg, 'a'));
  assert.deepEqual((await reg.get('Node', 'a'))!.spec, { n: 20 });
  assert.equal((await reg.list('Node')).length, 1);
  await waitFor(() => seen.length >= 20, 15_000, () => `${seen.length}/20 events after the kill`);
  await new Promise((r) => setTimeout(r, 200));
  w.stop();
  assert.deepEqual(seen.map((e) => e.revision), written);
  assert.notEqual(w.memberId, ids.get(t.etcd.members[victim]!.clientUrl), 'the watch moved to another member');
  await t.etcd.restart(victim);
});

test('the member a watch streams from stops answering with its TCP up (SIGSTOP): the watch moves on at once and misses nothing', async () => {
  const c = `f${seq++}`;
  for (const i of [0, 1, 2]) if (!t.etcd.members[i]!.process || t.etcd.members[i]!.process!.exitCode !== null) await t.etcd.restart(i);
  // The watch may use only followers, so that stopping its member leaves the writes undisturbed.
  const status = await memberStatus();
  const followers = [0, 1, 2].filter((i) => !status.get(t.etcd.members[i]!.clientUrl)!.leader);
  // A 250 ms stall deadline: the watch must move because the watchdog saw the silence (its own
  // error says so), not because gRPC's keepalive did (a ping every 10 s, unanswered for 5 s). The
  // deadline is generous: a loaded machine can delay the move, the cause is what is asserted.
  let stoppedAt = 0;
  const errors: string[] = [];
  const onWatchError = (e: Error) => errors.push(`${Date.now() - stoppedAt} ms: ${e.message}`);
  const watcherReg = t.registry(c, { endpoints: followers.map((i) => t.etcd.members[i]!.clientUrl), watchStallMs: 250, onWatchError });
  const seen: WatchEvent[] = [];
  const w = watcherReg.watch('Node', await watcherReg.revision(), (ev) => seen.push(ev)) as EtcdWatch;
  const watchedUrl = () => [...status].find(([, s]) => s.id === w.memberId)?.[0];
  const written: number[] = [];
  const writerAll = registry(c, [0, 1, 2]);
  for (let i = 0; i < 5; i++) written.push(await bump(writerAll, 'a'));
  await waitFor(() => seen.length === 5 && watchedUrl() !== undefined, 10_000, () => `${seen.length}/5 events`);
  const victim = t.etcd.members.findIndex((m) => m.clientUrl === watchedUrl());
  const writer = registry(c, [0, 1, 2].filter((i) => i !== victim));
  const pid = t.etcd.members[victim]!.process!.pid!;
  process.kill(pid, 'SIGSTOP');
  stoppedAt = Date.now();
  errors.length = 0; // only what the watch saw after the member fell silent
  try {
    for (let i = 0; i < 5; i++) written.push(await bump(writer, 'a'));
    const boundMs = 30_000;
    await waitFor(() => seen.length >= 10, Math.max(0, stoppedAt + boundMs - Date.now()), () => `${seen.length}/10 events within ${boundMs} ms of the SIGSTOP (watch errors: ${errors.join('; ')})`);
    console.log(`watch moved on ${Date.now() - stoppedAt} ms after the SIGSTOP (${errors.join('; ')})`);
    assert.ok(errors.some((e) => /progress request|stream was created|no etcd member answered/.test(e)), `the watchdog moved the watch (watch errors: ${errors.join('; ')})`);
  } finally {
    process.kill(pid, 'SIGCONT');
  }
  await new Promise((r) => setTimeout(r, 200));
  w.stop();
  assert.deepEqual(seen.map((e) => e.revision), written, 'every event once, in order');
  assert.notEqual(w.memberId, status.get(t.etcd.members[victim]!.clientUrl)!.id, 'the watch moved to another member');
});

test('a lease held through all three members while one is stopped keeps renewing: its object is never deleted', { timeout: 90_000 }, async () => {
  // A keepalive goes to a member picked at random and fails on a stopped one. A renewal that then
  // waited a whole interval (TTL/3) lapsed after three such in a row: 1 in 27 per TTL here, and the
  // lab's peers dropped a node after an etcd outage. A failed try is tried again at once on a member
  // picked anew, then every half interval: the lease must outlive 8 TTLs with one member down. A TTL
  // of 5 s, not 3: a 3-s lease once lapsed here in a unit run at nice 19 on a machine at load 8 (the
  // file alone passed 5 of 5).
  const c = `f${seq++}`;
  for (const i of [0, 1, 2]) if (!t.etcd.members[i]!.process || t.etcd.members[i]!.process!.exitCode !== null) await t.etcd.restart(i);
  const TTL = 5;
  const holder = registry(c, [0, 1, 2]);
  const watcher = registry(c, [0, 1]);
  const events: string[] = [];
  const w = watcher.watch('Lease', await watcher.revision(), (ev) => events.push(`${ev.type} ${ev.object.metadata.name}`));
  const lease = await holder.holdLease('holder', TTL, {});
  await waitFor(() => events.length === 1, 10_000, () => 'the lease to appear');
  await t.etcd.stop(2);
  try {
    await new Promise((r) => setTimeout(r, 8 * TTL * 1000));
    assert.deepEqual(events, ['ADDED holder'], 'held all along: never deleted (lapsed) and granted again');
    assert.ok(await watcher.get('Lease', 'holder'));
  } finally {
    w.stop();
    await lease.release().catch(() => undefined);
    await t.etcd.restart(2);
  }
});
