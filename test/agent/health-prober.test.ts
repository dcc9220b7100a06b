// Health probes at scale, on real UDP sockets (loopback): at most MAX_PROBES_PER_INTERVAL probes
// per interval however many peers, every peer still probed in turn, an ack found by address, and
// the status names a few unreachable peers and counts the rest (a message that grew with the
// cluster was published in the node object).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HealthProber, MAX_PROBES_PER_INTERVAL } from '../../src/agent/health-prober.js';
import { Health } from '../../src/agent/health.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('probes: capped per interval, round robin over every peer, acks by address, a short status', { timeout: 60_000 }, async () => {
  const INTERVAL = 100;
  const a = new HealthProber('a', '127.77.0.1', INTERVAL);
  const b = new HealthProber('b', '127.77.0.2', 60_000);
  await a.start();
  await b.start();
  try {
    const peers = [{ name: 'b', slot: 0, podGateway: '127.77.0.2' }];
    for (let i = 0; i < 449; i++) peers.push({ name: `x${i}`, slot: i + 1, podGateway: `127.78.${i >> 8}.${(i & 255) + 1}` }); // nothing answers there
    a.setPeers(peers);
    const t0 = Date.now();
    await sleep(INTERVAL * 4.5);
    const list = a.list();
    const sent = list.reduce((n, p) => n + p.sent, 0);
    const intervals = Math.floor((Date.now() - t0) / INTERVAL) + 1;
    assert.ok(sent <= MAX_PROBES_PER_INTERVAL * intervals, `${sent} probes in ${intervals} intervals: at most ${MAX_PROBES_PER_INTERVAL} each`);
    assert.ok(sent >= MAX_PROBES_PER_INTERVAL * 3, `the cap is used (${sent})`);
    assert.ok(list.every((p) => p.sent >= 1), 'every peer was probed in turn');
    const max = Math.max(...list.map((p) => p.sent)), min = Math.min(...list.map((p) => p.sent));
    assert.ok(max - min <= 1, `round robin: ${min}..${max} probes per peer`);
    const bState = list.find((p) => p.node === 'b')!;
    assert.ok(bState.acked >= 1 && bState.rttMs !== null, 'the real peer answered and its ack was found by address');

    // Past the grace (3 rounds of the peers, at 3 intervals per round), the unreachable are named, 10 of them.
    const health = new Health();
    const limit = 3 * INTERVAL * Math.ceil(450 / MAX_PROBES_PER_INTERVAL) + 5000;
    await sleep(Math.max(0, limit - (Date.now() - t0)) + 200);
    a.reportTo(health);
    const check = health.problems().find((c) => c.name === 'node-connectivity');
    assert.ok(check, 'the unreachable peers degrade the node');
    assert.match(check.message, /no probe answer through the tunnel from (x\d+, ){9}x\d+ and 439 more$/);
    assert.doesNotMatch(check.message, /\bb\b/, 'the peer that answers is not named');
  } finally {
    a.stop();
    b.stop();
  }
});

