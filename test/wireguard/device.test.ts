// Two Devices talking through byte arrays with a fake clock: handshake, data, rotation, rekey,
// expiry, keepalives, retransmission, give-up, replay, hostile input, cookies, 10 minutes of timers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Pair, ipv4Packet, EP_A, EP_B } from './harness.js';
import { PEERS_PER_MESSAGE_PER_SECOND, handshakeLoadThreshold } from '../../src/wireguard/handshake-limiter.js';
import { generatePrivateKey, aeadSeal, aeadOpen, counterNonce, isAllZero } from '../../src/crypto/index.js';
import {
  Device, REKEY_AFTER_MESSAGES, REJECT_AFTER_MESSAGES, MESSAGE_TRANSPORT_HEADER_SIZE, writeTransportHeader,
  REKEY_TIMEOUT, frameTransport, transportCounter, transportNonceInPlace, transportReceiver, type Action,
} from '../../src/wireguard/index.js';

const INIT = 1, RESP = 2, COOKIE = 3, DATA = 4;

test('handshake, then data both ways; initiator uses the new keypair at once, responder after confirmation', () => {
  const p = new Pair();
  p.filter = (from, d) => !(from === 'a' && d[0] === DATA); // lose A's first data packet
  p.send('a', ipv4Packet('lost'));
  assert.ok(p.peerB.current, 'initiator: current at once');
  assert.equal(p.peerB.current!.isInitiator, true);
  assert.equal(p.peerA.current, null, 'responder: nothing confirmed yet');
  assert.ok(p.peerA.next, 'responder: new keypair waits in next');
  // B has data for A but no confirmed keypair: it is staged, not sent under `next`.
  const before = p.wire.length;
  p.send('b', ipv4Packet('early'));
  assert.equal(p.sent('b', DATA, before).length, 0);
  assert.equal(p.peerA.staged.length, 1);
  p.filter = () => true;
  p.send('a', ipv4Packet('hello b'));
  assert.deepEqual(p.tunnel.b, [ipv4Packet('hello b')]);
  assert.ok(p.peerA.current && !p.peerA.next, 'first data under next promoted it');
  assert.deepEqual(p.tunnel.a, [ipv4Packet('early')], 'staged packet flushed on confirmation');
  p.send('b', ipv4Packet('hello a'));
  assert.deepEqual(p.tunnel.a.at(-1), ipv4Packet('hello a'));
  assert.equal(p.a.stats.handshakesCompleted, 1);
  assert.equal(p.b.stats.handshakesCompleted, 1);
  assert.equal(p.a.stats.totalDrops() + p.b.stats.totalDrops(), 0);
});

test('transport format: padding to 16, counter nonce, keepalive is 32 bytes', () => {
  const p = new Pair();
  p.send('a', ipv4Packet('x'));
  const data = p.sent('a', DATA);
  assert.equal(data.length, 1);
  assert.equal(data[0]!.length, 16 + 32 + 16); // 21-byte packet padded to 32
  assert.equal(transportCounter(data[0]!), 0);
  assert.equal(transportReceiver(data[0]!), p.peerB.current!.remoteIndex);
  const plain = aeadOpen(p.peerA.current!.receiveKey, counterNonce(0), data[0]!.subarray(16));
  assert.deepEqual(plain!.subarray(0, 21), ipv4Packet('x'));
  assert.ok(isAllZero(plain!.subarray(21)));
  p.advance(11_000);
  const keepalives = p.sent('b', DATA).filter((d) => d.length === 32);
  assert.equal(keepalives.length, 1, 'passive keepalive after KEEPALIVE_TIMEOUT');
});

test('rekey after REKEY_AFTER_TIME (initiator), traffic continues, previous keypair kept until the peer sends under the new one', () => {
  const p = new Pair();
  p.send('a', ipv4Packet('start'));
  const first = p.peerB.current!;
  let initiations = p.sent('a', INIT).length;
  for (let s = 1; s <= 119; s++) {
    p.advance(1000);
    p.send('a', ipv4Packet(`t${s}`));
    p.send('b', ipv4Packet(`r${s}`));
  }
  assert.equal(p.sent('a', INIT).length, initiations, 'no rekey before 120 s');
  assert.equal(p.sent('b', INIT).length, 0, 'responder never rekeys on time');
  p.advance(1500);
  p.send('a', ipv4Packet('after 120 s'));
  initiations = p.sent('a', INIT).length;
  assert.equal(initiations, 2, 'the packet after 120 s triggered a new handshake');
  assert.notEqual(p.peerB.current, first);
  assert.equal(p.peerB.previous, first);
  p.send('a', ipv4Packet('new session'));
  assert.deepEqual(p.tunnel.b.at(-1), ipv4Packet('new session'));
  assert.equal(p.tunnel.b.length, 121 + 1);
  assert.equal(p.a.stats.totalDrops() + p.b.stats.totalDrops(), 0);
  // B's packets under the new session let `first` go: it lingers LINGER_MS and is erased, before
  // the third handshake (wireguard-go keeps it until then).
  for (let s = 1; s <= 121; s++) {
    p.advance(1000);
    p.send('a', ipv4Packet(`u${s}`));
    p.send('b', ipv4Packet(`v${s}`));
    if (s === 6) assert.equal(first.isAlive, false, 'erased LINGER_MS after B moved');
  }
  assert.equal(p.sent('a', INIT).length, 3, 'a third handshake');
  p.advance(REKEY_TIMEOUT);
  assert.equal(p.a.lingering.size + p.b.lingering.size, 0);
  assert.equal(p.a.stats.totalDrops() + p.b.stats.totalDrops(), 0);
});

