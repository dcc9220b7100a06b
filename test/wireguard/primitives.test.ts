// Replay window, message parsing, TAI64N, the Noise constants and the handshake state machine alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ReplayWindow, REPLAY_WINDOW_SIZE, parseInitiation, parseResponse, parseCookieReply, checkTransport, messageType,
  newInitiation, newResponse, tai64n, tai64nAfter, INITIAL_CHAIN_KEY, INITIAL_HASH, StaticIdentity,
  MESSAGE_INITIATION_SIZE, MESSAGE_RESPONSE_SIZE, MESSAGE_COOKIE_REPLY_SIZE, REJECT_AFTER_MESSAGES, REKEY_AFTER_MESSAGES_BIG,
  REJECT_AFTER_MESSAGES_BIG, innerPacketLength, paddedLength,
} from '../../src/wireguard/index.js';
import {
  Handshake, createInitiation, consumeInitiation, createResponse, consumeResponse, deriveSessionKeys, setFixedEphemeralForTests,
} from '../../src/wireguard/noise-handshake.js';
import { generatePrivateKey, hash, setCryptoBackend, cryptoBackend, type CryptoBackend } from '../../src/crypto/index.js';
import { native } from '../../src/native/addon.js';

test('replay window: in-order, duplicates, out-of-order, window edge, limit', () => {
  assert.ok(REPLAY_WINDOW_SIZE >= 2048);
  const w = new ReplayWindow();
  assert.ok(w.check(0));
  assert.equal(w.check(0), false);
  for (let i = 1; i < 100; i++) assert.ok(w.check(i));
  assert.ok(w.check(10_000));
  assert.ok(w.check(10_000 - REPLAY_WINDOW_SIZE + 1), 'oldest counter inside the window');
  assert.equal(w.check(10_000 - REPLAY_WINDOW_SIZE), false, 'just outside');
  assert.ok(w.check(9_999));
  assert.equal(w.wouldAccept(9_999), false);
  assert.ok(w.wouldAccept(9_998));
  assert.ok(w.check(1e12), 'big jump clears the ring');
  assert.ok(w.check(1e12 - 5));
  assert.equal(w.check(1e12 - 5), false);
  assert.equal(w.check(-1), false);
  assert.equal(w.check(REJECT_AFTER_MESSAGES), false);
  const small = new ReplayWindow(10);
  assert.ok(small.check(9));
  assert.equal(small.check(10), false, 'counters at the limit are rejected');
  assert.equal(REKEY_AFTER_MESSAGES_BIG, 2n ** 60n);
  assert.equal(REJECT_AFTER_MESSAGES_BIG, 2n ** 64n - 2n ** 13n - 1n);
});

