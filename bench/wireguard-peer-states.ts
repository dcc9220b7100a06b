// The WireGuard datapath's live bytes a peer, in-process, in the states a peer goes through:
// `node dist/bench/wireguard-peer-states.js [peers] [--heap-snapshots DIR]` (default 5000).
// One WireGuardEngine (the datapath worker's, on a stand-in TUN device and UDP socket that only
// hand packets over) is given `peers` peers as the agent gives them (a /24 and a /32 each), then:
//   configured  no packet yet;
//   initiated   one packet to each peer: staged, an initiation sent, never answered;
//   retrying    40 s later (the initiation resent every REKEY_TIMEOUT);
//   gaveUp      120 s later (REKEY_ATTEMPT_TIME and a last REKEY_TIMEOUT passed: the staged packet dropped);
//   zeroed      10 min later (3 * REJECT_AFTER_TIME without a session: its key material erased);
//   established a handshake answered by the peer (a Device of its own, dropped after), the staged
//               packet sent, and one packet back from the peer;
//   idle        15 s later (the peer's native AEAD contexts swept, a keepalive sent);
//   rekeyed     REKEY_AFTER_TIME later a packet to each peer: its session renewed (a handshake
//               answered as above) and a packet back under it;
//   settled     LINGER_MS + 1 s later (what a rekey pushed out is erased; the AEAD contexts still
//               held: a live peer's usual state between rekeys).
// The clock is the bench's (the core is sans-I/O): every state is reached without waiting.
// Prints the live heap (V8 heap, external, array buffers after full collections) each state adds a
// peer over the same engine without the peers. `--heap-snapshots DIR`: <state>-<count>.heapsnapshot
// at WARM peers and at WARM + peers; `node dist/bench/heap-diff.js DIR/<state>-100.heapsnapshot
// DIR/<state>-<100+peers>.heapsnapshot <peers> WireGuardEngine,Device,Peer,AllowedIps` charges them.
import { writeHeapSnapshot } from 'node:v8';
import { join } from 'node:path';
import { WireGuardEngine } from '../src/datapath/wireguard-engine.js';
import type { TunDevice } from '../src/datapath/tun-device.js';
import type { UdpSocket } from '../src/datapath/udp-socket.js';
import type { WireGuardPeerSpec } from '../src/datapath/messages.js';
import { Device } from '../src/wireguard/device.js';
import { REKEY_AFTER_TIME } from '../src/wireguard/constants.js';
import { wholeMs } from '../src/wireguard/whole-ms.js';
import { LINGER_MS } from '../src/wireguard/lingering-keypairs.js';
import { generatePrivateKey } from '../src/crypto/index.js';
import { writeIpv4HeaderChecksum } from '../src/net/ip-packet.js';
import { liveHeapBytes as heap } from './live-heap.js';
import { StandInTun, StandInUdp } from './stand-in-io.js';

const args = process.argv.slice(2);
const snapshotsAt = args.indexOf('--heap-snapshots');
const SNAPSHOTS = snapshotsAt >= 0 ? args.splice(snapshotsAt, 2)[1] : undefined;
const N = Number(args[0] ?? 5000);
const WARM = 100; // first-use costs (code, hidden classes, tables grown from empty) are not per peer
if (!(Number.isInteger(N) && N > 0)) {
  console.error('usage: node dist/bench/wireguard-peer-states.js [peers] [--heap-snapshots DIR]');
  process.exit(2);
}
const PORT = 51871;
const PROBE_BYTES = 60; // an IPv4 UDP packet the size of a health probe

/** Peer i's underlay address and pod CIDR (as the agent's specs: a /24 and the node's /32). */
const nodeIp = (i: number): number[] => [172, 18, (i >> 8) & 255, i & 255];
const podNet = (i: number): number[] => [10, (i >> 8) & 255, i & 255];

/** An IPv4 UDP packet from `src` to `dst`. */
function udpPacket(src: number[], dst: number[]): Uint8Array {
  const p = new Uint8Array(PROBE_BYTES);
  p[0] = 0x45; p[2] = PROBE_BYTES >> 8; p[3] = PROBE_BYTES & 255; p[8] = 64; p[9] = 17;
  p.set(src, 12); p.set(dst, 16);
  writeIpv4HeaderChecksum(p, 0);
  p[20] = 0x9c; p[21] = 0x40; p[22] = 0x9c; p[23] = 0x40; p[24] = 0; p[25] = PROBE_BYTES - 20;
  return p;
}

const ourKey = generatePrivateKey();
const ourPodIp = [10, 244, 1, 1];
const tun = new StandInTun(), udp = new StandInUdp(PORT);
// The wall clock's offset as the agent gives it (wireguard-mode.ts): fractional, so a Unix time a peer kept would be a heap number, as there.
const engine = new WireGuardEngine({ privateKey: ourKey.raw, mtu: 1420, wallClockOffsetMs: Date.now() - performance.now() }, tun as unknown as TunDevice, udp as unknown as UdpSocket);
/** The worker's clock is performance.now(): fractional ms (the engine keeps whole ms of it, as in the agent). */
let now = 1_000_000.375;

const keys: Uint8Array[] = [];
function spec(i: number): WireGuardPeerSpec {
  const a = nodeIp(i), p = podNet(i);
  return {
    publicKey: Buffer.from(keys[i]!).toString('base64'), endpoint: { address: a.join('.'), port: PORT },
    allowedIPs: [`${p.join('.')}.0/24`, `${a.join('.')}/32`], persistentKeepalive: 0, name: `node-${i}`,
  };
}

