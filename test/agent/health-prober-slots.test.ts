// The prober's peers by slot (PeerNode.slot) against a model, with slots given back and handed to
// other peers, and acks that come late: an ack counts for the peer its probe went to, never for
// the next peer in its slot (the probe's sequence number carries the slot's generation).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HealthProber, type ProbeTarget } from '../../src/agent/health-prober.js';
import { SlotPool } from '../../src/util/slot-pool.js';

/** A seeded generator (mulberry32): the same run every time. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Internals = { probeAll(): void; probes?: unknown; onProbeReply(buf: Buffer, offset: number, length: number, source: string, at: number): void };

test('slots given back and handed to other peers: each entry its own counts, a late ack never counted for the next peer in its slot', () => {
  for (let seed = 1; seed <= 20; seed++) {
    const rand = random(seed);
    const p = new HealthProber('a', '127.77.9.1', 60_000);
    const internals = p as unknown as Internals;
    const sent: { seq: string; address: string }[] = []; // every probe, as the wire would carry it
    internals.probes = { queue: (buf: Buffer, length: number, address: string) => sent.push({ seq: buf.toString('latin1', 0, length).split(' ')[2]!, address }), flush: () => undefined, drain: () => undefined, close: () => undefined };
    const pool = new SlotPool();
    const live = new Map<string, ProbeTarget>(); // the source: name -> its peer (and slot)
    const model = new Map<string, { address: string; sent: number; acked: number }>(); // by name
    let n = 0;
    const gone: ProbeTarget[] = [];
    const pending: { seq: string; address: string; entry: { address: string; sent: number; acked: number } }[] = []; // probes sent, not acked yet
    for (let step = 0; step < 300; step++) {
      const r = rand();
      if (r < 0.25 && live.size) { // a node removed: its slot given back
        const name = [...live.keys()][Math.floor(rand() * live.size)]!;
        pool.release(live.get(name)!.slot);
        gone.push(live.get(name)!);
        live.delete(name);
      } else if (r < 0.45) { // a node added: a slot given back first
        const name = `n${n++}`;
        live.set(name, { name, slot: pool.take(), podGateway: `10.9.${n >> 8}.${n & 255}` });
      } else if (r < 0.5 && gone.length) { // a node gone comes back (the same name, or another), at the address it had: likely in the slot it had
        const g = gone.splice(Math.floor(rand() * gone.length), 1)[0]!;
        const name = rand() < 0.5 ? g.name : `n${n++}`;
        if (!live.has(name) && ![...live.values()].some((t) => t.podGateway === g.podGateway)) live.set(name, { name, slot: pool.take(), podGateway: g.podGateway });
      } else if (r < 0.55 && live.size) { // a node moved to another address: a new object, the same slot
        const name = [...live.keys()][Math.floor(rand() * live.size)]!;
        const was = live.get(name)!;
        live.set(name, { ...was, podGateway: `10.8.${step >> 8}.${step & 255}` });
      } else if (r < 0.75) { // a round of probes
        sent.length = 0;
        internals.probeAll();
        for (const s of sent) {
          const e = [...model.values()].find((m) => m.address === s.address)!;
          e.sent++;
        }
        pending.push(...sent.map((s) => ({ ...s, entry: [...model.values()].find((m) => m.address === s.address)! })));
      } else if (pending.length) { // acks arrive, in any order, some long after their peer left or moved
        const i = Math.floor(rand() * pending.length);
        const ack = pending.splice(i, 1)[0]!;
        const text = Buffer.from(`veil-ack x ${ack.seq} ${Date.now()}`, 'latin1');
        internals.onProbeReply(text, 0, text.length, ack.address, Date.now());
        if ([...model.values()].includes(ack.entry)) ack.entry.acked++; // its entry is still the one probed
      }
      // the pass: the prober is handed the peers; the model keeps a peer's counts while its address stays
      p.setPeers([...live.values()]);
      for (const [name, t] of live) {
        const e = model.get(name);
        if (!e || e.address !== t.podGateway) model.set(name, { address: t.podGateway, sent: 0, acked: 0 });
      }
      for (const name of [...model.keys()]) if (!live.has(name)) model.delete(name);
      const got = new Map(p.list().map((e) => [e.node, { address: e.address, sent: e.sent, acked: e.acked }]));
      assert.deepEqual(got, new Map([...model].map(([k, v]) => [k, { ...v }])), `seed ${seed} step ${step}`);
    }
  }
});