test('replay window: every permutation inside a 2048 block accepted exactly once', () => {
  const w = new ReplayWindow();
  const order = Array.from({ length: 4096 }, (_, i) => i);
  let seed = 3;
  for (let i = order.length - 1; i > 0; i--) {
    seed = (seed * 48271) % 2147483647;
    const j = seed % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  // shuffle only locally (within 2048 of the max) so everything stays inside the window
  order.sort((a, b) => Math.floor(a / 2048) - Math.floor(b / 2048));
  let ok = 0;
  for (const c of order) if (w.check(c)) ok++;
  assert.equal(ok, 4096);
  for (const c of order) assert.equal(w.check(c), false);
});

test('replay window: in-order runs without a ring decide as the ring does (gaps, reordering, replays, a handover)', () => {
  // The model: a counter is accepted once, when below the limit and not REPLAY_WINDOW_SIZE or more behind the highest.
  let seed = 11;
  const rand = (n: number) => { seed = (seed * 48271) % 2147483647; return seed % n; };
  for (let round = 0; round < 40; round++) {
    const w = new ReplayWindow();
    const seen = new Set<number>();
    let top = -1;
    const inOrder = rand(3) === 0 ? rand(40) * 32 + rand(32) : rand(5000); // sometimes a run ending on a word's last bit
    const counters: number[] = [];
    for (let c = 0; c < inOrder; c++) counters.push(c);
    for (let k = 0; k < 3000; k++) {
      const last = counters.length ? counters[counters.length - 1]! : 0;
      const r = rand(10);
      counters.push(r < 5 ? last + 1 : r < 7 ? last + 1 + rand(5000) : r < 9 ? Math.max(0, last - rand(REPLAY_WINDOW_SIZE + 64)) : rand(last + 1));
    }
    for (const [k, c] of counters.entries()) {
      if (k === inOrder) { // a handover mid-way: the saved window decides as the one it was saved from
        const moved = new ReplayWindow();
        assert.ok(moved.restore(JSON.parse(JSON.stringify(w.save()))));
        for (let back = 0; back <= REPLAY_WINDOW_SIZE + 40 && back <= top + 40; back += 7) assert.equal(moved.wouldAccept(top - back + 20), w.wouldAccept(top - back + 20));
      }
      const expect = c >= 0 && !seen.has(c) && (c > top || top - c < REPLAY_WINDOW_SIZE);
      assert.equal(w.wouldAccept(c), expect, `round ${round}: wouldAccept(${c}) after top ${top}`);
      assert.equal(w.check(c), expect, `round ${round}: check(${c}) after top ${top}`);
      if (expect) { seen.add(c); top = Math.max(top, c); }
    }
  }
});

test('message parsers: strict sizes and types, round trips', () => {
  const { bytes: init, fields } = newInitiation(0xdeadbeef);
  fields.ephemeral.fill(1);
  fields.encryptedStatic.fill(2);
  fields.encryptedTimestamp.fill(3);
  fields.mac1.fill(4);
  fields.mac2.fill(5);
  assert.equal(init.length, MESSAGE_INITIATION_SIZE);
  const m = parseInitiation(init);
  assert.ok(typeof m !== 'string');
  assert.equal(m.sender, 0xdeadbeef);
  assert.deepEqual(m.mac2, new Uint8Array(16).fill(5));
  assert.equal(parseInitiation(init.subarray(0, 147)), 'badLength');
  assert.equal(parseResponse(init), 'badType');
  const resp = newResponse(1, 2).bytes;
  assert.equal(resp.length, MESSAGE_RESPONSE_SIZE);
  const r = parseResponse(resp);
  assert.ok(typeof r !== 'string' && r.receiver === 2);
  assert.equal(parseCookieReply(new Uint8Array(MESSAGE_COOKIE_REPLY_SIZE).fill(0).map((_, i) => (i === 0 ? 3 : 0))).constructor, Object);
  assert.equal(parseCookieReply(Uint8Array.of(3, 0, 0, 0)), 'badLength');
  assert.equal(checkTransport(Uint8Array.of(4, 0, 0, 0, 1)), 'badLength');
  assert.equal(checkTransport(new Uint8Array(32).map((_, i) => (i === 0 ? 4 : 0))), null);
  assert.equal(messageType(Uint8Array.of(5, 0, 0, 0)), 0);
  assert.equal(messageType(Uint8Array.of(1, 0, 1, 0)), 0);
});

test('TAI64N: 12 bytes, ordered by time, label 2^62 + 10 + seconds', () => {
  const t = tai64n(1_700_000_000_123);
  assert.equal(t.length, 12);
  assert.equal(new DataView(t.buffer).getBigUint64(0), 0x4000000000000000n + 10n + 1_700_000_000n);
  assert.ok(tai64nAfter(tai64n(1_700_000_001_000), t));
  assert.equal(tai64nAfter(t, t), false);
  assert.equal(tai64nAfter(tai64n(1_700_000_000_000), t), false);
});

test('Noise constants: initial chaining key and hash', () => {
  assert.deepEqual(INITIAL_CHAIN_KEY, hash(new Uint8Array(Buffer.from('Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s'))));
  assert.deepEqual(INITIAL_HASH, hash(INITIAL_CHAIN_KEY, new Uint8Array(Buffer.from('WireGuard v1 zx2c4 Jason@zx2c4.com'))));
  // well-known value of HASH(CONSTRUCTION), shared by every WireGuard implementation
  assert.equal(Buffer.from(INITIAL_CHAIN_KEY).toString('hex'), '60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36');
});

test('handshake state machine: both sides derive mirrored keys', () => {
  const i = new StaticIdentity(generatePrivateKey());
  const r = new StaticIdentity(generatePrivateKey());
  const hsI = new Handshake(i, r.publicKey);
  const hsR = new Handshake(r, i.publicKey);
  const msg = createInitiation(i, hsI, 11, tai64n(Date.now()))!;
  const parsed = parseInitiation(msg);
  assert.ok(typeof parsed !== 'string');
  const got = consumeInitiation(r, parsed, (k) => (Buffer.from(k).equals(Buffer.from(i.publicKey)) ? hsR : undefined), 0);
  assert.equal(got, hsR);
  const resp = parseResponse(createResponse(hsR, 22)!);
  assert.ok(typeof resp !== 'string');
  assert.equal(consumeResponse(i, hsI, resp), null);
  const ki = deriveSessionKeys(hsI)!;
  const kr = deriveSessionKeys(hsR)!;
  assert.deepEqual(ki.sendKey, kr.receiveKey);
  assert.deepEqual(ki.receiveKey, kr.sendKey);
  assert.equal(ki.remoteIndex, 22);
  assert.equal(kr.remoteIndex, 11);
  assert.equal(deriveSessionKeys(hsI), null, 'handshake state zeroed after derivation');
  assert.equal(consumeResponse(i, hsI, resp), 'unexpectedResponse', 'a response is consumed once');
});

// With the addon each step is one native call (native/noise-handshake.c); without it the steps
// run on the primitives. Same keys, ephemerals and timestamps: the same bytes on the wire and the
// same session keys, each side on either backend, and a forged response leaves the handshake as it was.
test('handshake steps: the native calls and the primitives write the same bytes', (t) => {
  const initial = cryptoBackend();
  if (setCryptoBackend('native') !== 'native') return t.skip('the native addon is not built');
  const bits = native().noiseX25519Backend();
  // Where node's fe64 field routines serve (the fixed base), the steps' own ladder passed its check too.
  if (bits & 2) assert.ok(bits & 4, 'native/x25519.c: the batched ladder disagreed with OpenSSL at load');
  const key = (label: string) => hash(new Uint8Array(Buffer.from(label)));
  const i = new StaticIdentity(key('initiator static'));
  const r = new StaticIdentity(key('responder static'));
  const run = (initiatorSide: CryptoBackend, responderSide: CryptoBackend, psk?: Uint8Array, round = 0) => {
    setCryptoBackend(initiatorSide);
    const hsI = new Handshake(i, r.publicKey, psk);
    setFixedEphemeralForTests(key(`initiator ephemeral ${round}`));
    const init = createInitiation(i, hsI, 11, tai64n(1_700_000_000_000 + round))!;
    const ephI = Uint8Array.from(hsI.localEphemeral!);
    setCryptoBackend(responderSide);
    const hsR = new Handshake(r, i.publicKey, psk);
    // Natively the responder draws its ephemeral as it consumes the initiation, else in createResponse.
    setFixedEphemeralForTests(key(`responder ephemeral ${round}`));
    const lowOrderInit = Uint8Array.from(init);
    lowOrderInit.fill(0, 8, 40);
    lowOrderInit[8] = 1; // ephemeral u = 1 (low order): es would be all zero
    assert.equal(consumeInitiation(r, parseInitiation(lowOrderInit) as never, () => hsR, 0), 'handshakeDecryptFailed');
    const parsed = parseInitiation(init);
    assert.ok(typeof parsed !== 'string');
    assert.equal(consumeInitiation(r, parsed, () => hsR, 0), hsR);
    const resp = createResponse(hsR, 22)!;
    setFixedEphemeralForTests(null);
    setCryptoBackend(initiatorSide);
    const forged = Uint8Array.from(resp);
    forged[50]! ^= 1;
    assert.equal(consumeResponse(i, hsI, parseResponse(forged) as never), 'handshakeDecryptFailed');
    const lowOrder = Uint8Array.from(resp);
    lowOrder.fill(0, 12, 44); // ephemeral u = 0: ee would be all zero, which WireGuard refuses
    assert.equal(consumeResponse(i, hsI, parseResponse(lowOrder) as never), 'handshakeDecryptFailed');
    assert.equal(consumeResponse(i, hsI, parseResponse(resp) as never), null, 'the real response still completes it');
    const ki = deriveSessionKeys(hsI)!;
    setCryptoBackend(responderSide);
    const kr = deriveSessionKeys(hsR)!;
    assert.deepEqual(ki.sendKey, kr.receiveKey);
    assert.deepEqual(ki.receiveKey, kr.sendKey);
    const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
    return [hex(init), hex(resp), hex(ki.sendKey), hex(ki.receiveKey), hex(ephI)].join(' ');
  };
  try {
    // Several rounds: each draws other keys through the native ladder and the fixed base.
    for (let round = 0; round < 6; round++) {
      const psk = round % 2 ? key(`preshared ${round}`) : undefined;
      const reference = run('node', 'node', psk, round);
      assert.equal(run('native', 'native', psk, round), reference, 'native on both sides');
      assert.equal(run('native', 'node', psk, round), reference, 'native initiator');
      assert.equal(run('node', 'native', psk, round), reference, 'native responder');
    }
    // Fresh ephemerals (the native steps draw their own): still a handshake across backends.
    setCryptoBackend('native');
    const hsI = new Handshake(i, r.publicKey);
    const init = parseInitiation(createInitiation(i, hsI, 5, tai64n(Date.now()))!) as never;
    setCryptoBackend('node');
    const hsR = new Handshake(r, i.publicKey);
    assert.equal(consumeInitiation(r, init, () => hsR, 0), hsR);
    const resp = parseResponse(createResponse(hsR, 6)!) as never;
    setCryptoBackend('native');
    assert.equal(consumeResponse(i, hsI, resp), null);
    assert.deepEqual(deriveSessionKeys(hsI)!.sendKey, deriveSessionKeys(hsR)!.receiveKey);
  } finally {
    setFixedEphemeralForTests(null);
    setCryptoBackend(initial);
  }
});

test('inner packet length and padding', () => {
  const v4 = new Uint8Array(48);
  v4[0] = 0x45;
  v4[3] = 33;
  assert.equal(innerPacketLength(v4), 33);
  v4[3] = 49;
  assert.equal(innerPacketLength(v4), -1);
  const v6 = new Uint8Array(64);
  v6[0] = 0x60;
  v6[5] = 8;
  assert.equal(innerPacketLength(v6), 48);
  assert.equal(innerPacketLength(Uint8Array.of(0x10)), -1);
  assert.equal(paddedLength(0, 1420), 0);
  assert.equal(paddedLength(1, 1420), 16);
  assert.equal(paddedLength(1419, 1420), 1420);
  assert.equal(paddedLength(1420, 1420), 1420);
});
