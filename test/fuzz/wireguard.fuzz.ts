// WireGuard: the message parsers on any bytes, their encode/parse round trips, and hostile
// datagrams (random, or genuine ones edited, cut, extended or replayed) into a real sans-I/O Device
// pair with live sessions: never a throw, never a delivery, never a roam, always a counted reason,
// and the genuine session goes on working.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  DROP_REASONS, MESSAGE_TRANSPORT_MIN_SIZE, checkTransport, innerPacketLength, messageType, newInitiation, newResponse,
  parseCookieReply, parseInitiation, parseResponse, serializeCookieReply, transportCounter, transportReceiver,
  writeTransportHeader, type Action, type Endpoint,
} from '../../src/wireguard/index.js';
import { mac128 } from '../../src/crypto/index.js';
import { mac1Key } from '../../src/wireguard/cookie.js';
import { EP_A, EP_B, Pair, ipv4Packet, type Side } from '../wireguard/harness.js';
import { harness, mutated } from './harness.js';

const dropReasons = new Set<string>(DROP_REASONS);

/** A parse result is the message (fields of the documented sizes) or a known drop reason. */
function checkParsed(r: unknown, sizes: Record<string, number>): void {
  if (typeof r === 'string') { assert.ok(dropReasons.has(r), `unknown drop reason ${r}`); return; }
  const m = r as Record<string, unknown>;
  for (const [field, size] of Object.entries(sizes)) assert.equal((m[field] as Uint8Array).length, size, field);
}

export const wireguardMessages = harness({
  name: 'wg-messages',
  target: 'src/wireguard/messages.ts (parse*, checkTransport, transport header, innerPacketLength)',
  runs: 2_000_000,
  ciRuns: 50_000,
  property: () => fc.property(
    fc.uint8Array({ maxLength: 200 }), fc.nat(), fc.nat(), fc.nat({ max: 2 ** 53 - 1 }), fc.uint8Array({ minLength: 24, maxLength: 24 }),
    fc.uint8Array({ minLength: 32, maxLength: 32 }),
    (bytes, sender, receiver, counter, nonce, cookie) => {
      // Any bytes: a typed message or a drop reason, no throw.
      if (bytes.length >= 4) bytes[0] = (bytes[0]! % 6); // often a valid type, so the length checks run
      const t = messageType(bytes);
      assert.ok(t >= 0 && t <= 4);
      checkParsed(parseInitiation(bytes), { ephemeral: 32, encryptedStatic: 48, encryptedTimestamp: 28, mac1: 16, mac2: 16 });
      checkParsed(parseResponse(bytes), { ephemeral: 32, encryptedNothing: 16, mac1: 16, mac2: 16 });
      checkParsed(parseCookieReply(bytes), { nonce: 24, encryptedCookie: 32 });
      const bad = checkTransport(bytes);
      if (bad === null) {
        assert.ok(bytes.length >= MESSAGE_TRANSPORT_MIN_SIZE);
        assert.ok(Number.isSafeInteger(transportCounter(bytes)) && transportReceiver(bytes) >= 0);
      } else assert.ok(dropReasons.has(bad));
      const inner = innerPacketLength(bytes);
      assert.ok(inner === -1 || (inner >= 20 && inner <= bytes.length));
      // Round trips: what we write, we read back.
      const s = sender % 2 ** 32, r = receiver % 2 ** 32;
      const init = parseInitiation(newInitiation(s).bytes);
      assert.ok(typeof init !== 'string' && init.sender === s);
      const resp = parseResponse(newResponse(s, r).bytes);
      assert.ok(typeof resp !== 'string' && resp.sender === s && resp.receiver === r);
      const reply = parseCookieReply(serializeCookieReply({ receiver: r, nonce, encryptedCookie: cookie }));
      assert.ok(typeof reply !== 'string' && reply.receiver === r);
      assert.deepEqual([Buffer.from(reply.nonce), Buffer.from(reply.encryptedCookie)], [Buffer.from(nonce), Buffer.from(cookie)]);
      const header = new Uint8Array(MESSAGE_TRANSPORT_MIN_SIZE);
      writeTransportHeader(header, r, counter);
      assert.equal(checkTransport(header), null);
      assert.equal(transportReceiver(header), r);
      assert.equal(transportCounter(header), counter);
    },
  ),
});

