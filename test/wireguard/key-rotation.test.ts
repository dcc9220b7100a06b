// WireGuard static key rotation in the sans-I/O core: a node switches its static key while its
// peers' sessions go on, peers accept handshakes from the announced next key (and then use it),
// initiations to the retiring key are answered until it is retired, and no packet is lost at any
// step, one side rotating or both at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generatePrivateKey, X25519PrivateKey } from '../../src/crypto/index.js';
import { LINGER_MS, type Keypair } from '../../src/wireguard/index.js';
import { Links, Pair, ipv4Packet, type Side } from './harness.js';

function newKey(): { priv: Uint8Array; pub: Uint8Array } {
  const k = generatePrivateKey();
  return { priv: k.raw, pub: new X25519PrivateKey(k.raw).publicKey };
}

let serial = 0;
/** Sends a packet each way and asserts both arrive (no loss at this step). */
function bothWays(pair: Pair, step: string): void {
  for (const from of ['a', 'b'] as Side[]) {
    const to: Side = from === 'a' ? 'b' : 'a';
    const text = `${step} ${serial++}`;
    const before = pair.tunnel[to].length;
    pair.send(from, ipv4Packet(text));
    assert.equal(pair.tunnel[to].length, before + 1, `${from} -> ${to} lost a packet at: ${step}`);
    assert.equal(Buffer.from(pair.tunnel[to].at(-1)!.subarray(20)).toString(), text);
  }
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

test('rotation of one side: announced, accepted, switched, confirmed, retired; no packet lost', () => {
  const pair = new Pair();
  bothWays(pair, 'before');
  const oldA = Uint8Array.from(pair.a.publicKey);
  const next = newKey();
  pair.b.setPeerNextKey(pair.peerA, next.pub); // B accepts A's announced key
  assert.equal(pair.b.peer(next.pub), pair.peerA);
  bothWays(pair, 'announced');
  const drops = pair.b.stats.drops.handshakeForUnknownKey;
  pair.now += 1000; // a new initiation's timestamp must be newer than the last one B accepted
  pair.run('a', pair.a.setStaticKey(next.priv, pair.now)); // A switches and initiates at once
  assert.equal(hex(pair.a.publicKey), hex(next.pub));
  assert.equal(pair.a.retiringPublicKeyBase64, Buffer.from(oldA).toString('base64'));
  assert.equal(pair.b.stats.drops.handshakeForUnknownKey, drops, 'B accepted the handshake from the next key');
  assert.equal(hex(pair.peerA.publicKey), hex(next.pub), 'B uses the new key for A from now on');
  assert.equal(pair.peerA.nextPublicKey, null);
  assert.equal(pair.b.peer(oldA), undefined, 'the old key is gone from B');
  assert.ok(pair.a.peerOnCurrentKey(pair.peerB), 'A saw a handshake under its new key');
  bothWays(pair, 'switched');
  assert.ok(pair.a.retirePreviousKey());
  assert.equal(pair.a.retiringPublicKeyBase64, null);
  bothWays(pair, 'retired');
  pair.advance(130_000, 1000); // past REKEY_AFTER_TIME: the next handshakes use the new keys only
  bothWays(pair, 'after a rekey');
});

test('a peer that has not seen the switch initiates to the retiring key and is answered; after retirement it is not', () => {
  const pair = new Pair();
  bothWays(pair, 'before');
  const next = newKey();
  // B never hears of the next key, and A's initiations under it are lost: sessions go on regardless.
  pair.filter = (from, d) => !(from === 'a' && d[0] === 1);
  pair.now += 1000;
  pair.run('a', pair.a.setStaticKey(next.priv, pair.now));
  pair.filter = () => true;
  bothWays(pair, 'switched, B unaware');
  const completed = pair.a.stats.handshakesCompleted + pair.b.stats.handshakesCompleted;
  pair.now += 1000;
  pair.run('b', pair.b.initiateHandshake(pair.peerA, pair.now)); // to A's old key
  assert.ok(pair.a.stats.handshakesCompleted + pair.b.stats.handshakesCompleted > completed, 'A answered under its retiring key');
  assert.equal(pair.a.peerOnCurrentKey(pair.peerB), false, 'that handshake did not confirm the new key');
  bothWays(pair, 'after a handshake to the retiring key');
  // Then B learns the new key from the registry (the agent changes it in place): sessions stay.
  pair.b.changePeerKey(pair.peerA, next.pub);
  bothWays(pair, 'B switched by the agent');
  pair.now += 10_000;
  pair.run('b', pair.b.initiateHandshake(pair.peerA, pair.now));
  assert.ok(pair.a.peerOnCurrentKey(pair.peerB));
  pair.a.retirePreviousKey();
  // A stale initiation to the retired key is refused at mac1.
  const oldMac1 = pair.a.stats.drops.mac1Invalid;
  const stale = pair.wire.filter((w) => w.from === 'b' && w.datagram[0] === 1)[0]!.datagram;
  pair.a.decapsulate(stale, { address: '192.0.2.2', port: 51871 }, pair.now);
  assert.equal(pair.a.stats.drops.mac1Invalid, oldMac1 + 1);
  bothWays(pair, 'retired');
});

test('both sides rotate at once (each announced to the other first): no packet lost, both end on the new keys', () => {
  const pair = new Pair();
  bothWays(pair, 'before');
  const na = newKey(), nb = newKey();
  pair.b.setPeerNextKey(pair.peerA, na.pub);
  pair.a.setPeerNextKey(pair.peerB, nb.pub);
  bothWays(pair, 'both announced');
  pair.now += 1000;
  pair.run('a', pair.a.setStaticKey(na.priv, pair.now));
  bothWays(pair, 'A switched');
  pair.now += 100;
  pair.run('b', pair.b.setStaticKey(nb.priv, pair.now));
  bothWays(pair, 'B switched');
  assert.equal(hex(pair.peerA.publicKey), hex(na.pub));
  assert.equal(hex(pair.peerB.publicKey), hex(nb.pub));
  assert.ok(pair.b.peerOnCurrentKey(pair.peerA), 'B confirmed its new key');
  pair.now += 10_000;
  pair.run('a', pair.a.initiateHandshake(pair.peerB, pair.now)); // A's first one went to B's old key
  assert.ok(pair.a.peerOnCurrentKey(pair.peerB), 'A confirmed its new key');
  pair.a.retirePreviousKey();
  pair.b.retirePreviousKey();
  bothWays(pair, 'both retired');
  pair.advance(130_000, 1000);
  bothWays(pair, 'after a rekey');
});

/**
 * Every node switching at once (the all-at-once rotation): A switches, B switches `bSwitchesAfter`
 * deliveries later (0: at the same moment, their initiations cross; later: B has answered A's
 * initiation, perhaps had its first packet under it, and initiates within that round trip). Both
 * send a packet before every delivery, `schedule` says which link delivers next ('a': A's
 * datagrams to B), then everything in flight arrives. Returns what each side sent and received.
 */
function switchTogether(greater: Side, bSwitchesAfter: number, schedule: string, rotate: boolean) {
  const pair = new Pair({ greater });
  bothWays(pair, 'before');
  const na = newKey(), nb = newKey();
  if (rotate) {
    pair.b.setPeerNextKey(pair.peerA, na.pub);
    pair.a.setPeerNextKey(pair.peerB, nb.pub);
  }
  const links = new Links(pair);
  const sent: Record<Side, string[]> = { a: [], b: [] };
  /** Every keypair either side held in a slot at some point. */
  const seen = new Set<Keypair>();
  const look = () => { for (const p of [pair.peerA, pair.peerB]) for (const k of [p.current, p.previous, p.next]) if (k) seen.add(k); };
  const received = (side: Side) => pair.tunnel[side].map((p) => Buffer.from(p.subarray(20)).toString());
  const start = { a: pair.tunnel.a.length, b: pair.tunnel.b.length };
  // Without a rotation, the same crossing from a forced rekey on both ends (initiateHandshake).
  const switchNow = (side: Side) => pair.run(side, rotate
    ? pair.device(side).setStaticKey((side === 'a' ? na : nb).priv, pair.now)
    : pair.device(side).initiateHandshake(side === 'a' ? pair.peerB : pair.peerA, pair.now));
  pair.now += 1000;
  switchNow('a');
  for (let step = 0; step <= schedule.length; step++) {
    if (step === bSwitchesAfter) switchNow('b');
    for (const side of ['a', 'b'] as Side[]) {
      const text = `${side} ${step}`;
      sent[side].push(text);
      pair.send(side, ipv4Packet(text));
    }
    look();
    if (step < schedule.length) links.deliver(schedule[step] as Side);
    look();
  }
  links.drain();
  look();
  links.release();
  return { pair, sent, got: { a: received('a').slice(start.a), b: received('b').slice(start.b) }, na, nb, seen };
}

/** Every delivery order of n steps: 'aa..a' to 'bb..b'. */
const orders = (n: number) => Array.from({ length: 2 ** n }, (_, i) => i.toString(2).padStart(n, '0').replace(/0/g, 'a').replace(/1/g, 'b'));

for (const rotate of [true, false]) {
  const what = rotate ? 'both ends switch static keys' : 'both ends rekey (no rotation)';
  test(`${what} within a round trip, packets in flight both ways, every delivery order: no packet lost, the keypairs pushed out are erased ${LINGER_MS} ms later`, () => {
    let runs = 0;
    let lingered = 0;
    for (const greater of ['a', 'b'] as Side[]) {
      for (let bSwitchesAfter = 0; bSwitchesAfter <= 3; bSwitchesAfter++) {
        for (const schedule of orders(6)) {
          const { pair, sent, got, na, nb, seen } = switchTogether(greater, bSwitchesAfter, schedule, rotate);
          const where = `${greater}'s key greater, B switches after ${bSwitchesAfter} deliveries, order ${schedule}`;
          assert.deepEqual(got.b, sent.a, `A -> B lost or reordered a packet: ${where}: ${JSON.stringify(pair.b.stats.drops)}`);
          assert.deepEqual(got.a, sent.b, `B -> A lost or reordered a packet: ${where}: ${JSON.stringify(pair.a.stats.drops)}`);
          assert.equal(pair.a.stats.totalDrops() + pair.b.stats.totalDrops(), 0, where);
          if (rotate) {
            assert.equal(hex(pair.peerA.publicKey), hex(na.pub), where);
            assert.equal(hex(pair.peerB.publicKey), hex(nb.pub), where);
          }
          bothWays(pair, `after: ${where}`);
          // Nothing pushed out of the slots outlives LINGER_MS: erased, and its index free.
          pair.advance(LINGER_MS, 1000);
          const held = new Set([pair.peerA, pair.peerB].flatMap((p) => [p.current, p.previous, p.next]));
          for (const k of seen) {
            if (held.has(k)) continue;
            assert.equal(k.isAlive, false, `a keypair pushed out ${LINGER_MS} ms ago is erased: ${where}`);
            assert.equal(k.peer === pair.peerA ? pair.b.indexes.get(k.localIndex) : pair.a.indexes.get(k.localIndex), undefined, where);
          }
          lingered += seen.size - [...seen].filter((k) => held.has(k)).length;
          bothWays(pair, `${LINGER_MS} ms later: ${where}`);
          runs++;
        }
      }
    }
    assert.equal(runs, 2 * 4 * 64);
    assert.ok(lingered > 0, 'keypairs were pushed out while the peer sent under them');
  });
}

test('a removed peer\'s lingering keypairs are erased at once, not LINGER_MS later', () => {
  const { pair, seen } = switchTogether('a', 0, 'aaaaaa', false);
  const lingering = pair.a.lingering.size + pair.b.lingering.size;
  assert.ok(lingering > 0, 'the crossing pushed keypairs out');
  assert.ok(pair.a.removePeer(pair.peerB.publicKey));
  assert.ok(pair.b.removePeer(pair.peerA.publicKey));
  assert.equal(pair.a.lingering.size + pair.b.lingering.size, 0);
  for (const k of seen) assert.equal(k.isAlive, false, 'every keypair of the removed peers is erased');
  assert.equal(pair.a.indexes.size + pair.b.indexes.size, 0, 'no index names them');
});

test('rotation API refusals: a key another peer holds, our own key, a zero key', () => {
  const pair = new Pair();
  const other = newKey();
  const peerC = pair.a.addPeer({ publicKey: other.pub });
  assert.throws(() => pair.a.setPeerNextKey(pair.peerB, other.pub), /another peer already uses/);
  assert.throws(() => pair.a.changePeerKey(pair.peerB, pair.a.publicKey), /our own public key/);
  assert.throws(() => pair.a.setPeerNextKey(pair.peerB, new Uint8Array(32)), /32 non-zero bytes/);
  const n = newKey();
  pair.a.setPeerNextKey(peerC, n.pub);
  assert.throws(() => pair.a.addPeer({ publicKey: n.pub }), /announced this public key/);
  assert.equal(pair.a.peerCount, 2);
  pair.a.setPeerNextKey(peerC, null);
  assert.equal(pair.a.peer(n.pub), undefined);
  assert.deepEqual(pair.a.setStaticKey(pair.a.identity.privateKey.raw, pair.now), [], 'the same key is no rotation');
  assert.equal(pair.a.retirePreviousKey(), false);
});

test('a peer removed while its next key is announced is gone under that key too: its initiation finds no peer', () => {
  const pair = new Pair();
  bothWays(pair, 'before');
  const oldA = Uint8Array.from(pair.a.publicKey);
  const next = newKey();
  pair.b.setPeerNextKey(pair.peerA, next.pub);
  assert.equal(pair.b.peer(next.pub), pair.peerA, 'announced: found by its next key');
  assert.equal(pair.b.removePeer(oldA), true);
  assert.equal(pair.b.peer(oldA), undefined, 'gone under its key');
  assert.equal(pair.b.peer(next.pub), undefined, 'gone under its announced next key');
  const completed = pair.b.stats.handshakesCompleted;
  pair.now += 1000;
  pair.run('a', pair.a.setStaticKey(next.priv, pair.now)); // A switches and initiates under the next key
  pair.now += 10_000;
  pair.run('a', pair.a.initiateHandshake(pair.peerB, pair.now));
  assert.equal(pair.b.stats.handshakesCompleted, completed, 'B completed no handshake with a removed peer');
});