test('after a rekey, previous is let go once the peer sends under current: a straggler under it is still taken for LINGER_MS, then it is erased', () => {
  const p = new Pair();
  p.send('a', ipv4Packet('start'));
  p.send('b', ipv4Packet('ack'));
  const firstA = p.peerB.current!; // A's view; B holds the same session as its current
  const firstB = p.peerA.current!;
  p.advance(121_000, 1000);
  p.send('a', ipv4Packet('rekey')); // A initiates; its staged packet under the new session confirms B's next
  assert.notEqual(p.peerB.current, firstA);
  assert.equal(p.peerB.previous, firstA, 'A: B has not sent under the new session yet, previous kept');
  assert.equal(p.peerA.previous, null, 'B: it received under the new session at once, previous let go');
  assert.equal(firstB.isAlive, true, 'B: lingering, not erased');
  // A straggler B sealed under the old session before it moved (delivered late) is still taken by A.
  const straggler = sealUnder(firstB, ipv4Packet('straggler'));
  // B sends under the new session: A lets previous go (it lingers).
  p.send('b', ipv4Packet('on new'));
  assert.equal(p.peerB.previous, null);
  assert.equal(firstA.isAlive, true);
  assert.equal(p.a.lingering.size, 1);
  p.advance(REKEY_TIMEOUT - 1000, 1000);
  p.run('a', p.a.decapsulate(straggler, EP_B, p.now));
  assert.deepEqual(p.tunnel.a.at(-1), ipv4Packet('straggler'), 'taken while it lingers');
  p.advance(2000, 1000);
  assert.equal(firstA.isAlive, false, 'erased LINGER_MS after the peer moved');
  assert.equal(firstB.isAlive, false);
  assert.equal(p.a.lingering.size + p.b.lingering.size, 0);
  const late = sealUnder(firstB, ipv4Packet('too late'), 1 << 20);
  const drops = p.a.stats.drops.unknownReceiverIndex;
  p.run('a', p.a.decapsulate(late, EP_B, p.now));
  assert.equal(p.a.stats.drops.unknownReceiverIndex, drops + 1);
  assert.equal(p.a.stats.totalDrops() + p.b.stats.totalDrops(), 1);
});

test('after a rekey, previous is kept while the peer still sends under it (its confirmation lost), past LINGER_MS', () => {
  const p = new Pair();
  p.send('a', ipv4Packet('start'));
  p.send('b', ipv4Packet('ack'));
  const first = p.peerB.current!;
  p.advance(121_000, 1000);
  p.filter = (from, d) => !(from === 'a' && d[0] === DATA); // A's packets under the new session are lost
  p.send('a', ipv4Packet('rekey'));
  assert.notEqual(p.peerB.current, first);
  assert.ok(p.peerA.next, 'B waits for confirmation, still sends under the old session');
  const received = p.tunnel.a.length;
  // 10 s: longer than LINGER_MS, shorter than B's own new handshake for want of an answer (15 s).
  for (let s = 1; s <= 10; s++) {
    p.advance(1000, 1000);
    p.send('b', ipv4Packet(`old ${s}`));
  }
  assert.equal(p.tunnel.a.length, received + 10, 'every packet B sent under the old session arrived');
  assert.equal(p.peerB.previous, first, 'kept: the peer has not moved');
  assert.equal(p.a.stats.totalDrops(), 0);
});

function sealUnder(kp: { reserveSendCounters(n?: number): number; sendKey: Uint8Array; remoteIndex: number }, packet: Uint8Array, skip = 0): Uint8Array {
  if (skip) kp.reserveSendCounters(skip);
  const counter = kp.reserveSendCounters(1);
  const sealed = aeadSeal(kp.sendKey, counterNonce(counter), packet);
  const datagram = new Uint8Array(16 + sealed.length);
  writeTransportHeader(datagram, kp.remoteIndex, counter);
  datagram.set(sealed, 16);
  return datagram;
}

/** A's packet waits (queued) for the new handshake A starts at once; once it completes, B gets it. */
function queuedUntilRekeyed(p: Pair, text: string): void {
  const before = p.wire.length;
  const acts = p.a.encapsulate(p.peerB, ipv4Packet(text), p.now);
  assert.ok(acts.some((x) => x.kind === 'queued'));
  p.run('a', acts);
  assert.equal(p.sent('a', INIT, before).length, 1);
  assert.deepEqual(p.tunnel.b.at(-1), ipv4Packet(text));
}

test('REJECT_AFTER_TIME: a 180 s old keypair is neither used nor accepted', () => {
  const p = new Pair();
  p.send('a', ipv4Packet('start'));
  p.send('b', ipv4Packet('ack'));
  // a datagram sealed now but delivered after REJECT_AFTER_TIME (no hooks: the timers stay quiet)
  const kp = p.peerB.current!;
  const counter = kp.reserveSendCounters(1);
  const sealed = aeadSeal(kp.sendKey, counterNonce(counter), ipv4Packet('late'));
  const late = new Uint8Array(16 + sealed.length);
  writeTransportHeader(late, kp.remoteIndex, counter);
  late.set(sealed, 16);
  p.advance(179_000, 1000);
  assert.equal(p.peerB.currentSendKeypair(p.now), kp);
  p.advance(2000, 1000);
  assert.equal(p.peerB.currentSendKeypair(p.now), null);
  const r = p.b.decapsulate(late, EP_A, p.now);
  assert.deepEqual(r.map((x) => x.kind === 'drop' && x.reason), ['keypairExpired']);
  queuedUntilRekeyed(p, 'fresh');
});

