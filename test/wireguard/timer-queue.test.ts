// The device's timer queue: a tick visits the peers whose timers are due, not every peer, and
// fires every timer a walk over all peers would have fired.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Device, type Action, type Endpoint, type Peer } from '../../src/wireguard/index.js';
import { generatePrivateKey } from '../../src/crypto/index.js';
import { TimerQueue, NOT_QUEUED } from '../../src/wireguard/timer-queue.js';
import { Pair, ipv4Packet } from './harness.js';

const HUB: Endpoint = { address: '192.0.2.1', port: 51820 };
const spokeEndpoint = (i: number): Endpoint => ({ address: `198.51.100.${i + 1}`, port: 51820 });

function seeded(seed: number): () => number {
  return () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
}

test('the queue pops items by deadline, skips stale entries and never requeues a retired item', () => {
  const q = new TimerQueue<{ queuedAt: number; name: string }>();
  const items = Array.from({ length: 50 }, (_, i) => ({ queuedAt: NOT_QUEUED, name: `i${i}` }));
  const random = seeded(7);
  const want = new Map<string, number>();
  for (const it of items) {
    const at = Math.floor(random() * 1000);
    q.schedule(it, at);
    q.schedule(it, at + 500); // later: no new entry, the earlier one stands
    want.set(it.name, at);
  }
  q.schedule(items[3]!, 0); // earlier: the old entry goes stale
  want.set('i3', 0);
  q.retire(items[4]!);
  q.schedule(items[4]!, 1);
  want.delete('i4');
  const popped: [string, number][] = [];
  let last = -1;
  for (let now = 0; now <= 1000; now += 10) {
    for (let it = q.takeDue(now); it !== null; it = q.takeDue(now)) {
      popped.push([it.name, now]);
      assert.ok(want.get(it.name)! <= now && want.get(it.name)! > last, `${it.name} popped at its step`);
    }
    last = now;
  }
  assert.equal(popped.length, want.size, 'each live item popped once');
  assert.equal(q.peek(), null);
});

test('stale and repeated entries never outnumber the live ones for long: peers requeued at their far key-erasure deadline, then armed earlier, each at its own time', () => {
  const q = new TimerQueue<{ queuedAt: number }>();
  const items = Array.from({ length: 1000 }, () => ({ queuedAt: NOT_QUEUED }));
  for (const it of items) q.schedule(it, 540_000);
  for (let now = 0; now < 300_000; now += 1000) {
    // A tenth of the peers get a packet each second: a keepalive armed 10 s out, under the far entry.
    for (let i = (now / 1000) % 10; i < items.length; i += 10) q.schedule(items[i]!, now + 10_000);
    // The due ones fire and are requeued at their next deadline, the same far one (until a new session).
    const due = [];
    for (let it = q.takeDue(now); it !== null; it = q.takeDue(now)) due.push(it);
    for (const it of due) q.schedule(it, 540_000);
    assert.ok(q.size <= 2 * items.length + 64, `at ${now} ms: ${q.size} entries for ${items.length} items`);
  }
});

