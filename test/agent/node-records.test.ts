// The node source's records as columns by slot: each column reads back what was set, a freed slot
// is handed out again blank, the columns grow past their first size, slots order by age as their
// ages do, and the admission's entries kept in the slots decide as a map of entries does (the view
// it is handed writes through).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NodeRecords } from '../../src/agent/node-records.js';
import { PeerAdmission, creationOrder, orderBefore } from '../../src/agent/peer-admission.js';
import type { PeerNode } from '../../src/agent/node-source.js';

const peer = (name: string, ip: string, cidr: string): PeerNode =>
  ({ name, slot: 0, internalIP: ip, internalIPs: ip, podCIDRs: cidr, podGateway: cidr.replace(/0\/\d+$/, '1'), annotations: {} });

test('each column reads back what was set; a new slot is blank', () => {
  const r = new NodeRecords();
  const s = r.slotFor('n1');
  assert.equal(r.slotFor('n1'), s, 'a cached name keeps its slot');
  assert.deepEqual([r.rv(s), r.lease(s), r.index(s), r.live(s), r.peer(s), r.candidate(s), r.age(s)], [0, undefined, -1, false, undefined, undefined, '']);
  const p = peer('n1', '172.18.0.4', '10.244.2.0/24');
  const ms = creationOrder('2026-12-05T12:08:15.123Z');
  r.setRv(s, 41); r.setLease(s, -42); r.setIndex(s, 7); r.setLive(s, true); r.setPeer(s, p); r.setAge(s, ms);
  assert.deepEqual([r.rv(s), r.lease(s), r.index(s), r.live(s), r.peer(s), r.age(s)], [41, -42, 7, true, p, ms]);
  r.setAge(s, '2026-12-05T12:08:15Z'); // Kubernetes' form: kept as its text
  assert.equal(r.age(s), '2026-12-05T12:08:15Z');
  r.setLease(s, undefined);
  assert.equal(r.lease(s), undefined);
  r.clearIndexes();
  assert.equal(r.index(s), -1);
});

test('ageBefore orders slots as orderBefore orders their ages', () => {
  const r = new NodeRecords();
  const ages = ['2026-12-05T12:08:15.123Z', '2026-12-05T12:08:15.123Z', '2026-12-05T12:08:15Z', '2026-12-05T12:08:16.000Z', '', 'zz'].map(creationOrder);
  const names = ['b', 'a', 'c', 'd', 'e', 'f'];
  const slots = names.map((n, i) => { const s = r.slotFor(n); r.setAge(s, ages[i]!); return s; });
  for (let i = 0; i < names.length; i++) {
    for (let j = 0; j < names.length; j++) {
      assert.equal(r.ageBefore(slots[i]!, names[i]!, slots[j]!, names[j]!), orderBefore(ages[i]!, names[i]!, ages[j]!, names[j]!), `${names[i]} before ${names[j]}`);
    }
  }
});

test('a deleted name frees its slot, which is handed out again blank; the columns grow', () => {
  const r = new NodeRecords();
  const slots = Array.from({ length: 200 }, (_, i) => r.slotFor(`n${i}`)); // past the first 64 slots
  assert.equal(new Set(slots).size, 200);
  slots.forEach((s, i) => { r.setRv(s, i); r.setLive(s, i % 2 === 0); r.setAge(s, i === 5 ? 'text' : i); });
  slots.forEach((s, i) => assert.deepEqual([r.rv(s), r.live(s), r.age(s)], [i, i % 2 === 0, i === 5 ? 'text' : i]));
  assert.equal(r.delete('n5'), true);
  assert.equal(r.delete('n5'), false);
  assert.equal(r.has('n5'), false);
  assert.equal(r.size, 199);
  const again = r.slotFor('late');
  assert.equal(again, slots[5], 'the freed slot');
  assert.deepEqual([r.rv(again), r.live(again), r.age(again), r.peer(again)], [0, false, '', undefined]);
  const seen: string[] = [];
  r.forEach((_, name) => seen.push(name));
  assert.deepEqual(seen, [...r.names()]);
  assert.equal(seen.at(-1), 'late', 'names in the order first cached');
});

test('the admission decides the same with its entries in the slots as in a map of its own', () => {
  const candidates = [
    peer('w2', '172.18.0.4', '10.244.2.0/24'),
    peer('thief', '172.18.0.50', '10.244.2.0/24'),
    peer('w3', '172.18.0.5', '10.244.3.0/24'),
    peer('twin', '172.18.0.5', '10.244.7.0/24'),
  ];
  const records = new NodeRecords();
  const inSlots = new PeerAdmission<PeerNode>(records.entries());
  const inMap = new PeerAdmission<PeerNode>();
  const self = { name: 'w1', internalIPs: '172.18.0.3', podCIDRs: '10.244.1.0/24' };
  inSlots.setSelf(self); inMap.setSelf(self);
  const verdicts = (a: PeerAdmission<PeerNode>) => ({ admitted: [...a.admittedCandidates()].map((c) => c.name), refused: Object.fromEntries(a.refused) });
  candidates.forEach((c, i) => {
    const slot = records.slotFor(c.name);
    records.setAge(slot, i);
    assert.deepEqual(inSlots.upsert(c, records.age(slot)), inMap.upsert(c, i));
  });
  assert.deepEqual(verdicts(inSlots), verdicts(inMap));
  assert.deepEqual(verdicts(inSlots).admitted, ['w2', 'w3']);
  assert.equal(records.admitted(records.slotOf('w2')!), true, 'the verdict is in the slot');
  assert.match(records.reason(records.slotOf('thief')!)!, /overlaps 10.244.2.0\/24 of node 'w2'/);
  // The holder goes: the younger claim it refused is admitted (the views write through to the slots).
  assert.deepEqual([...inSlots.remove('w2')].sort(), [...inMap.remove('w2')].sort());
  records.delete('w2');
  assert.deepEqual(verdicts(inSlots), verdicts(inMap));
  assert.deepEqual(verdicts(inSlots).admitted, ['thief', 'w3']);
  assert.equal(records.reason(records.slotOf('thief')!), undefined);
  // A node whose age changes (its object recreated between two lists) keeps the order its claim was
  // decided under until the claim is decided again: the admission tells the change by it.
  const w3 = records.slotOf('w3')!, w3Peer = records.candidate(w3)!;
  records.setAge(w3, 99);
  assert.equal(records.order(w3), 2);
  assert.deepEqual([...inSlots.upsert(w3Peer, 99)].sort(), [...inMap.upsert(w3Peer, 99)].sort());
  assert.deepEqual([records.order(w3), records.age(w3)], [99, 99]);
  assert.deepEqual(verdicts(inSlots), verdicts(inMap));
  // A candidate decided under an order that is not its node's age keeps that order.
  const slot = records.slotOf('twin')!;
  inSlots.upsert(peer('twin', '172.18.0.9', '10.244.7.0/24'), 'zz');
  assert.equal(records.order(slot), 'zz');
  assert.equal(records.admitted(slot), true);
});