test('REKEY_AFTER_MESSAGES and REJECT_AFTER_MESSAGES', () => {
  const p = new Pair();
  p.send('a', ipv4Packet('start'));
  p.send('b', ipv4Packet('ack'));
  p.advance(6000); // past the REKEY_TIMEOUT rate limit on initiations
  p.peerB.current!.sendCounter = REKEY_AFTER_MESSAGES + 1024; // 2^60 + 1 is not a distinct float
  const before = p.wire.length;
  p.send('b', ipv4Packet('many')); // B (responder) also rekeys on message count
  assert.equal(p.sent('b', INIT, before).length, 0, 'counter is on A\'s keypair, not B\'s');
  p.send('a', ipv4Packet('many'));
  assert.equal(p.sent('a', INIT, before).length, 1);
  p.advance(6000);
  p.peerB.current!.sendCounter = REJECT_AFTER_MESSAGES;
  queuedUntilRekeyed(p, 'no counters left');
});

test('lost response: initiation retransmitted after REKEY_TIMEOUT + jitter, then completes', () => {
  const p = new Pair();
  let dropped = 0;
  p.filter = (from, d) => !(from === 'b' && d[0] === RESP && dropped++ === 0);
  const t0 = p.now;
  p.send('a', ipv4Packet('wait for me'));
  assert.equal(p.tunnel.b.length, 0);
  p.advance(4900, 10);
  assert.equal(p.sent('a', INIT).length, 1);
  p.advance(500, 10);
  assert.equal(p.sent('a', INIT).length, 2);
  const second = p.wire.findIndex((w, i) => w.from === 'a' && w.datagram[0] === INIT && i > 0);
  assert.ok(second > 0);
  assert.deepEqual(p.tunnel.b, [ipv4Packet('wait for me')]);
  assert.ok(p.now - t0 <= 5400);
});

test('give up after REKEY_ATTEMPT_TIME: no more initiations, staged packets dropped', () => {
  const p = new Pair();
  p.filter = (from) => from !== 'a';
  p.send('a', ipv4Packet('never arrives'));
  p.advance(120_000, 50);
  const attempts = p.sent('a', INIT).length;
  assert.equal(attempts, 20, 'initial + 19 retries (wireguard-go: MaxTimerHandshakes + 2)');
  assert.equal(p.a.stats.drops.handshakeGaveUp, 1);
  assert.equal(p.peerB.staged.length, 0);
  p.advance(60_000, 500);
  assert.equal(p.sent('a', INIT).length, attempts, 'silent after giving up');
  // new data starts over
  p.filter = () => true;
  p.send('a', ipv4Packet('again'));
  assert.deepEqual(p.tunnel.b, [ipv4Packet('again')]);
});

test('data sent but nothing received for KEEPALIVE_TIMEOUT + REKEY_TIMEOUT: new handshake', () => {
  const p = new Pair();
  p.send('a', ipv4Packet('start'));
  p.filter = (from) => from === 'a'; // B's answers (keepalives included) are lost
  const before = p.wire.length;
  p.send('a', ipv4Packet('anyone there?'));
  p.advance(14_900, 50);
  assert.equal(p.sent('a', INIT, before).length, 0);
  p.advance(500, 50);
  assert.equal(p.sent('a', INIT, before).length, 1);
});

test('persistent keepalive and 10 minutes of timers in milliseconds', () => {
  const p = new Pair({ keepaliveA: 25 });
  const t = performance.now();
  p.send('a', ipv4Packet('start'));
  p.advance(600_000, 250);
  const elapsed = performance.now() - t;
  const keepalives = p.sent('a', DATA).filter((d) => d.length === 32).length;
  // 600 s / 25 s = 24 persistent ones, plus one confirming each of the ~5 handshakes
  assert.ok(keepalives >= 24 && keepalives <= 30, `keepalives: ${keepalives}`);
  assert.ok(p.a.stats.handshakesCompleted >= 4, 'keepalives keep the session fresh: rekeys every ~2 min');
  assert.equal(p.a.stats.totalDrops() + p.b.stats.totalDrops(), 0);
  assert.ok(elapsed < 3000, `10 minutes simulated in ${elapsed.toFixed(0)} ms`);
  p.send('b', ipv4Packet('still alive'));
  assert.deepEqual(p.tunnel.a.at(-1), ipv4Packet('still alive'));
});

test('keys erased after 3 * REJECT_AFTER_TIME without a new session', () => {
  const p = new Pair();
  p.send('a', ipv4Packet('start'));
  p.send('b', ipv4Packet('ack'));
  const kp = p.peerB.current!;
  const idx = kp.localIndex;
  p.advance(539_000, 1000);
  assert.ok(p.peerB.current);
  p.advance(2000, 1000);
  assert.equal(p.peerB.current, null);
  assert.ok(isAllZero(kp.sendKey) && isAllZero(kp.receiveKey));
  assert.equal(p.a.keypairByReceiverIndex(idx), undefined);
  assert.equal(p.peerA.current, null);
});

test('replayed initiation and duplicated data are dropped and counted', () => {
  const p = new Pair();
  p.send('a', ipv4Packet('one'));
  const init = p.sent('a', INIT)[0]!;
  const data = p.sent('a', DATA)[0]!;
  const r1 = p.b.decapsulate(init, EP_A, p.now + 1000);
  assert.deepEqual(r1.map((x) => x.kind === 'drop' && x.reason), ['staleTimestamp']);
  const r2 = p.b.decapsulate(data, EP_A, p.now);
  assert.deepEqual(r2.map((x) => x.kind === 'drop' && x.reason), ['replay']);
  assert.equal(p.b.stats.drops.staleTimestamp, 1);
  assert.equal(p.b.stats.drops.replay, 1);
  assert.equal(p.tunnel.b.length, 1);
});