/** A device pair with sessions both ways and genuine datagrams of all four types on the wire. */
function livePair(): Pair {
  const pair = new Pair();
  pair.send('a', ipv4Packet('hello')); // initiation, response, data
  pair.send('b', ipv4Packet('hello back'));
  pair.b.underLoad = true; // a cookie reply for A's next initiation
  pair.run('a', pair.a.initiateHandshake(pair.peerB, pair.now));
  pair.b.underLoad = false;
  pair.now += 6_000;
  pair.run('a', pair.a.initiateHandshake(pair.peerB, pair.now)); // with mac2 now: a second session
  pair.send('a', ipv4Packet('after rekey'));
  pair.send('b', ipv4Packet('after rekey, back'));
  const types = new Set(pair.wire.map((w) => w.datagram[0]));
  assert.deepEqual([...types].sort(), [1, 2, 3, 4], 'the pair put all four message types on the wire');
  return pair;
}

const ATTACKER: Endpoint = { address: '198.51.100.7', port: 4444 };

let lastPair: Pair | undefined;

/** The drop reasons the hostile datagrams reached, with counts (both devices). */
function dropsSeen(pair: Pair | undefined): string {
  if (!pair) return '';
  const seen = DROP_REASONS.map((r) => [r, pair.a.stats.drops[r] + pair.b.stats.drops[r]] as const).filter(([, n]) => n > 0);
  return `drops: ${seen.map(([r, n]) => `${r} ${n}`).join(', ')}`;
}

export const wireguardDevice = harness({
  name: 'wg-device',
  target: 'src/wireguard/device.ts decapsulate() on a live Device pair (handshake, cookie, transport receive paths)',
  runs: 300_000,
  ciRuns: 10_000,
  property: () => {
    const pair = livePair();
    lastPair = pair;
    const samples = pair.wire.map((w) => w.datagram);
    let serial = 0;
    return fc.property(
      mutated(samples, 160), fc.constantFrom<Side>('a', 'b'), fc.constantFrom(EP_A, EP_B, ATTACKER), fc.integer({ min: 0, max: 40 }),
      fc.boolean(),
      (bytes, to, source, stepMs, remac) => {
        pair.now += stepMs;
        const device = pair.device(to);
        const datagram = Uint8Array.from(bytes);
        // mac1 is keyed by the receiver's public key, which anyone knows: an attacker makes it valid,
        // so the edited handshake reaches the Noise code behind it.
        if (remac && (datagram[0] === 1 || datagram[0] === 2) && datagram.length >= 32) {
          const m1 = datagram.length - 32;
          datagram.set(mac128(mac1Key(device.publicKey), datagram.subarray(0, m1)), m1);
        }
        const before = [pair.peerA.endpoint, pair.peerB.endpoint];
        const out: Action[] = device.decapsulate(datagram, source, pair.now);
        for (const a of out) {
          assert.notEqual(a.kind, 'tunnel', 'a hostile datagram was delivered to the tunnel');
          if (a.kind === 'drop') assert.ok(dropReasons.has(a.reason), `drop reason ${a.reason}`);
        }
        assert.deepEqual([pair.peerA.endpoint, pair.peerB.endpoint], before, 'a hostile datagram moved a peer\'s endpoint');
        // Run what it answered (a response, a cookie reply) through the pair like the network would.
        pair.run(to, out.filter((a) => a.kind === 'network'));
        // The genuine sessions still carry traffic both ways.
        for (const side of ['a', 'b'] as const) {
          const other = side === 'a' ? 'b' : 'a';
          const got = pair.tunnel[other].length;
          const text = `alive ${serial++}`;
          pair.send(side, ipv4Packet(text));
          assert.equal(pair.tunnel[other].length, got + 1, `${side} -> ${other} no longer delivers after the hostile datagram`);
          assert.equal(Buffer.from(pair.tunnel[other].at(-1)!.subarray(20)).toString(), text);
        }
        pair.tunnel.a.length = pair.tunnel.b.length = 0;
        pair.wire.length = 0;
      },
    );
  },
  report: () => dropsSeen(lastPair),
});

export const harnesses = [wireguardMessages, wireguardDevice];