test('setPeers: an entry kept while its peer keeps its address, moved and gone peers, a shared address, external peers', () => {
  const p = new HealthProber('a', '127.77.0.1', 60_000);
  const slots = new Map<string, number>(); // as a node source: a name keeps its slot
  const targets = (list: { name: string; podGateway: string; external?: unknown }[]) => list.map((t) => ({ ...t, slot: slots.get(t.name) ?? slots.set(t.name, slots.size).size - 1 }));
  const view = () => p.list().map((e) => `${e.node}@${e.address}`).sort();
  p.setPeers(targets([{ name: 'b', podGateway: '10.0.1.1' }, { name: 'c', podGateway: '10.0.2.1' }, { name: 'ext', podGateway: '10.0.9.1', external: {} }]));
  assert.deepEqual(view(), ['b@10.0.1.1', 'c@10.0.2.1'], 'an external peer is not probed');
  const sentTo = (node: string) => p.list().find((e) => e.node === node)?.sent;
  (p as unknown as { probeAll(): void }).probeAll(); // one probe each (not started: counted, nothing sent)
  assert.deepEqual([sentTo('b'), sentTo('c')], [1, 1]);
  p.setPeers(targets([{ name: 'b', podGateway: '10.0.1.1' }, { name: 'c', podGateway: '10.0.2.1' }]));
  assert.deepEqual([sentTo('b'), sentTo('c')], [1, 1], 'the same entries, their counts kept');
  assert.deepEqual(Object.keys(p.list()[0]!), ['node', 'address', 'sent', 'acked', 'lastAckMs', 'rttMs'], 'a status answer carries the PeerHealth fields only');

  // c moves, d takes c's old address, b goes.
  p.setPeers(targets([{ name: 'd', podGateway: '10.0.2.1' }, { name: 'c', podGateway: '10.0.3.1' }]));
  assert.deepEqual(view(), ['c@10.0.3.1', 'd@10.0.2.1']);
  assert.equal(p.list().find((e) => e.node === 'd')!.sent, 0, "d's entry is its own, not c's");

  // A forged podGateway: e claims d's address while d keeps it, before or after d in the list: d's entry stays.
  for (const order of [[{ name: 'e', podGateway: '10.0.2.1' }, { name: 'd', podGateway: '10.0.2.1' }], [{ name: 'd', podGateway: '10.0.2.1' }, { name: 'e', podGateway: '10.0.2.1' }]]) {
    p.setPeers(targets([...order, { name: 'c', podGateway: '10.0.3.1' }]));
    assert.equal(p.list().find((e) => e.address === '10.0.2.1')?.node, 'd', 'one address, one target: the entry that had it');
  }
  // d goes: e has the address now.
  p.setPeers(targets([{ name: 'e', podGateway: '10.0.2.1' }, { name: 'c', podGateway: '10.0.3.1' }]));
  assert.deepEqual(view(), ['c@10.0.3.1', 'e@10.0.2.1']);
  p.setPeers([]);
  assert.deepEqual(view(), []);
  // Slots freed are handed out again, each new entry's counts from nothing; more peers than the columns first hold.
  const many = targets(Array.from({ length: 200 }, (_, i) => ({ name: `m${i}`, podGateway: `10.1.${i >> 8}.${i & 255}` })));
  p.setPeers(many);
  (p as unknown as { probeAll(): void }).probeAll();
  assert.equal(p.list().length, 200);
  assert.ok(p.list().every((e) => e.sent === 1 && e.acked === 0 && e.lastAckMs === null && e.rttMs === null), 'every peer probed once in a round of 200');
  p.setPeers(many.slice(100));
  p.setPeers([...many.slice(100), { name: 'z', slot: many[0]!.slot, podGateway: '10.2.0.1' }]); // a slot given back, handed to another peer
  assert.deepEqual(p.list().map((e) => e.sent).sort(), [0, ...Array<number>(100).fill(1)], "a reused slot's new entry starts at 0");
});