test('out-of-order delivery inside the window (2048+) accepted, duplicates and too-old dropped', () => {
  const p = new Pair();
  p.send('a', ipv4Packet('start'));
  p.filter = () => false;
  for (let i = 0; i < 5000; i++) p.send('a', ipv4Packet(`n${i}`));
  const data = p.sent('a', DATA).slice(1); // counters 1..5000
  assert.equal(data.length, 5000);
  const deliver = (d: Uint8Array) => p.b.decapsulate(d, EP_A, p.now);
  const newest = data.at(-1)!;
  assert.equal(deliver(newest)[0]!.kind, 'tunnel');
  let accepted = 0;
  for (let i = data.length - 2; i >= data.length - 1 - 2048; i--) {
    if (deliver(data[i]!).some((x) => x.kind === 'tunnel')) accepted++;
  }
  assert.equal(accepted, 2048, '2048 older packets, newest-first, all accepted');
  assert.deepEqual(deliver(data[data.length - 5]!).map((x) => x.kind === 'drop' && x.reason), ['replay']);
  assert.deepEqual(deliver(data[0]!).map((x) => x.kind === 'drop' && x.reason), ['replay'], '5000 behind is outside the window');
});

test('garbage, truncated and malformed datagrams are counted, never thrown', () => {
  const p = new Pair();
  p.send('a', ipv4Packet('start'));
  p.send('b', ipv4Packet('ack'));
  const samples: Uint8Array[] = [new Uint8Array(0), Uint8Array.of(1), Uint8Array.of(4, 0, 0)];
  let seed = 7;
  const rnd = () => ((seed = (seed * 48271) % 2147483647) & 0xff);
  for (let n = 0; n < 300; n++) samples.push(Uint8Array.from({ length: n % 200 }, rnd));
  for (const real of p.wire.map((w) => w.datagram)) {
    for (const cut of [1, 4, 15, 16, 31, real.length - 1]) if (cut < real.length) samples.push(real.subarray(0, cut));
    const flipped = Uint8Array.from(real);
    flipped[flipped.length - 20]! ^= 0x40;
    samples.push(flipped);
    const reserved = Uint8Array.from(real);
    reserved[2] = 1;
    samples.push(reserved);
    if (real[0] === DATA) {
      const unseen = Uint8Array.from(real);
      unseen[9] = 0x55; // a counter never used: reaches the AEAD, which refuses it
      samples.push(unseen);
    }
    const longer = new Uint8Array(real.length + 1);
    longer.set(real);
    if (real[0] !== DATA) samples.push(longer);
  }
  for (const s of samples) {
    for (const dev of [p.a, p.b]) {
      const out = dev.decapsulate(s, EP_A, p.now);
      assert.ok(out.every((x) => x.kind === 'drop'), `no effect from garbage ${Buffer.from(s.subarray(0, 8)).toString('hex')}`);
    }
  }
  const drops = p.b.stats.drops;
  assert.ok(drops.badLength > 0 && drops.badType > 0 && drops.decryptFailed > 0 && drops.mac1Invalid > 0);
  assert.equal(p.b.stats.totalDrops(), samples.length);
  // the session still works
  p.send('a', ipv4Packet('still fine'));
  assert.deepEqual(p.tunnel.b.at(-1), ipv4Packet('still fine'));
});

test('handshake from an unknown key, and to the wrong device, are dropped', () => {
  const p = new Pair();
  const c = new Device({ privateKey: generatePrivateKey().raw });
  const bAsSeenByC = c.addPeer({ publicKey: p.b.publicKey, endpoint: EP_B });
  const init = c.encapsulate(bAsSeenByC, ipv4Packet('hi'), p.now).find((x) => x.kind === 'network')!;
  assert.ok(init.kind === 'network');
  const r = p.b.decapsulate(init.datagram, { address: '192.0.2.9', port: 1 }, p.now);
  assert.deepEqual(r.map((x) => x.kind === 'drop' && x.reason), ['handshakeForUnknownKey']);
  const r2 = p.a.decapsulate(init.datagram, { address: '192.0.2.9', port: 1 }, p.now);
  assert.deepEqual(r2.map((x) => x.kind === 'drop' && x.reason), ['mac1Invalid']);
});

test('under load: cookie reply, then the retransmission carries mac2 and is accepted', () => {
  const p = new Pair();
  p.b.underLoad = true;
  p.send('a', ipv4Packet('busy?'));
  assert.equal(p.sent('b', COOKIE).length, 1);
  assert.equal(p.sent('b', RESP).length, 0);
  assert.equal(p.b.stats.drops.mac2Required, 1);
  assert.equal(p.peerB.cookieGenerator.hasCookie(p.now), true);
  p.advance(5500, 50);
  assert.equal(p.sent('a', INIT).length, 2);
  assert.equal(p.sent('b', RESP).length, 1, 'initiation with mac2 accepted under load');
  assert.deepEqual(p.tunnel.b, [ipv4Packet('busy?')]);
  // a forged cookie reply is refused
  const forged = Uint8Array.from(p.sent('b', COOKIE)[0]!);
  new DataView(forged.buffer).setUint32(4, p.peerB.current!.localIndex, true);
  forged[40]! ^= 1;
  assert.deepEqual(p.a.decapsulate(forged, EP_B, p.now).map((x) => x.kind === 'drop' && x.reason), ['cookieDecryptFailed']);
});

test('endpoint roaming: any authenticated packet updates the endpoint; unknown endpoint learned', () => {
  const p = new Pair({ endpointOnB: false });
  assert.equal(p.peerA.endpoint, null);
  p.send('a', ipv4Packet('hi'));
  assert.deepEqual(p.peerA.endpoint, EP_A);
  const roamed = { address: '198.51.100.7', port: 40000 };
  p.filter = () => false;
  p.send('a', ipv4Packet('from elsewhere'));
  const d = p.sent('a', DATA).at(-1)!;
  p.b.decapsulate(d, roamed, p.now);
  assert.deepEqual(p.peerA.endpoint, roamed);
  const forged = Uint8Array.from(d);
  forged[20]! ^= 1;
  p.b.decapsulate(forged, { address: '203.0.113.66', port: 1 }, p.now);
  assert.deepEqual(p.peerA.endpoint, roamed, 'unauthenticated packets do not move the endpoint');
});

