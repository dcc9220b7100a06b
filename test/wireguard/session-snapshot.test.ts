// A device's sessions handed to a new device (a datapath handover on an agent restart): exported as
// plain data, imported into a fresh device with the same key, they go on without a handshake; the
// send counters continue (no nonce twice under a key), the replay windows refuse what was accepted
// before, and state that does not read back is skipped (that peer handshakes again).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Device } from '../../src/wireguard/device.js';
import { exportSessions, importSessions, type WireGuardSessions } from '../../src/wireguard/session-snapshot.js';
import { transportCounter, transportReceiver } from '../../src/wireguard/messages.js';
import { LINGER_MS } from '../../src/wireguard/lingering-keypairs.js';
import { EP_B, Links, Pair, ipv4Packet } from './harness.js';

/** A and B with a session, some traffic both ways, and a datagram B sent that A accepted. */
function established(): { pair: Pair; fromB: Uint8Array } {
  const pair = new Pair();
  for (let i = 0; i < 5; i++) { pair.send('a', ipv4Packet(`a${i}`)); pair.send('b', ipv4Packet(`b${i}`)); }
  const fromB = pair.sent('b', 4).at(-1)!;
  return { pair, fromB };
}

/** A's successor: the same key, the same peer, A's sessions through JSON (what the handover carries). */
function successor(pair: Pair, sessions: WireGuardSessions, elapsedMs: number): { a2: Device; restored: number } {
  const a2 = new Device({ privateKey: pair.a.identity.privateKey.raw });
  a2.addPeer({ publicKey: pair.b.publicKey, endpoint: EP_B });
  const restored = importSessions(a2, JSON.parse(JSON.stringify(sessions)) as WireGuardSessions, pair.now + elapsedMs, elapsedMs);
  return { a2, restored };
}

test('sessions handed over: both ways go on without a handshake, the counter continues, old datagrams are replays', () => {
  const { pair, fromB } = established();
  const lastFromA = transportCounter(pair.sent('a', 4).at(-1)!);
  const sessions = exportSessions(pair.a, pair.now);
  assert.equal(sessions.peers.length, 1);
  assert.ok(sessions.peers[0]!.current, 'the current keypair is exported');
  const { a2, restored } = successor(pair, sessions, 800);
  assert.equal(restored, 1);
  pair.now += 800;
  const peerB2 = a2.peer(pair.b.publicKey)!;
  const wireBefore = pair.wire.length;

  // A2 -> B: accepted by B, under the next counter.
  const out = a2.encapsulate(peerB2, ipv4Packet('after'), pair.now).filter((x) => x.kind === 'network');
  assert.equal(out.length, 1, 'sent at once: no handshake needed');
  const datagram = (out[0] as { datagram: Uint8Array }).datagram;
  assert.equal(datagram[0], 4, 'a transport message');
  assert.equal(transportCounter(datagram), lastFromA + 1, 'the send counter goes on from where A stopped');
  const delivered = pair.b.decapsulate(datagram, pair.at.a, pair.now).filter((x) => x.kind === 'tunnel');
  assert.equal(delivered.length, 1);
  assert.equal(Object.values(pair.b.stats.drops).reduce((x, y) => x + y, 0), 0, 'B dropped nothing');

  // B -> A2: accepted; the datagram A accepted before is a replay for A2.
  pair.run('b', pair.b.encapsulate(pair.peerA, ipv4Packet('to a2'), pair.now));
  const sentByB = pair.sent('b', 4, wireBefore).at(-1)!;
  assert.equal(a2.decapsulate(sentByB, pair.at.b, pair.now).filter((x) => x.kind === 'tunnel').length, 1, 'A2 accepts B');
  assert.equal(a2.decapsulate(fromB, pair.at.b, pair.now).filter((x) => x.kind === 'tunnel').length, 0);
  assert.equal(a2.stats.drops.replay, 1, 'what A accepted before is refused as a replay');
  assert.equal(pair.sent('a', 1, wireBefore).length + pair.sent('b', 1, wireBefore).length, 0, 'no handshake initiation from either side');
});

test('the keypair ages by the time the handover took: REJECT_AFTER_TIME counts from the handshake, not the import', () => {
  const { pair } = established();
  const sessions = exportSessions(pair.a, pair.now);
  const age = sessions.peers[0]!.current!.ageMs;
  const { a2 } = successor(pair, sessions, 5_000);
  const kp = a2.peer(pair.b.publicKey)!.current!;
  assert.equal(pair.now + 5_000 - kp.createdAt, age + 5_000);
  assert.equal(a2.peer(pair.b.publicKey)!.stats.lastHandshakeUnixMs, pair.a.peer(pair.b.publicKey)!.stats.lastHandshakeUnixMs);
});

test('state that does not read back is skipped: a peer the device does not have, a damaged keypair', () => {
  const { pair } = established();
  const sessions = exportSessions(pair.a, pair.now);
  const damaged = JSON.parse(JSON.stringify(sessions)) as WireGuardSessions;
  damaged.peers[0]!.current!.sendKey = 'AAAA';
  damaged.peers[0]!.previous = null;
  damaged.peers[0]!.next = null;
  const { a2, restored } = successor(pair, damaged, 0);
  assert.equal(restored, 0, 'no usable session');
  assert.equal(a2.peer(pair.b.publicKey)!.current, null);
  const stranger = new Device({ privateKey: pair.a.identity.privateKey.raw });
  assert.equal(importSessions(stranger, sessions, pair.now, 0), 0, 'no such peer: nothing imported');
  // The sender side handshakes again, as without a handover.
  const out = a2.encapsulate(a2.peer(pair.b.publicKey)!, ipv4Packet('x'), pair.now);
  assert.ok(out.some((x) => x.kind === 'network' && (x as { datagram: Uint8Array }).datagram[0] === 1), 'a handshake initiation instead');
});