test('a tick visits only the due peers, and after it no peer has a timer due (random traffic and loss against a walk)', () => {
  const random = seeded(42);
  const hub = new Device({ privateKey: generatePrivateKey().raw, random });
  const N = 40;
  const spokes = Array.from({ length: N }, () => new Device({ privateKey: generatePrivateKey().raw, random }));
  const peers: Peer[] = spokes.map((s, i) => hub.addPeer({ publicKey: s.publicKey, endpoint: spokeEndpoint(i), persistentKeepalive: i % 7 === 0 ? 3 : 0 }));
  const hubOn = spokes.map((s) => s.addPeer({ publicKey: hub.publicKey, endpoint: HUB }));
  const byAddress = new Map(spokes.map((s, i) => [spokeEndpoint(i).address, i]));
  // 200 idle peers besides: a walk would visit them at every tick.
  const idle = Array.from({ length: 200 }, () => hub.addPeer({ publicKey: generatePrivateKey().publicKey }));
  let now = 1_000;

  // Datagrams in flight, delivered in order with 10 % lost.
  const wire: { to: 'hub' | number; from: Endpoint; datagram: Uint8Array }[] = [];
  const send = (fromSpoke: number | null, acts: readonly Action[]): void => {
    for (const a of acts) {
      if (a.kind !== 'network' || random() < 0.1) continue;
      if (fromSpoke === null) wire.push({ to: byAddress.get(a.endpoint.address)!, from: HUB, datagram: a.datagram });
      else wire.push({ to: 'hub', from: spokeEndpoint(fromSpoke), datagram: a.datagram });
    }
  };
  const deliver = (): void => {
    while (wire.length) {
      const d = wire.shift()!;
      if (d.to === 'hub') send(null, hub.decapsulate(d.datagram, d.from, now));
      else send(d.to, spokes[d.to]!.decapsulate(d.datagram, HUB, now));
    }
  };

  let ticks = 0, fired = 0;
  for (let step = 0; step < 3000; step++) {
    now += Math.floor(random() * 400);
    const i = Math.floor(random() * N);
    const r = random();
    if (r < 0.3) send(null, hub.encapsulate(peers[i]!, ipv4Packet(`probe ${step}`), now));
    else if (r < 0.5) send(i, spokes[i]!.encapsulate(hubOn[i]!, ipv4Packet(`ack ${step}`), now));
    deliver();
    for (const s of spokes) send(spokes.indexOf(s), s.tick(now));
    const before = hub.peersTicked;
    const acts = hub.tick(now);
    fired += acts.filter((a) => a.kind === 'network').length;
    ticks++;
    assert.ok(hub.peersTicked - before <= N, 'only peers with timers are visited (never the idle ones)');
    send(null, acts);
    deliver();
    for (const p of [...peers, ...idle]) {
      const d = p.nextDeadline();
      assert.ok(d === null || d > now, `after a tick at ${now} no timer of any peer is due (one at ${d})`);
    }
    const brute = [...peers, ...idle].map((p) => p.nextDeadline()).filter((d): d is number => d !== null);
    const next = hub.nextDeadline();
    if (brute.length) assert.ok(next !== null && next <= Math.min(...brute), 'the next deadline is never later than the earliest timer');
  }
  assert.ok(fired > 100, `timers fired keepalives, retransmits and rekeys (${fired} datagrams from ${ticks} ticks)`);
  assert.ok(hub.peersTicked < ticks * 10, `a tick visits few peers (${hub.peersTicked} visits in ${ticks} ticks; a walk: ${ticks * (N + 200)})`);

  // A removed peer is never ticked again.
  const gone = peers[1]!;
  hub.removePeer(gone.publicKey);
  send(null, hub.encapsulate(peers[2]!, ipv4Packet('x'), now));
  for (let k = 0; k < 50; k++) {
    now += 1000;
    for (const a of hub.tick(now)) assert.ok(a.kind !== 'network' || a.peer !== gone, 'nothing sent for a removed peer');
  }
});

test('a timer stopped before it fires does not leave an earlier next deadline (no wake-up for a tick that fires nothing)', () => {
  const pair = new Pair();
  pair.send('a', ipv4Packet('probe')); // handshake, then the probe: b received data, its keepalive armed 10 s out
  pair.advance(1_000);
  const b = pair.b, armedAt = pair.now;
  pair.send('b', ipv4Packet('ack')); // b sends: its keepalive stops; a new-handshake timer 15 s (+ jitter) out
  const next = b.nextDeadline();
  assert.ok(next !== null && next >= armedAt + 14_000, `b's next deadline is its real earliest timer (${next === null ? null : next - armedAt} ms out), not the stopped keepalive's`);
  assert.equal(next, b.peers().next().value!.nextDeadline(), 'the same as the peer itself answers');
});