test('preshared key: matching works, mismatch fails the handshake', () => {
  const psk = new Uint8Array(32).fill(9);
  const ok = new Pair({ psk });
  ok.send('a', ipv4Packet('psk'));
  assert.deepEqual(ok.tunnel.b, [ipv4Packet('psk')]);
  const bad = new Pair();
  bad.peerA.handshake.presharedKey = new Uint8Array(32).fill(1);
  bad.send('a', ipv4Packet('psk'));
  assert.equal(bad.tunnel.b.length, 0);
  assert.equal(bad.a.stats.drops.handshakeDecryptFailed, 1);
});

test('key log lines for each handshake side', () => {
  const p = new Pair({ keylog: true });
  p.send('a', ipv4Packet('log'));
  assert.equal(p.keylog.length, 2);
  for (const text of p.keylog) {
    assert.match(text, /^LOCAL_STATIC_PRIVATE_KEY = [A-Za-z0-9+/]{43}=\nREMOTE_STATIC_PUBLIC_KEY = [A-Za-z0-9+/]{43}=\nLOCAL_EPHEMERAL_PRIVATE_KEY = [A-Za-z0-9+/]{43}=\nPRESHARED_KEY = A{43}=\n$/);
  }
  assert.ok(p.keylog[0]!.includes(`REMOTE_STATIC_PUBLIC_KEY = ${p.b.publicKeyBase64}`));
});

test('batched datapath API: packets framed in place by the core, accepted by the core, hooks keep protocol state', () => {
  const p = new Pair();
  p.send('a', ipv4Packet('start'));
  p.send('b', ipv4Packet('ack'));
  // B sends a batch as the engine does: each packet framed in one buffer (nonce, header, packet,
  // padding, tag room), sealed outside the core.
  const slot = 128, buf = new Uint8Array(3 * slot);
  const datagrams = [0, 1, 2].map((i) => {
    const kp = p.b.sendingKeypair(p.peerA, p.now)!;
    assert.ok(kp, 'a session, an endpoint, nothing staged');
    const packet = ipv4Packet(`batch${i}`.padEnd(12, '.'));
    const nonce = i * slot, off = nonce + 32;
    buf.set(packet, off);
    const padded = frameTransport(buf, off, packet.length, kp, p.b.mtu, buf, nonce);
    assert.equal(padded, 32, "a 32-byte packet needs no padding");
    buf.set(aeadSeal(kp.sendKey, buf.subarray(nonce, nonce + 12), buf.subarray(off, off + padded)), off);
    return buf.slice(off - MESSAGE_TRANSPORT_HEADER_SIZE, off + padded + 16);
  });
  const first = transportCounter(datagrams[0]!);
  assert.deepEqual(datagrams.map((d) => transportCounter(d)), [first, first + 1, first + 2], 'one counter reserved per packet');
  assert.deepEqual(p.peerA.onDataSent(p.now, datagrams.reduce((n, d) => n + d.length, 0)), []);
  // A receives them "natively", a replayed copy among them.
  const rx = [...datagrams, datagrams[1]!].map((d) => Uint8Array.from(d));
  const keypairs = rx.map((d) => p.a.transportKeypair(d, 0, d.length, p.now));
  assert.ok(keypairs.every((k) => k !== null), 'the copy also passes the pre-check: nothing was accepted yet');
  let plaintextBytes = 0;
  let replays = 0;
  rx.forEach((d, i) => {
    const rk = keypairs[i]!;
    const counter = transportCounter(d);
    const nonce = transportNonceInPlace(d, 0);
    const plain = aeadOpen(rk.receiveKey, d.subarray(nonce, nonce + 12), d.subarray(16));
    if (!p.a.acceptTransport(rk, counter, plain !== null)) { replays++; return; }
    assert.equal(p.a.innerPacket(plain!, 0, plain!.length, rk.peer), 32);
    plaintextBytes += plain!.length;
  });
  assert.equal(replays, 1, 'the copy is refused after the AEAD');
  assert.equal(p.a.stats.drops.replay, 1);
  assert.equal(p.a.transportKeypair(datagrams[0]!, 0, datagrams[0]!.length, p.now), null, 'an accepted counter fails the pre-check');
  assert.equal(p.a.stats.drops.replay, 2);
  const rk = p.a.keypairByReceiverIndex(transportReceiver(datagrams[0]!))!;
  const acts: readonly Action[] = rk.peer.onAuthenticatedDataReceived(rk, p.now, EP_B, plaintextBytes, 3);
  assert.deepEqual(acts, []);
  assert.ok(p.peerB.timers.sendKeepaliveAt !== null, 'passive keepalive armed by the hook');
  assert.equal(p.a.stats.dataPacketsReceived, 1 + 3);
  // the single-packet path continues after the batch's counters
  p.send('b', ipv4Packet('after batch'));
  assert.equal(transportCounter(p.sent('b', DATA).at(-1)!), first + 3);
  assert.deepEqual(p.tunnel.a.at(-1), ipv4Packet('after batch'));
  assert.equal(p.sent('b', DATA).length >= 1, true);
  // a forged tag is refused after the AEAD, by the same call, under the core's name for it
  const sealed = p.b.encapsulate(p.peerA, ipv4Packet('forged'), p.now).find((a) => a.kind === 'network');
  assert.ok(sealed && sealed.kind === 'network');
  const forged = Uint8Array.from(sealed.datagram);
  forged[forged.length - 1]! ^= 1;
  const drop = p.a.decapsulate(forged, EP_B, p.now);
  assert.deepEqual(drop.map((a) => a.kind === 'drop' && a.reason), ['decryptFailed']);
  assert.equal(p.a.stats.drops.decryptFailed, 1);
});

