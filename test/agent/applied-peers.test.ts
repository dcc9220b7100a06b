// AppliedPeers: what a pass sends the datapath, from the specs by the mode's slots. Applied as the
// engines apply an update (removals first, then upserts), pass after pass, the datapath must hold
// exactly the pass's specs, and the observer (the tunnel's ESP digest) must count exactly them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AppliedPeers } from '../../src/agent/applied-peers.js';

interface Spec { id: string; data: number }

/** A datapath that applies updates as the engines do: by identity, removals first. */
function datapath() {
  const held = new Map<string, Spec>();
  return {
    held,
    apply({ upsert, remove }: { upsert: Spec[]; remove: string[] }) {
      for (const id of remove) held.delete(id);
      for (const s of upsert) held.set(s.id, s);
    },
  };
}

/** The observer's count of each spec it was told came and went (what a sum digest holds). */
function counter() {
  const count = new Map<string, number>();
  const key = (s: Spec) => `${s.id}=${s.data}`;
  const move = (s: Spec, by: number) => {
    const n = (count.get(key(s)) ?? 0) + by;
    if (n) count.set(key(s), n); else count.delete(key(s));
  };
  return { count, add: (s: Spec) => move(s, 1), remove: (s: Spec) => move(s, -1), key };
}

const same = (s: Spec) => s;

test('an unchanged spec, or a new object equal to it, sends nothing; a changed one is upserted; a gone one removed', () => {
  const a = new AppliedPeers<Spec>((s) => s.id);
  const s0 = { id: 'x', data: 1 }, s1 = { id: 'y', data: 1 };
  const slots = new Map([[s0, 0], [s1, 1]]);
  assert.deepEqual(a.update([s0, s1], (s) => slots.get(s)!, same, 1), { upsert: [s0, s1], remove: [] });
  assert.deepEqual(a.update([s0, s1], (s) => slots.get(s)!, same, 2), { upsert: [], remove: [] });
  const s0again = { id: 'x', data: 1 }, s0changed = { id: 'x', data: 2 };
  assert.deepEqual(a.update([s0again, s1], (s) => (s === s1 ? 1 : 0), same, 3), { upsert: [], remove: [] });
  assert.deepEqual(a.update([s0changed, s1], (s) => (s === s1 ? 1 : 0), same, 4), { upsert: [s0changed], remove: [] });
  assert.deepEqual(a.update([s1], () => 1, same, 5), { upsert: [], remove: ['x'] });
});

test("a slot's peer under a new identity: the old one removed; an identity moved to another slot in the same pass stays in the datapath", () => {
  const a = new AppliedPeers<Spec>((s) => s.id);
  const d = datapath();
  const p = { id: 'key1', data: 1 }, q = { id: 'key2', data: 1 };
  d.apply(a.update([p, q], (s) => (s === p ? 0 : 1), same, 1));
  const pRotated = { id: 'key3', data: 1 };
  const u = a.update([pRotated, q], (s) => (s === q ? 1 : 0), same, 2);
  assert.deepEqual(u, { upsert: [pRotated], remove: ['key1'] });
  d.apply(u);
  // q's peer goes, and a new peer (slot 2) comes with q's identity: removed, then upserted.
  const r = { id: 'key2', data: 9 };
  d.apply(a.update([pRotated, r], (s) => (s === r ? 2 : 0), same, 3));
  assert.deepEqual([...d.held.values()].sort((x, y) => x.id.localeCompare(y.id)), [r, pRotated]);
});

test('random passes: the datapath holds exactly each pass\'s specs, the observer counts exactly them, and a pass that changes nothing sends nothing', () => {
  let seed = 5;
  const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) >>> 0; return seed % n; };
  const a = new AppliedPeers<Spec>((s) => s.id);
  const d = datapath(), c = counter();
  // The mode's side: peer name -> slot (freed slots reused), each peer's current spec.
  const slotOfName = new Map<string, number>(), free: number[] = [];
  let nextSlot = 0;
  let current = new Map<string, Spec>();
  let passNo = 0;
  for (let round = 1; round <= 300; round++) {
    const pass = ++passNo;
    const next = new Map<string, Spec>();
    const ids = new Set<string>();
    for (const [name, s] of current) {
      if (rnd(10) === 0) continue; // gone
      let spec = s;
      if (rnd(8) === 0) spec = { id: s.id, data: rnd(3) }; // changed (maybe equal: a new object)
      else if (rnd(15) === 0) spec = { id: `id${rnd(60)}`, data: s.data }; // a new identity
      if (ids.has(spec.id)) spec = s; // identities stay unique in a pass (the modes refuse a second holder)
      if (ids.has(spec.id)) continue;
      ids.add(spec.id);
      next.set(name, spec);
    }
    for (let i = rnd(6); i > 0; i--) {
      const name = `n${rnd(80)}`, spec = { id: `id${rnd(60)}`, data: rnd(3) };
      if (next.has(name) || ids.has(spec.id)) continue;
      ids.add(spec.id);
      next.set(name, spec);
    }
    for (const name of current.keys()) if (!next.has(name)) { free.push(slotOfName.get(name)!); slotOfName.delete(name); }
    for (const name of next.keys()) if (!slotOfName.has(name)) slotOfName.set(name, free.pop() ?? nextSlot++);
    const slotOfSpec = new Map([...next].map(([name, s]) => [s, slotOfName.get(name)!]));
    const specs = [...next.values()];
    const u = a.update(specs, (s) => slotOfSpec.get(s)!, same, pass, c);
    d.apply(u);
    assert.deepEqual([...d.held.values()].map(c.key).sort(), specs.map(c.key).sort(), `pass ${pass}: the datapath`);
    assert.deepEqual([...c.count.keys()].sort(), specs.map(c.key).sort(), `pass ${pass}: the observer`);
    assert.ok([...c.count.values()].every((n) => n === 1));
    assert.deepEqual(a.update(specs, (s) => slotOfSpec.get(s)!, same, ++passNo, c), { upsert: [], remove: [] }, 'the same specs again');
    current = next;
  }
});
