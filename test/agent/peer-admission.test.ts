// Peer admission: a node object that repeats another node's address or pod CIDR, this node's own,
// or a pod CIDR over node addresses is refused with both names, the first claim kept; and the same
// on a real etcd through the node source, where a forged object and a garbage value never become
// peers and each is named, and a node whose agent is away keeps its claim.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { admitPeers, creationOrder, orderBefore, PeerAdmission, type Claim } from '../../src/agent/peer-admission.js';
import { cidrsOverlap, parseCidr } from '../../src/net/cidr.js';
import { RegistryNodeSource } from '../../src/agent/registry-node-source.js';
import type { RegistryObject } from '../../src/control/registry.js';
import { etcdForTests } from '../control/etcd-helpers.js';

const claim = (name: string, ip: string, cidr: string) => ({ name, internalIPs: [ip], podCIDRs: [cidr] });
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

/** The rule as first written (every candidate against every one admitted before it): the oracle. */
function greedy(self: Claim | undefined, candidates: Claim[]): Set<string> {
  const range = (x: string) => parseCidr(x.includes('/') ? x : `${x}/${x.includes(':') ? 128 : 32}`);
  const parsedOf = (c: Claim) => { try { return [...c.internalIPs, ...c.podCIDRs].map(range); } catch { return undefined; } };
  const holders = self && parsedOf(self) ? [parsedOf(self)!] : [];
  const admitted = new Set<string>();
  for (const c of candidates) {
    const mine = parsedOf(c);
    if (!mine || holders.some((h) => h.some((a) => mine.some((b) => cidrsOverlap(a, b))))) continue;
    holders.push(mine);
    admitted.add(c.name);
  }
  return admitted;
}

/** A small deterministic PRNG, so a failure names its seed and can be replayed. */
function prng(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n) => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x % n; };
}

test('incremental admission equals admitting all nodes oldest first, after every change (random clusters with collisions)', () => {
  for (let seed = 1; seed <= 150; seed++) {
    const r = prng(seed);
    // a small address space so claims collide often: addresses and /24../26 pod CIDRs, now and then a /16 or garbage
    const ip = () => (r(8) === 0 ? `10.9.${r(4)}.${r(8)}` : `172.18.0.${r(12)}`);
    const cidr = () => { const k = r(10); return k === 0 ? '172.18.0.0/16' : k === 1 ? 'nonsense' : k < 5 ? `10.9.${r(4)}.0/24` : `10.9.${r(4)}.${64 * r(4)}/26`; };
    const self = r(3) ? { name: 's', internalIPs: [ip()], podCIDRs: [cidr()] } : undefined;
    const inc = new PeerAdmission<Claim>();
    inc.setSelf(self);
    const live = new Map<string, { c: Claim; order: string }>();
    for (let step = 0; step < 40; step++) {
      const name = `n${r(14)}`;
      if (live.has(name) && r(3) === 0) { live.delete(name); inc.remove(name); }
      else {
        const had = live.get(name)?.c;
        const c = had && r(4) === 0
          ? { name, internalIPs: [...had.internalIPs], podCIDRs: [...had.podCIDRs] } // the same claim, a new object (a reboot)
          : { name, internalIPs: r(3) ? [ip()] : [ip(), ip()], podCIDRs: r(4) ? [cidr()] : [cidr(), cidr()] }; // two claims chain verdicts
        const order = live.get(name)?.order ?? `t${String(step).padStart(3, '0')}`; // an update keeps the creation time
        live.set(name, { c, order });
        inc.upsert(c, order);
      }
      const byAge = [...live.values()].sort((a, b) => (a.order < b.order ? -1 : 1)).map((x) => x.c);
      const want = greedy(self, byAge);
      assert.deepEqual(new Set([...inc.admittedCandidates()].map((c) => c.name)), want, `seed ${seed} step ${step}`);
      assert.equal(inc.refused.size, live.size - want.size, `seed ${seed} step ${step}: every other candidate is refused`);
      for (const [n, { c }] of live) if (want.has(n)) assert.equal(inc.admitted(n), c, `seed ${seed} step ${step}: the newest object of ${n}`);
    }
  }
});