test('a peer with a session but no endpoint: nothing is sealed for it, the packet is dropped as noEndpoint', () => {
  const p = new Pair();
  p.send('a', ipv4Packet('start'));
  assert.ok(p.peerB.currentSendKeypair(p.now), 'a usable session');
  p.a.addPeer({ publicKey: p.b.publicKey, endpoint: null }); // the agent forgot where B is
  assert.equal(p.a.sendingKeypair(p.peerB, p.now), null);
  const before = p.wire.length;
  const actions = p.a.encapsulate(p.peerB, ipv4Packet('nowhere'), p.now);
  assert.deepEqual(actions.map((a) => a.kind === 'drop' && a.reason), ['noEndpoint']);
  assert.equal(p.a.stats.drops.noEndpoint, 1);
  assert.equal(p.peerB.staged.length, 0);
  assert.equal(p.wire.length, before, 'nothing sent');
});

for (const greater of ['a', 'b'] as const) {
  test(`initiations that cross are both answered and converge in one round trip on one session (${greater}'s key greater)`, () => {
    const p = new Pair({ greater });
    const held: { from: 'a' | 'b'; datagram: Uint8Array }[] = [];
    p.filter = (from, d) => { held.push({ from, datagram: d }); return false; };
    p.send('a', ipv4Packet('from a'));
    p.send('b', ipv4Packet('from b'));
    assert.deepEqual(held.map((h) => [h.from, h.datagram[0]]), [['a', INIT], ['b', INIT]], 'both initiated');
    // Both initiations cross on the wire; from now on everything is delivered at once.
    p.filter = () => true;
    // Each side receives the other's initiation before anything it answers has arrived.
    const atB = p.b.decapsulate(held[0]!.datagram, EP_A, p.now);
    const atA = p.a.decapsulate(held[1]!.datagram, EP_B, p.now);
    assert.ok(atB.some((x) => x.kind === 'network' && x.datagram[0] === RESP), 'B answers A\'s initiation');
    assert.ok(atA.some((x) => x.kind === 'network' && x.datagram[0] === RESP), 'A answers B\'s initiation');
    p.run('b', atB);
    p.run('a', atA);
    // No time passed: neither side waited REKEY_TIMEOUT for a retry.
    assert.deepEqual(p.tunnel.b, [ipv4Packet('from a')]);
    assert.deepEqual(p.tunnel.a, [ipv4Packet('from b')]);
    assert.equal(p.a.stats.totalDrops() + p.b.stats.totalDrops(), 0, 'both responses completed a session, nothing dropped');
    // A few packets later both send under the one session the greater key initiated.
    for (let i = 0; i < 3; i++) { p.send('a', ipv4Packet(`a${i}`)); p.send('b', ipv4Packet(`b${i}`)); }
    const leader = greater === 'a' ? p.peerB : p.peerA;
    const follower = greater === 'a' ? p.peerA : p.peerB;
    assert.equal(leader.current!.isInitiator, true, 'the greater key initiated the kept session');
    assert.equal(follower.current!.isInitiator, false);
    assert.deepEqual(leader.current!.sendKey, follower.current!.receiveKey, 'one session both ways');
    assert.equal(p.tunnel.a.length, 4);
    assert.equal(p.tunnel.b.length, 4);
    assert.equal(p.a.stats.totalDrops() + p.b.stats.totalDrops(), 0);
    // The initiator of the kept session rekeys on time, and the pair goes on.
    p.advance(121_000, 1000);
    const before = p.wire.length;
    p.send(greater, ipv4Packet('after 121 s'));
    assert.equal(p.sent(greater, INIT, before).length, 1);
    p.send(greater === 'a' ? 'b' : 'a', ipv4Packet('reply'));
    assert.equal(p.tunnel.a.length + p.tunnel.b.length, 10);
  });

  for (const lostResponseFrom of ['a', 'b'] as const) {
    test(`crossing initiations with ${lostResponseFrom}'s response lost still converge at once (${greater}'s key greater)`, () => {
      const p = new Pair({ greater });
      const held: { from: 'a' | 'b'; datagram: Uint8Array }[] = [];
      p.filter = (from, d) => { held.push({ from, datagram: d }); return false; };
      p.send('a', ipv4Packet('from a'));
      p.send('b', ipv4Packet('from b'));
      p.filter = (from, d) => !(from === lostResponseFrom && d[0] === RESP);
      const atB = p.b.decapsulate(held[0]!.datagram, EP_A, p.now);
      const atA = p.a.decapsulate(held[1]!.datagram, EP_B, p.now);
      p.run('b', atB);
      p.run('a', atA);
      p.filter = () => true;
      assert.deepEqual(p.tunnel.b, [ipv4Packet('from a')]);
      assert.deepEqual(p.tunnel.a, [ipv4Packet('from b')]);
      for (let i = 0; i < 3; i++) { p.send('a', ipv4Packet(`a${i}`)); p.send('b', ipv4Packet(`b${i}`)); }
      assert.deepEqual(p.peerB.current!.sendKey, p.peerA.current!.receiveKey, 'one session both ways');
      assert.equal(p.a.stats.totalDrops() + p.b.stats.totalDrops(), 0);
    });
  }
}