test("acks: read from their bytes, counted and timed by the probe's sentMs; other shapes as the text reads them", { timeout: 30_000 }, async () => {
  const { createSocket } = await import('node:dgram');
  const { HEALTH_PORT } = await import('../../src/agent/health-prober.js');
  const p = new HealthProber('a', '127.77.1.1', 200);
  await p.start();
  const peer = createSocket({ type: 'udp4', reuseAddr: true });
  await new Promise<void>((resolve) => peer.bind(HEALTH_PORT, '127.77.1.2', resolve));
  const stranger = createSocket('udp4');
  await new Promise<void>((resolve) => stranger.bind(0, '127.77.1.3', resolve));
  try {
    const probed = new Promise<{ port: number; seq: string }>((resolve) => peer.once('message', (m, from) => resolve({ port: from.port, seq: m.toString('latin1').split(' ')[2]! })));
    p.setPeers([{ name: 'b', slot: 0, podGateway: '127.77.1.2' }]);
    (p as unknown as { probeAll(): void }).probeAll();
    const { port: probePort, seq } = await probed; // acks go where the probes come from: the probes' own socket, with the probe's sequence number
    const of = () => p.list().find((e) => e.node === 'b')!;
    const sendFrom = (s: typeof peer, text: string, port = probePort) => new Promise<void>((resolve) => s.send(Buffer.from(text, 'latin1'), port, '127.77.1.1', () => resolve()));
    const settle = async (acked: number) => { for (const until = Date.now() + 10_000; of().acked !== acked && Date.now() < until;) await sleep(5); }; // a generous deadline: a loaded machine delays the delivery

    const sentAt = Date.now() - 250;
    await sendFrom(peer, `veil-ack b ${seq} ${sentAt}`);
    await settle(1);
    assert.equal(of().acked, 1, 'an ack from the peer is counted');
    assert.ok(of().rttMs! >= 250 && of().rttMs! < 5_000, `its RTT from the probe's sentMs (${of().rttMs})`);
    assert.ok(of().lastAckMs! >= sentAt + 250);

    // Shapes the bytes do not settle take the text's path, with its answer: Number() of the last field.
    await sendFrom(peer, `veil-ack b ${seq} ${sentAt}.0`); // not digits only: still an ack (Number reads it)
    await settle(2);
    assert.equal(of().acked, 2, 'a sentMs the bytes do not read is read by the text');
    await sendFrom(peer, 'veil-ack b 9 soon'); // not a number: no ack
    await sendFrom(peer, `veil-ack b 9 ${sentAt} extra`); // five fields: no ack
    await sendFrom(peer, `veil-ack b ${sentAt}`); // three fields: no ack
    await sendFrom(peer, `veil-ack b ${seq} 1234567890123456`); // 16 digits: the text's path, an ack
    await settle(3);
    assert.equal(of().acked, 3, 'only the well-formed ones count');
    await sendFrom(stranger, `veil-ack x ${seq} ${Date.now()}`); // from an address not probed: ignored (its sequence number a probed slot's)
    await sendFrom(peer, `veil-ack b ${seq} ${Date.now()}`);
    await settle(4);
    assert.equal(of().acked, 4);
    assert.equal(p.list().length, 1, 'a stranger gets no entry');
    // An ack sent to 4240 is not read as one: 4240 answers probes only. A probe sent after it on the
    // same socket is answered once 4240 has read both.
    const answered = new Promise<void>((resolve) => peer.on('message', (m) => { if (m.toString('latin1').startsWith('veil-ack a 99 ')) resolve(); }));
    await sendFrom(peer, `veil-ack b ${seq} ${Date.now()}`, HEALTH_PORT);
    await sendFrom(peer, `veil-probe b 99 ${Date.now()}`, HEALTH_PORT);
    await answered;
    assert.equal(of().acked, 4, 'the ack sent to 4240 is not counted');
    await sendFrom(peer, `veil-ack b ${seq} ${Date.now()}`);
    await settle(5);
    assert.equal(of().acked, 5, 'the next ack to the probes\' socket is');
  } finally {
    p.stop();
    peer.close();
    stranger.close();
  }
});

test("the probes' socket: probes leave from its own port, and their acks wait there until read, each counted at its arrival", { timeout: 30_000 }, async () => {
  const { createSocket } = await import('node:dgram');
  const { HEALTH_PORT } = await import('../../src/agent/health-prober.js');
  const p = new HealthProber('a', '127.77.2.1', 60_000);
  await p.start();
  const peer = createSocket({ type: 'udp4', reuseAddr: true }); // a peer that answers late, many times
  await new Promise<void>((resolve) => peer.bind(HEALTH_PORT, '127.77.2.2', resolve));
  try {
    p.setPeers([{ name: 'b', slot: 0, podGateway: '127.77.2.2' }, { name: 'c', slot: 1, podGateway: 'not-an-address' }]);
    const probe = new Promise<{ text: string; port: number }>((resolve) => peer.once('message', (m, r) => resolve({ text: m.toString('latin1'), port: r.port })));
    (p as unknown as { probeAll(): void }).probeAll(); // a peer whose address is none: a lost probe, no throw
    const got = await probe;
    const [kind, node, seq, sentMs] = got.text.split(' ');
    assert.deepEqual([kind, node], ['veil-probe', 'a']);
    assert.match(seq!, /^\d+$/, 'its sequence number: its slot and generation, in decimal');
    assert.notEqual(got.port, HEALTH_PORT, 'a probe leaves from the probes\' own port, not 4240');

    // More acks than one read takes (64), all before anything reads them; one the text reads.
    const ACKS = 300;
    const send = (text: string) => new Promise<void>((resolve) => peer.send(Buffer.from(text, 'latin1'), got.port, '127.77.2.1', () => resolve()));
    for (let i = 0; i < ACKS - 1; i++) await send(`veil-ack b ${seq} ${sentMs}`);
    await send(`veil-ack b ${seq} ${sentMs}.0`);
    await send(`veil-probe x 1 ${sentMs}`); // a probe here is not answered, nor counted
    const lastSent = Date.now(); // loopback delivers within the send: every ack arrived before this
    await sleep(300);
    const b = p.list().find((e) => e.node === 'b')!;
    assert.equal(b.acked, ACKS, 'every ack waiting was read and counted');
    assert.ok(b.lastAckMs! <= lastSent, `counted at its arrival (${b.lastAckMs}), not when read (after ${lastSent})`);
    assert.ok(b.lastAckMs! >= Number(sentMs));
    assert.equal(b.rttMs, b.lastAckMs! - Number(sentMs), "its RTT from the probe's sentMs to its arrival");
    assert.equal(p.list().find((e) => e.node === 'c')!.acked, 0);
  } finally {
    p.stop();
    peer.close();
  }
});

