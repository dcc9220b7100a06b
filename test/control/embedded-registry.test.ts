// The embedded registry under real concurrency: several OS processes writing, reading and watching
// one store at once, writers killed mid-way, a crashed lock holder.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EmbeddedRegistry, compactEvents } from '../../src/control/embedded-registry.js';
import type { RegistryObject, WatchEvent } from '../../src/control/registry.js';
import { isVeilError } from '../../src/util/errors.js';
import { waitFor } from './etcd-helpers.js';

const MODULE = resolve(fileURLToPath(import.meta.url), '../../../src/control/embedded-registry.js');
const root = mkdtempSync(join(tmpdir(), 'veil-t-reg-'));
after(() => rmSync(root, { recursive: true, force: true }));
let seq = 0;
const freshDir = () => join(root, `store${seq++}`);

/** A child node process running `body` with `reg` (an EmbeddedRegistry on dir) in scope. */
function child(dir: string, body: string): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> & { pid: number } {
  const src = `import { EmbeddedRegistry } from ${JSON.stringify(MODULE)};
const reg = new EmbeddedRegistry(${JSON.stringify(dir)});
${body}
reg.close();`;
  const p = spawn(process.execPath, ['--input-type=module', '-e', src], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  p.stderr.on('data', (d) => { stderr += d; });
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((res) => p.on('exit', (code, signal) => res({ code, signal, stderr })));
  return Object.assign(done, { pid: p.pid! });
}

const INCREMENT = `for (let i = 0; i < N; i++) {
  await reg.mutate('ConfigMap', 'counter', (cur) => {
    const n = Number(cur?.data?.n ?? 0) + 1;
    return { kind: 'ConfigMap', metadata: { name: 'counter' }, data: { n: String(n), by: String(process.pid) } };
  });
}`;

function logEvents(dir: string): { revision: number; type: string; object: RegistryObject }[] {
  return readFileSync(join(dir, 'events.log'), 'utf8').split('\n').filter(Boolean).flatMap((l) => {
    try { return [JSON.parse(l)]; } catch { return []; }
  });
}

test('concurrent mutate from 4 processes loses no update', async () => {
  const dir = freshDir();
  const procs = 4, n = 60;
  const results = await Promise.all(Array.from({ length: procs }, () => child(dir, `const N = ${n};\n${INCREMENT}`)));
  for (const r of results) assert.equal(r.code, 0, r.stderr);
  const reg = new EmbeddedRegistry(dir);
  const obj = await reg.get('ConfigMap', 'counter');
  assert.equal(obj?.data?.['n'], String(procs * n));
  assert.equal(await reg.revision(), procs * n);
  const revs = logEvents(dir).map((e) => e.revision);
  assert.deepEqual(revs, Array.from({ length: procs * n }, (_, i) => i + 1));
  // the writes really interleaved between processes
  const writers = new Set(logEvents(dir).map((e) => e.object.data?.['by']));
  assert.equal(writers.size, procs);
});

test('a watcher sees every change in revision order while other processes write', async () => {
  const dir = freshDir();
  const reg = new EmbeddedRegistry(dir, { pollMs: 50 });
  const seen: WatchEvent[] = [];
  const total = 3 * 40 + 3; // 3 creates + 120 increments
  const done = new Promise<void>((res) => {
    const w = reg.watch('ConfigMap', 0, (ev) => {
      seen.push(ev);
      if (seen.length === total) { w.stop(); res(); }
    });
  });
  const writers = [0, 1, 2].map((i) => child(dir, `await reg.create({ kind: 'ConfigMap', metadata: { name: 'c${i}' }, data: { n: '0' } });
for (let i = 0; i < 40; i++) await reg.mutate('ConfigMap', 'c${i}', (cur) => ({ ...cur, data: { n: String(Number(cur.data.n) + 1) } }));`));
  for (const r of await Promise.all(writers)) assert.equal(r.code, 0, r.stderr);
  await Promise.race([done, new Promise((_, rej) => setTimeout(() => rej(new Error(`watch saw only ${seen.length}/${total}`)), 10_000))]);
  assert.deepEqual(seen.map((e) => e.revision), Array.from({ length: total }, (_, i) => i + 1));
  // per object: ADDED then MODIFIED with n counting up 1..40, no value skipped
  for (const name of ['c0', 'c1', 'c2']) {
    const mine = seen.filter((e) => e.object.metadata.name === name);
    assert.equal(mine[0]!.type, 'ADDED');
    assert.deepEqual(mine.map((e) => Number(e.object.data!['n'])), Array.from({ length: 41 }, (_, i) => i));
    for (const e of mine) assert.equal(e.object.metadata.resourceVersion, e.revision);
  }
  // a watcher that starts later from a revision gets exactly what came after it
  const later: number[] = [];
  await new Promise<void>((res) => {
    const w = reg.watch(undefined, total - 5, (ev) => { later.push(ev.revision); if (later.length === 5) { w.stop(); res(); } });
  });
  assert.deepEqual(later, [total - 4, total - 3, total - 2, total - 1, total]);
  reg.close();
});

test('a watcher filtered by kind and deletions', async () => {
  const reg = new EmbeddedRegistry(freshDir(), { pollMs: 20 });
  const got: string[] = [];
  const w = reg.watch('Pod', 0, (ev) => got.push(`${ev.type} ${ev.object.metadata.name} ${ev.revision}`));
  await reg.create({ kind: 'Node', metadata: { name: 'n1' } });
  await reg.create({ kind: 'Pod', metadata: { name: 'p1' }, spec: { node: 'n1' } });
  assert.equal(await reg.delete('Pod', 'p1'), true);
  assert.equal(await reg.delete('Pod', 'p1'), false);
  await new Promise((r) => setTimeout(r, 150));
  w.stop();
  assert.deepEqual(got, ['ADDED p1 2', 'DELETED p1 3']);
  assert.deepEqual(await reg.list('Pod'), []);
  assert.equal((await reg.list('Node')).length, 1);
});

test('update is compare-and-swap on resourceVersion', async () => {
  const reg = new EmbeddedRegistry(freshDir());
  const a = await reg.create({ kind: 'Secret', metadata: { name: 's' }, data: { k: 'MQ==' } });
  await assert.rejects(reg.create({ kind: 'Secret', metadata: { name: 's' } }), (e) => isVeilError(e) && e.code === 'ALREADY_EXISTS');
  const b = await reg.update({ ...a, data: { k: 'Mg==' } });
  assert.equal(b.metadata.resourceVersion, 2);
  assert.equal(b.metadata.creationTimestamp, a.metadata.creationTimestamp);
  await assert.rejects(reg.update({ ...a, data: { k: 'Mw==' } }), (e) => isVeilError(e) && e.code === 'CONFLICT');
  await assert.rejects(reg.update({ kind: 'Secret', metadata: { name: 'nope', resourceVersion: 1 } }), (e) => isVeilError(e) && e.code === 'NOT_FOUND');
  await assert.rejects(reg.get('Secret', '../etc'), (e) => isVeilError(e) && e.code === 'INVALID_NAME');
  assert.equal((await reg.get('Secret', 's'))?.data?.['k'], 'Mg==');
});

test('readers never see a torn object while writers in other processes rewrite it', async () => {
  const dir = freshDir();
  const reg = new EmbeddedRegistry(dir);
  await reg.create({ kind: 'ConfigMap', metadata: { name: 'big' }, data: { v: 'x'.repeat(150_000) } });
  // writers rewrite until the reader has seen enough of their writes (a fixed count of writes raced a
  // slow reader on a loaded machine: "only 9 reads overlapped"). The lock is not fair: two writers
  // back to back with no pause can starve a third party, hence the pause between writes.
  const stop = join(root, `stop-${seq}`);
  const writers = [0, 1].map((w) => child(dir, `const { existsSync } = await import('node:fs');
for (let i = 0; i < 25 || !existsSync(${JSON.stringify(stop)}); i++) {
  await reg.mutate('ConfigMap', 'big', () => ({ kind: 'ConfigMap', metadata: { name: 'big' }, data: { v: String(i % 10).repeat(150_000 + ${w} * 100_000 + i) } }));
  await new Promise((r) => setTimeout(r, Math.random() * 20)); // like real writers, not a lock held back to back
}`));
  let finished = false;
  void Promise.all(writers).then(() => { finished = true; });
  const versions = new Set<number>(); // each write has its own length: the distinct lengths read are writes overlapped
  let reads = 0;
  const deadline = Date.now() + 120_000;
  while (!finished) {
    const o = await reg.get('ConfigMap', 'big'); // JSON.parse would throw on a torn file
    const v = o!.data!['v']!;
    assert.ok(v.length >= 150_000 && new Set(v).size === 1, 'object content is whole');
    assert.equal((await reg.list('ConfigMap')).length, 1);
    reads++;
    versions.add(v.length);
    if ((versions.size >= 12 && reads >= 30) || Date.now() > deadline) writeFileSync(stop, '');
    await new Promise((r) => setImmediate(r));
  }
  for (const r of await Promise.all(writers)) assert.equal(r.code, 0, r.stderr);
  assert.ok(versions.size >= 12, `the reader saw only ${versions.size} versions in ${reads} reads in 2 minutes`);
});

test('a writer killed mid-way leaves a readable store that others keep writing', async () => {
  const dir = freshDir();
  const victim = child(dir, `for (let i = 0; ; i++) await reg.mutate('ConfigMap', 'k', () => ({ kind: 'ConfigMap', metadata: { name: 'k' }, data: { v: String(i).repeat(50_000) } }));`);
  // killed once it has committed a few writes (a fixed 700 ms was not always past its start on a loaded machine)
  await waitFor(() => { try { return logEvents(dir).length >= 3; } catch { return false; } }, 30_000, () => 'the writer to commit 3 writes');
  process.kill(victim.pid, 'SIGKILL');
  assert.equal((await victim).signal, 'SIGKILL');
  const reg = new EmbeddedRegistry(dir, { lockTimeoutMs: 5000 });
  const before = await reg.revision();
  assert.ok(before > 0);
  const o = await reg.get('ConfigMap', 'k');
  assert.ok(o, 'object readable');
  // it may have died holding the lock, or between commit and object write: the next write copes
  await reg.mutate('ConfigMap', 'k', (cur) => ({ ...cur!, data: { v: 'after' } }));
  assert.equal((await reg.get('ConfigMap', 'k'))?.data?.['v'], 'after');
  assert.equal(await reg.revision(), before + 1);
  const revs = logEvents(dir).map((e) => e.revision);
  assert.deepEqual(revs, Array.from({ length: before + 1 }, (_, i) => i + 1));
});

test('a torn log line, a half-applied commit and a dead lock holder are recovered', async () => {
  const dir = freshDir();
  const reg = new EmbeddedRegistry(dir, { pollMs: 20, lockTimeoutMs: 5000 });
  await reg.create({ kind: 'Node', metadata: { name: 'a' }, spec: { v: 1 } });
  // a commit whose object file was never written (writer killed between the two steps)
  const committed = { revision: 2, type: 'MODIFIED', object: { kind: 'Node', metadata: { name: 'a', resourceVersion: 2 }, spec: { v: 2 } } };
  appendFileSync(join(dir, 'events.log'), JSON.stringify(committed) + '\n');
  // then a torn append, and a lock left by a process that is gone
  appendFileSync(join(dir, 'events.log'), '{"revision":3,"type":"MODIFIED","obj');
  const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
  writeFileSync(join(dir, 'lock'), `${dead} stale-token\n`);
  const seen: number[] = [];
  const w = reg.watch(undefined, 0, (ev) => seen.push(ev.revision));
  const c = await reg.mutate('Node', 'a', (cur) => ({ ...cur!, spec: { v: Number(cur!.spec!['v']) + 1 } }));
  assert.equal(c?.spec?.['v'], 3, 'the committed v=2 was applied before the next write');
  assert.equal(c?.metadata.resourceVersion, 3);
  await new Promise((r) => setTimeout(r, 150));
  w.stop();
  assert.deepEqual(seen, [1, 2, 3]);
});

test('compaction bounds the log and a watcher from revision 0 still reaches the current state', async () => {
  const dir = freshDir();
  const reg = new EmbeddedRegistry(dir, { compactBytes: 20_000, keepRecentEvents: 20, pollMs: 20 });
  for (let i = 0; i < 10; i++) await reg.create({ kind: 'Pod', metadata: { name: `p${i}` }, spec: { n: 0 } });
  for (let r = 1; r <= 60; r++) for (let i = 0; i < 10; i++) await reg.mutate('Pod', `p${i}`, (cur) => ({ ...cur!, spec: { n: r } }));
  for (let i = 0; i < 5; i++) await reg.delete('Pod', `p${i}`);
  assert.ok(statSync(join(dir, 'events.log')).size <= 20_000 + 2_000, 'log stays bounded');
  const final = await reg.revision();
  assert.equal(final, 10 + 600 + 5);
  const state = new Map<string, WatchEvent>();
  let last = 0;
  await new Promise<void>((res) => {
    const w = reg.watch('Pod', 0, (ev) => {
      assert.ok(ev.revision > last, 'strictly increasing');
      last = ev.revision;
      state.set(ev.object.metadata.name, ev);
      if (ev.revision === final) { w.stop(); res(); }
    });
  });
  for (let i = 0; i < 10; i++) {
    const ev = state.get(`p${i}`)!;
    if (i < 5) assert.equal(ev.type, 'DELETED');
    else assert.deepEqual(ev.object.spec, { n: 60 });
  }
  assert.equal(readdirSync(dir).filter((f) => f.endsWith('.tmp')).length, 0);
});

test('compactEvents keeps recent events verbatim and the latest older event per object', () => {
  const ev = (revision: number, name: string, type: 'ADDED' | 'MODIFIED' | 'DELETED' = 'MODIFIED') =>
    ({ revision, type, object: { kind: 'Pod' as const, metadata: { name } } });
  const out = compactEvents([ev(1, 'a', 'ADDED'), ev(2, 'b', 'ADDED'), ev(3, 'a'), ev(4, 'c', 'ADDED'), ev(5, 'c', 'DELETED'), ev(6, 'b'), ev(7, 'a')], 2);
  assert.deepEqual(out.map((e) => `${e.revision}${e.object.metadata.name}`), ['5c', '6b', '7a']);
});

test('a lease stays while its holder renews it, is gone within the TTL once the holder is killed, and release deletes it at once', async () => {
  const dir = freshDir();
  const reg = new EmbeddedRegistry(dir);
  const deleted: string[] = [];
  const w = reg.watch('Lease', 0, (ev) => { if (ev.type === 'DELETED') deleted.push(ev.object.metadata.name); });
  // a holder in another process, killed without releasing: its lease must lapse by itself
  const holder = child(dir, `await reg.holdLease('killed', 1, { pid: process.pid }); await new Promise(() => setInterval(() => {}, 1000));`);
  const mine = await reg.holdLease('alive', 1, { node: 'alive' });
  for (let i = 0; i < 100 && !(await reg.get('Lease', 'killed')); i++) await new Promise((r) => setTimeout(r, 50));
  const held = await reg.get('Lease', 'killed');
  assert.equal(held?.spec?.['pid'], holder.pid);
  assert.equal(held?.spec?.['ttlSeconds'], 1);
  assert.ok(Number.isFinite(Date.parse(String(held?.spec?.['renewTime']))));
  process.kill(holder.pid, 'SIGKILL');
  await holder;
  const killedAt = Date.now();
  while (await reg.get('Lease', 'killed')) await new Promise((r) => setTimeout(r, 50));
  assert.ok(Date.now() - killedAt <= 1000 + 100, `gone within the TTL (${Date.now() - killedAt} ms)`);
  assert.deepEqual((await reg.list('Lease')).map((l) => l.metadata.name), ['alive'], 'the renewed lease outlives its TTL');
  await new Promise((r) => setTimeout(r, 1500));
  assert.ok(await reg.get('Lease', 'alive'), 'still renewed after 1.5 TTLs');
  assert.ok(deleted.includes('killed'), 'a live holder deleted the lapsed lease: watchers saw DELETED');
  await mine.release();
  assert.equal(await reg.get('Lease', 'alive'), undefined, 'release deletes at once');
  w.stop();
  reg.close();
});

test('a lease whose renewals fail for longer than the TTL reports onLost', async () => {
  const dir = freshDir();
  const reg = new EmbeddedRegistry(dir, { lockTimeoutMs: 100 });
  let lost: Error | undefined;
  const h = await reg.holdLease('n', 0.3, {}, (e) => { lost = e; });
  writeFileSync(join(dir, 'lock'), '1 held-by-init\n'); // pid 1 is alive: the lock stays taken
  for (let i = 0; i < 40 && !lost; i++) await new Promise((r) => setTimeout(r, 50));
  assert.match(String(lost?.message), /registry lock .* is held/);
  rmSync(join(dir, 'lock'));
  await h.release();
  reg.close();
});

test('a read right after a watch event returns that version, not the one before (the commit still writing its file)', async () => {
  const dir = freshDir();
  const reg = new EmbeddedRegistry(dir, { pollMs: 20 });
  const v1 = await reg.create({ kind: 'ConfigMap', metadata: { name: 'c' }, data: { n: '1' } });
  // a writer (alive: this process) in the middle of its commit: event appended, object file not yet written
  writeFileSync(join(dir, 'lock'), `${process.pid} mid-commit\n`);
  const v2: RegistryObject = { ...v1, metadata: { ...v1.metadata, resourceVersion: 2 }, data: { n: '2' } };
  appendFileSync(join(dir, 'events.log'), JSON.stringify({ revision: 2, type: 'MODIFIED', object: v2 }) + '\n');
  const read = new Promise<RegistryObject | undefined>((res) => {
    const w = reg.watch('ConfigMap', 1, () => { w.stop(); res(reg.get('ConfigMap', 'c')); });
  });
  await new Promise((r) => setTimeout(r, 300)); // the watcher has the event; its read waits for the commit
  writeFileSync(join(dir, 'objects', 'ConfigMap', 'c.json'), JSON.stringify(v2));
  rmSync(join(dir, 'lock'));
  const got = await read;
  assert.equal(got?.data?.['n'], '2');
  assert.equal(got?.metadata.resourceVersion, 2);
  reg.close();
});