/**
 * One-way reachability: `stale` holds a wrong endpoint for the other side, so its initiations
 * (and anything it sends before it learns the right one) are lost; the other side's reach it.
 * Both have traffic; the session must be up both ways within one REKEY_TIMEOUT.
 */
function oneWay(stale: 'a' | 'b', greater: 'a' | 'b', first: 'a' | 'b'): void {
  const p = new Pair({ greater });
  const wrong = { address: '192.0.2.99', port: 51871 };
  (stale === 'a' ? p.peerB : p.peerA).endpoint = wrong;
  const other = stale === 'a' ? 'b' : 'a';
  const t0 = p.now;
  const second = first === 'a' ? 'b' : 'a';
  p.send(first, ipv4Packet(`from ${first}`));
  p.advance(1000, 10);
  p.send(second, ipv4Packet(`from ${second}`));
  while (p.now - t0 < REKEY_TIMEOUT && (p.tunnel.a.length === 0 || p.tunnel.b.length === 0)) p.advance(10, 10);
  assert.ok(p.now - t0 < REKEY_TIMEOUT, `converged after ${p.now - t0} ms`);
  assert.deepEqual(p.tunnel[other], [ipv4Packet(`from ${stale}`)]);
  assert.deepEqual(p.tunnel[stale], [ipv4Packet(`from ${other}`)]);
  assert.ok(p.lost.every((l) => l.from === stale && l.datagram[0] === INIT), 'only the stale side\'s initiations were lost');
  if (first === stale) assert.ok(p.lost.length > 0, 'its own initiation was in flight when the other\'s arrived');
  const learned = stale === 'a' ? p.peerB : p.peerA;
  assert.deepEqual(learned.endpoint, p.at[other], 'the stale side learned the right endpoint from the initiation it answered');
  // and from now on both directions flow without a handshake
  const before = p.wire.length;
  p.send('a', ipv4Packet('again a'));
  p.send('b', ipv4Packet('again b'));
  assert.equal(p.sent('a', INIT, before).length + p.sent('b', INIT, before).length, 0);
  assert.deepEqual(p.tunnel.b.at(-1), ipv4Packet('again a'));
  assert.deepEqual(p.tunnel.a.at(-1), ipv4Packet('again b'));
}

for (const stale of ['a', 'b'] as const) {
  for (const greater of ['a', 'b'] as const) {
    for (const first of ['a', 'b'] as const) {
      const other = stale === 'a' ? 'b' : 'a';
      test(`one-way reachability: ${other}'s initiations reach ${stale}, ${stale}'s do not; ${first} sends first, ${greater}'s key greater: up within REKEY_TIMEOUT`, () => {
        oneWay(stale, greater, first);
      });
    }
  }
}

test('peers share slab chunks: a removed peer keeps its own bytes, its slot serves the next peer', () => {
  const p = new Pair();
  const others = Array.from({ length: 70 }, () => generatePrivateKey().publicKey); // more than one chunk
  const added = others.map((k) => p.a.addPeer({ publicKey: k }));
  const victim = added[3]!;
  const victimKey = Uint8Array.from(victim.publicKey);
  assert.ok(p.a.removePeer(victim.publicKey));
  const fresh = generatePrivateKey().publicKey;
  const newcomer = p.a.addPeer({ publicKey: fresh });
  assert.equal(newcomer.publicKey.buffer, added[2]!.publicKey.buffer, 'the freed slot was reused');
  assert.deepEqual(victim.publicKey, victimKey, 'the removed peer still reads its own key');
  assert.equal(victim.publicKeyBase64, Buffer.from(victimKey).toString('base64'));
  assert.deepEqual(newcomer.publicKey, fresh);
  assert.equal(p.a.peer(Buffer.from(fresh).toString('base64')), newcomer);
  assert.equal(p.a.peer(victimKey), undefined);
  for (let i = 0; i < others.length; i++) if (i !== 3) assert.deepEqual(added[i]!.publicKey, others[i]);
  // The pair's own peers, sharing chunks with all these, still handshake and carry data.
  p.send('a', ipv4Packet('after churn'));
  assert.deepEqual(p.tunnel.b, [ipv4Packet('after churn')]);
});

test('many peers raise the load threshold: 5,000 peers\' own rekeys (200 initiations in a second) are worked on, not answered with cookies; a flood past the raised threshold still is', () => {
  const p = new Pair();
  for (let i = 0; i < 5000; i++) p.b.addPeer({ publicKey: generatePrivateKey().publicKey, endpoint: null });
  assert.equal(p.b.peerCount, 5001);
  assert.equal(handshakeLoadThreshold(p.b.peerCount), 5001 / PEERS_PER_MESSAGE_PER_SECOND);
  const stranger = () => new Device({ privateKey: generatePrivateKey().raw });
  const inits = Array.from({ length: 400 }, () => {
    const c = stranger();
    const a = c.initiateHandshake(c.addPeer({ publicKey: p.b.publicKey, endpoint: EP_B }), p.now).find((x) => x.kind === 'network')!;
    assert.ok(a.kind === 'network');
    return a.datagram;
  });
  const from = { address: '198.51.100.9', port: 40000 };
  for (const d of inits.slice(0, 200)) p.b.decapsulate(d, from, p.now);
  const drops = p.b.stats.drops;
  assert.equal(drops.handshakeForUnknownKey, 200, 'all 200 worked on');
  assert.equal(drops.mac2Required, 0, 'no cookie asked for');
  // Past 5,001 / 15 = 333 in the same second the device is under load, as with few peers past 100.
  for (const d of inits.slice(200)) p.b.decapsulate(d, from, p.now);
  assert.equal(drops.handshakeForUnknownKey, 333);
  assert.equal(drops.mac2Required, 67);
});