test('a change re-decides only the nodes it overlaps: the holder leaving admits the node it had blocked', () => {
  const a = new PeerAdmission<Claim>();
  a.setSelf(self);
  assert.deepEqual([...a.upsert(claim('w2', '172.18.0.4', '10.244.2.0/24'), '1')], ['w2']);
  assert.deepEqual([...a.upsert(claim('thief', '172.18.0.50', '10.244.2.0/24'), '2')], ['thief']);
  assert.deepEqual([...a.upsert(claim('w3', '172.18.0.5', '10.244.3.0/24'), '3')], ['w3'], 'an unrelated node touches nobody else');
  assert.ok(a.refused.has('peer thief'));
  assert.deepEqual(new Set(a.remove('w2')), new Set(['w2', 'thief']));
  assert.deepEqual([...a.admittedCandidates()].map((c) => c.name).sort(), ['thief', 'w3']);
  assert.equal(a.refused.size, 0);
  // a chain: x blocks y; y, once admitted, blocks z (which never overlapped x)
  a.upsert({ name: 'x', internalIPs: ['172.18.0.60'], podCIDRs: ['10.244.60.0/24'] }, '4');
  a.upsert({ name: 'y', internalIPs: ['172.18.0.61'], podCIDRs: ['10.244.60.0/25'] }, '5');
  a.upsert({ name: 'z', internalIPs: ['172.18.0.61'], podCIDRs: ['10.244.62.0/24'] }, '6');
  assert.deepEqual([...a.refused.keys()], ['peer y']);
  assert.deepEqual(new Set(a.remove('x')), new Set(['x', 'y', 'z']));
  assert.deepEqual([...a.refused.keys()], ['peer z']);
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
  try {
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
    // (no relist called: the registry's watch sees it, and the source must learn it long before its 24-36 s relist)
    await t.etcd.etcdctl(['put', 'veil/admit/nodes/garbage', '{not json']);
    const named = Date.now() + 15_000;
    while (!src.refusedPeers().has('peer garbage') && Date.now() < named) await new Promise((r) => setTimeout(r, 50));
    assert.match(src.refusedPeers().get('peer garbage') ?? '', /^registry object veil\/admit\/nodes\/garbage refused: /);
    assert.deepEqual(src.peers().map((p) => p.name), ['w2']);
    // deleted: no longer named (the watch delivers no event for it; the source reads the registry's view)
    await t.etcd.etcdctl(['del', 'veil/admit/nodes/garbage']);
    const gone = Date.now() + 15_000;
    while (src.refusedPeers().has('peer garbage') && Date.now() < gone) await new Promise((r) => setTimeout(r, 50));
    assert.ok(!src.refusedPeers().has('peer garbage'), 'a deleted garbage object is no longer named');

    // w2's agent stops (its lease goes): w2 is no peer, and its claim still holds against the impostor
    await leases.shift()!.release();
    const dropped = Date.now() + 20_000;
    while (src.peers().some((p) => p.name === 'w2') && Date.now() < dropped) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(src.peers().map((p) => p.name), [], 'w2 left; the impostor did not take its pod CIDR');
    assert.match(src.refusedPeers().get('peer impostor') ?? '', /overlaps 10\.244\.2\.0\/24 of node 'w2'/);
    // and back: w2 is a peer again, the impostor still refused
    leases.push(await reg.holdLease('w2', 15, { pid: 4 }));
    const back = Date.now() + 20_000;
    while (!src.peers().some((p) => p.name === 'w2') && Date.now() < back) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(src.peers().map((p) => p.name), ['w2']);
    assert.ok(src.refusedPeers().has('peer impostor'));
  } finally {
    for (const l of leases) await l.release();
    src.close();
  }
});

test('a creation time kept as its seconds orders as its text joined with the name did', () => {
  assert.equal(creationOrder('2026-12-05T12:08:15.123Z'), Date.UTC(2026, 11, 5, 12, 8, 15, 123));
  assert.equal(creationOrder(new Date(0).toISOString()), 0);
  for (const text of ['', '2026-12-05T12:08:15Z', '2026-12-05T12:08:15.5Z', '2026-02-30T00:00:00.000Z', '2026-12-05 12:08:15.000Z', '2026-12-05T12:08:15.000+01:00', 'garbage']) {
    assert.equal(creationOrder(text), text, `${JSON.stringify(text)} is kept as text`);
  }
  // Every pair, as the node source ordered them before: by `${created}\0${name}` as text.
  const times = ['', '1', '2026-12-05T12:08:15.123Z', '2026-12-05T12:08:15.124Z', '2026-12-05T12:08:15.000Z', '2026-12-05T12:08:15Z', '2026-12-05T12:08:15.5Z',
    '2026-12-05T12:08:16.000Z', '2026-12-05T12:08:15.12', '2026-12-05T12:08:15.123', '2026-12-05T12:08:15.123Zz', '2025-01-01T00:00:00.000Z', '2038-01-19T03:14:08.000Z',
    '1969-12-31T23:59:59.999Z', '2026-02-30T00:00:00.000Z', '2026-12-05T12:08:15.000+01:00', 'zz'];
  const nodes = times.flatMap((t) => ['a', 'node-1', 'node-10', 'b'].map((name) => ({ t, name })));
  for (const x of nodes) {
    for (const y of nodes) {
      const was = `${x.t}\u0000${x.name}` < `${y.t}\u0000${y.name}`;
      assert.equal(orderBefore(creationOrder(x.t), x.name, creationOrder(y.t), y.name), was, `${x.t}/${x.name} before ${y.t}/${y.name}`);
    }
  }
});