/**
 * A keypair lingering on A when its datapath stops, and a datagram B sent under it still in flight:
 * B initiates, A answers (A's `next`), B sends under it, and B's second initiation overtakes that
 * datagram, so A's answer pushes the first keypair out of `next` while B still sends under it.
 */
function lingeringAtHandover(): { pair: Pair; inFlight: Uint8Array[]; lingering: number } {
  const { pair } = established();
  const links = new Links(pair);
  pair.now += 1000;
  pair.run('b', pair.b.initiateHandshake(pair.peerA, pair.now));
  links.deliver('b'); // A answers: its next
  links.deliver('a'); // B takes the response: B's current from now on
  pair.send('b', ipv4Packet('under the first'));
  pair.send('b', ipv4Packet('under the first, later'));
  pair.now += 1000;
  pair.run('b', pair.b.initiateHandshake(pair.peerA, pair.now));
  const initiation = links.inFlight.b.pop()!;
  assert.equal(initiation[0], 1);
  links.inFlight.b.unshift(initiation); // reordered on the way
  links.deliver('b'); // A answers again: the first keypair leaves `next` and lingers
  assert.equal(pair.a.lingering.size, 1, 'the keypair B sends under lingers on A');
  const lingering = pair.a.lingering.entries()[0]!.keypair.localIndex;
  const inFlight = links.inFlight.b.filter((d) => d[0] === 4 && d.length > 32); // the two packets, not the keepalive
  assert.equal(inFlight.length, 2);
  for (const d of inFlight) assert.equal(transportReceiver(d), lingering, 'sent under the lingering keypair');
  return { pair, inFlight, lingering };
}

const tunnelled = (device: Device, datagram: Uint8Array, pair: Pair) =>
  device.decapsulate(datagram, pair.at.b, pair.now).filter((x) => x.kind === 'tunnel').length;

test('a keypair lingering at the handover travels with its time left: what the peer sent under it is accepted after the restore, not after its deadline', () => {
  const { pair, inFlight, lingering } = lingeringAtHandover();
  pair.now += 1000;
  const sessions = exportSessions(pair.a, pair.now);
  const exported = sessions.peers[0]!.lingering!;
  assert.equal(exported.length, 1);
  assert.equal(exported[0]!.localIndex, lingering);
  assert.equal(exported[0]!.leftMs, LINGER_MS - 1000, 'it lingered 1 s before the export');

  const { a2 } = successor(pair, sessions, 500);
  pair.now += 500;
  assert.equal(a2.lingering.size, 1, 'restored');
  assert.equal(a2.lingering.entries()[0]!.until, pair.now + LINGER_MS - 1500, 'the deadline it had, on this clock');
  assert.equal(a2.nextDeadline()! <= pair.now + LINGER_MS - 1500, true, 'the device wakes for it');
  assert.equal(tunnelled(a2, inFlight[0]!, pair), 1, 'accepted under the lingering keypair after the handover');
  assert.equal(a2.stats.totalDrops(), 0);

  pair.now += LINGER_MS - 1500;
  a2.tick(pair.now);
  assert.equal(a2.lingering.size, 0, 'erased at its deadline');
  assert.equal(a2.indexes.get(lingering), undefined, 'its index freed');
  assert.equal(tunnelled(a2, inFlight[1]!, pair), 0, 'refused past the deadline');
  assert.equal(a2.stats.drops.unknownReceiverIndex, 1);
});

test('a lingering keypair whose time runs out during the handover is not restored, and none lives longer than LINGER_MS', () => {
  const { pair, inFlight, lingering } = lingeringAtHandover();
  const sessions = exportSessions(pair.a, pair.now);
  assert.equal(sessions.peers[0]!.lingering![0]!.leftMs, LINGER_MS);
  const { a2, restored } = successor(pair, sessions, LINGER_MS);
  assert.equal(restored, 1, 'the sessions themselves come back');
  assert.equal(a2.lingering.size, 0);
  assert.equal(a2.indexes.get(lingering), undefined);
  pair.now += LINGER_MS;
  assert.equal(tunnelled(a2, inFlight[0]!, pair), 0, 'refused: its deadline passed during the handover');

  // A damaged or foreign snapshot cannot stretch the deadline, nor stop the import with a bad entry.
  const stretched = JSON.parse(JSON.stringify(sessions)) as WireGuardSessions;
  stretched.peers[0]!.lingering![0]!.leftMs = 10 * LINGER_MS;
  stretched.peers[0]!.lingering!.push(null as never, { ...stretched.peers[0]!.lingering![0]!, leftMs: 'soon' as never, localIndex: 7 });
  const { a2: a3 } = successor(pair, stretched, 1000);
  assert.deepEqual(a3.lingering.entries().map((l) => [l.keypair.localIndex, l.until]), [[lingering, pair.now + LINGER_MS]], 'LINGER_MS from the export at most');
});

test('a device with nothing lingering exports no lingering field (the snapshot stays as small)', () => {
  const { pair } = established();
  assert.equal('lingering' in exportSessions(pair.a, pair.now).peers[0]!, false);
});