test('handshake flood: past 100 a second the device is under load; cookie replies within a device-wide budget, a source that proves its address (mac2) gets only its own rate, a real peer gets through', () => {
  const p = new Pair();
  const flooder = { address: '198.51.100.7', port: 40000 };
  const stranger = () => new Device({ privateKey: generatePrivateKey().raw });
  const initiation = (c: Device, peer = c.addPeer({ publicKey: p.b.publicKey, endpoint: EP_B })) => {
    const a = c.initiateHandshake(peer, p.now).find((x) => x.kind === 'network')!;
    assert.ok(a.kind === 'network');
    return a.datagram;
  };
  // 300 valid initiations (mac1 right) from random static keys, one source, within one millisecond.
  const floodInits = Array.from({ length: 300 }, () => initiation(stranger()));
  const replies: Uint8Array[] = [];
  const flood = (ds: Uint8Array[], from = flooder, now = p.now) => {
    for (const d of ds) for (const x of p.b.decapsulate(d, from, now)) if (x.kind === 'network') replies.push(x.datagram);
  };
  flood(floodInits);
  const drops = p.b.stats.drops;
  assert.equal(drops.handshakeForUnknownKey, 100, 'the first 100 are worked on (and refused: unknown keys)');
  assert.equal(drops.mac2Required, 200, 'then mac2 is required: cookie replies, no Diffie-Hellman');
  assert.equal(drops.handshakeRateLimited, 0);
  assert.equal(replies.length, 200);
  assert.ok(replies.every((r) => r[0] === COOKIE && r.length === 64));
  assert.equal(p.b.peerCount, 1);
  // A real peer from its own address during the flood: a cookie, then its retry with mac2 wins.
  p.send('a', ipv4Packet('during the flood'));
  assert.equal(p.sent('b', COOKIE).length, 1);
  assert.equal(p.peerB.cookieGenerator.hasCookie(p.now), true);
  // The rest of the cookie budget (250 a second) goes; past it a message without mac2 is dropped unread.
  flood(floodInits.slice(0, 100));
  assert.equal(drops.mac2Required, 250);
  assert.equal(drops.handshakeRateLimited, 51);
  // A flooder that receives at its address holds a cookie: its messages pass mac2 and meet its own rate (burst 5).
  const owner = stranger();
  const ownerPeer = owner.addPeer({ publicKey: p.b.publicKey, endpoint: EP_B });
  p.now += 1000; // a refilled cookie budget
  flood([initiation(owner, ownerPeer)]);
  for (const x of owner.decapsulate(replies.at(-1)!, EP_B, p.now)) assert.notEqual(x.kind, 'drop');
  const worked = drops.handshakeForUnknownKey, limited = drops.handshakeRateLimited;
  flood(Array.from({ length: 50 }, () => initiation(owner, ownerPeer)));
  assert.equal(drops.handshakeForUnknownKey - worked, 5, 'its burst is worked on');
  assert.equal(drops.handshakeRateLimited - limited, 45, 'the rest is dropped before any Diffie-Hellman');
  for (const d of floodInits.slice(0, 50)) p.b.decapsulate(d, flooder, p.now); // the flood goes on
  p.advance(5500, 50);
  assert.deepEqual(p.tunnel.b, [ipv4Packet('during the flood')]);
  // Two quiet seconds later the load is gone: no cookies asked.
  p.advance(200_000, 1000);
  const before = p.sent('b', COOKIE).length;
  const unknown = drops.handshakeForUnknownKey;
  p.b.decapsulate(floodInits[0]!, flooder, p.now);
  assert.equal(p.sent('b', COOKIE).length, before);
  assert.equal(drops.handshakeForUnknownKey, unknown + 1);
});

test('forged initiations bearing a real peer\'s address (200/s, garbage and valid mac1) do not keep it out: the peer that starts over gets its session within one retry', () => {
  const p = new Pair();
  // What an attacker can forge without receiving at A's address: garbage, and initiations with a
  // valid mac1 (B's public key is public) but no mac2 (no cookie for A's address).
  const garbage = Uint8Array.from({ length: 148 }, (_, i) => (i * 73 + 11) & 0xff);
  garbage.set([1, 0, 0, 0]);
  const attacker = new Device({ privateKey: generatePrivateKey().raw });
  const withMac1 = () => {
    const a = attacker.initiateHandshake(attacker.addPeer({ publicKey: p.b.publicKey, endpoint: EP_B }), p.now).find((x) => x.kind === 'network')!;
    assert.ok(a.kind === 'network');
    return a.datagram;
  };
  const forged = [garbage, withMac1()];
  let n = 0;
  const flood = (ms: number) => {
    for (const end = p.now + ms; p.now < end;) { // 200 a second, 5 ms apart, from A's address
      p.run('b', p.b.decapsulate(forged[n++ % 2]!, EP_A, p.now));
      p.advance(5, 5);
    }
  };
  flood(1500); // B is under load
  const start = p.now;
  p.send('a', ipv4Packet('after a restart'));
  let delivered = -1;
  for (let t = 0; t < 10_000 && delivered < 0; t += 100) {
    flood(100);
    if (p.tunnel.b.length) delivered = p.now - start;
  }
  assert.ok(delivered >= 0, `A kept out for the whole 10 s flood (drops ${JSON.stringify(p.b.stats.drops)})`);
  assert.ok(delivered <= 5000 + 1000, `in after one retry with mac2 (REKEY_TIMEOUT 5 s): ${delivered} ms`);
  assert.deepEqual(p.tunnel.b, [ipv4Packet('after a restart')]);
  assert.ok(p.b.stats.drops.mac1Invalid > 100 && p.b.stats.drops.mac2Required > 100, 'both kinds of forgery arrived and were refused by their MACs');
});