/** Sends one packet to each of peers [from, to) through the engine's TUN side. */
function sendOne(from: number, to: number): void {
  for (let i = from; i < to; i++) {
    tun.reads.push(udpPacket(ourPodIp, [...podNet(i), 1]));
    engine.fromTunnel(now);
  }
  udp.outbox = [];
}

/** Runs the engine's timers from now to now + ms, a tick a second (what goes out is lost). */
function advance(ms: number): void {
  for (const end = now + ms; now < end;) {
    now += 1000;
    engine.tick(now);
    udp.outbox = [];
  }
}

/**
 * Peers [from, to) answer: a Device with the peer's key answers our initiation (resent at once),
 * takes our staged packet and sends one back; then it is dropped (only our side is measured). The
 * clock moves 11 ms a peer: under the core's load threshold (100 handshake messages a second).
 */
function establish(from: number, to: number, privateKeys: Uint8Array[]): void {
  for (let i = from; i < to; i++) {
    now += 11;
    const them = new Device({ privateKey: privateKeys[i]!, wallClockOffsetMs: 0 });
    const us = them.addPeer({ publicKey: engine.device.publicKey, endpoint: { address: '172.18.255.254', port: PORT } });
    const peer = engine.device.peer(keys[i]!)!;
    tun.reads.push(udpPacket(ourPodIp, [...podNet(i), 1]));
    engine.fromTunnel(now);
    let initiation = udp.outbox.find((d) => d.bytes[0] === 1);
    if (!initiation) {
      for (const a of engine.device.initiateHandshake(peer, wholeMs(now))) /* the device's clock, as the engine gives it */ if (a.kind === 'network') udp.outbox.push({ bytes: Uint8Array.from(a.datagram), address: Uint8Array.from(nodeIp(i)), port: PORT });
      initiation = udp.outbox.find((d) => d.bytes[0] === 1);
    }
    udp.outbox = [];
    const from4 = Uint8Array.from(nodeIp(i));
    const deliver = (bytes: Uint8Array) => { udp.inbox.push({ bytes, address: from4, port: PORT }); engine.fromNetwork(now); };
    const theirs = (bytes: Uint8Array) => them.decapsulate(bytes, { address: '172.18.255.254', port: PORT }, now);
    for (const a of theirs(initiation!.bytes)) if (a.kind === 'network') deliver(Uint8Array.from(a.datagram)); // the response
    for (const d of udp.outbox.splice(0)) theirs(d.bytes); // our staged packets: confirm their session
    for (const a of them.encapsulate(us, udpPacket([...podNet(i), 1], ourPodIp), now)) if (a.kind === 'network') deliver(Uint8Array.from(a.datagram));
    udp.outbox = [];
    if (!peer.current || !(now - peer.current.createdAt < 1)) throw new Error(`peer ${i}: no new session`);
  }
}

const states = ['configured', 'initiated', 'retrying', 'gaveUp', 'zeroed', 'established', 'idle', 'rekeyed', 'settled'] as const;
type State = typeof states[number];

/**
 * Gives the engine peers [from, to) as the worker gets them: specs structured-cloned (a postMessage),
 * made and dropped in this frame (a caller's frame would keep them alive through the measure).
 */
function configure(from: number, to: number): void {
  const upsert = structuredClone(Array.from({ length: to - from }, (_, k) => spec(from + k)));
  engine.control({ type: 'updatePeers', upsert, remove: [] });
}

/** Takes peers [from, to) through every state, calling at(state) in each. */
function walk(from: number, to: number, privateKeys: Uint8Array[], at: (s: State) => void): void {
  configure(from, to);
  at('configured');
  sendOne(from, to);
  at('initiated');
  advance(40_000);
  at('retrying');
  advance(80_000);
  at('gaveUp');
  advance(10 * 60_000);
  at('zeroed');
  establish(from, to, privateKeys);
  at('established');
  advance(15_000);
  at('idle');
  advance(REKEY_AFTER_TIME);
  establish(from, to, privateKeys);
  at('rekeyed');
  advance(LINGER_MS + 1000);
  at('settled');
}

const privateKeys: Uint8Array[] = [];
for (let i = 0; i < WARM + N; i++) {
  const k = generatePrivateKey();
  privateKeys.push(Uint8Array.from(k.raw));
  keys.push(Uint8Array.from(k.publicKey));
}
// The warm peers go through every state once (then tick along with the others).
walk(0, WARM, privateKeys, (s) => { if (SNAPSHOTS) writeHeapSnapshot(join(SNAPSHOTS, `${s}-${WARM}.heapsnapshot`)); });
// The engine with the warm peers only, in each state the others will be in: the warm peers idle throughout.
const h0 = heap();
const perPeer: Record<string, number> = {};
walk(WARM, WARM + N, privateKeys, (s) => {
  perPeer[s] = Math.round((heap() - h0) / N);
  if (SNAPSHOTS) writeHeapSnapshot(join(SNAPSHOTS, `${s}-${WARM + N}.heapsnapshot`));
});
const st = engine.control({ type: 'status' }) as { peers: unknown[]; aeadContexts: number; drops: Record<string, number> };
console.log(JSON.stringify({
  peers: N, bytesPerPeer: perPeer, rssMB: +(process.memoryUsage().rss / (1 << 20)).toFixed(1),
  devicePeers: engine.device.peerCount, aeadContexts: st.aeadContexts, handshakesCompleted: engine.device.stats.handshakesCompleted,
  drops: st.drops,
}));