test("a round's probes go out in one sendmmsg, each with its own text and number; their acks counted", { timeout: 30_000 }, async () => {
  const { createSocket } = await import('node:dgram');
  const { HEALTH_PORT } = await import('../../src/agent/health-prober.js');
  const NODE = 'node-with-a-long-name-0123456789.example.internal';
  const p = new HealthProber(NODE, '127.77.3.1', 60_000);
  await p.start();
  const peers = Array.from({ length: MAX_PROBES_PER_INTERVAL }, (_, i) => ({ name: `q${i}`, slot: i, podGateway: `127.77.${4 + (i >> 7)}.${(i & 127) + 1}` }));
  const got: { text: string; port: number }[] = [];
  const sockets = await Promise.all(peers.map((peer) => new Promise<ReturnType<typeof createSocket>>((resolve) => {
    const s = createSocket({ type: 'udp4', reuseAddr: true });
    s.on('message', (m, r) => {
      const text = m.toString('latin1');
      got.push({ text, port: r.port });
      const [, , seq, sentMs] = text.split(' ');
      s.send(Buffer.from(`veil-ack ${peer.name} ${seq} ${sentMs}`), r.port, r.address);
    });
    s.bind(HEALTH_PORT, peer.podGateway, () => resolve(s));
  })));
  try {
    p.setPeers(peers);
    const probes = (p as unknown as { probes: { sendCalls: number } }).probes;
    const callsBefore = probes.sendCalls;
    const before = Date.now();
    for (let round = 0; round < 2; round++) (p as unknown as { probeAll(): void }).probeAll();
    const after = Date.now();
    assert.equal(probes.sendCalls - callsBefore, 2, 'one sendmmsg a round');
    for (const until = Date.now() + 10_000; got.length < 2 * peers.length && Date.now() < until;) await sleep(10);
    assert.equal(got.length, 2 * peers.length, 'every probe of both rounds arrived');
    const seqs = got.map((g) => {
      const m = /^veil-probe (\S+) (\d+) (\d+)$/.exec(g.text);
      assert.ok(m, `a probe's text: ${g.text}`);
      assert.equal(m[1], NODE);
      assert.ok(Number(m[3]) >= before && Number(m[3]) <= after, `its sentMs is the round's time (${m[3]})`);
      return Number(m[2]);
    }).sort((x, y) => x - y);
    // A probe's number is its peer's slot and the slot's generation (the first: 1): the same for both rounds' probes of a peer.
    assert.deepEqual(seqs, Array.from({ length: 2 * peers.length }, (_, i) => 2 ** 24 + (i >> 1)), "each probe its peer's slot, in the slot's first generation");
    for (const until = Date.now() + 10_000; p.list().some((e) => e.acked < 2) && Date.now() < until;) await sleep(10);
    assert.ok(p.list().every((e) => e.sent === 2 && e.acked === 2 && e.rttMs !== null && e.rttMs >= 0), 'every peer probed twice, both acks counted and timed');
  } finally {
    p.stop();
    for (const s of sockets) s.close();
  }
});
