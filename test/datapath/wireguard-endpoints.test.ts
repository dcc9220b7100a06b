// The WireGuard engine's endpoints, on stand-in TUN and UDP (they only hand packets over): an IPv4
// peer's endpoint kept as numbers (Ipv4Endpoint) and an IPv6 peer's as given, each peer's
// datagrams sent to its address, a roam to another source (IPv4 and IPv6) followed, and the
// endpoint read back as text in status, exportState and the table digest, for a peer removed and
// given again too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WireGuardEngine } from '../../src/datapath/wireguard-engine.js';
import type { TunDevice } from '../../src/datapath/tun-device.js';
import type { UdpSocket } from '../../src/datapath/udp-socket.js';
import type { WireGuardEngineStatus, WireGuardPeerSpec } from '../../src/datapath/messages.js';
import { wireGuardSpecsDigest } from '../../src/datapath/wireguard-table-digest.js';
import { Device } from '../../src/wireguard/device.js';
import { Ipv4Endpoint, type Endpoint } from '../../src/wireguard/endpoint.js';
import { generatePrivateKey } from '../../src/crypto/index.js';
import { StandInTun, StandInUdp } from '../../bench/stand-in-io.js';
import { formatIp, parseIp } from '../../src/net/cidr.js';
import { writeIpv4HeaderChecksum } from '../../src/net/ip-packet.js';

/** A datagram as the test reads it: its address as text. */
interface Datagram { bytes: Uint8Array; address: string; port: number }

/** An IPv4 UDP packet from src to dst. */
function packet(src: number[], dst: number[]): Uint8Array {
  const p = new Uint8Array(60);
  p[0] = 0x45; p[3] = 60; p[8] = 64; p[9] = 17;
  p.set(src, 12); p.set(dst, 16);
  writeIpv4HeaderChecksum(p, 0);
  p[25] = 40;
  return p;
}

const OUR_POD = [10, 244, 0, 1];

/** An engine and the far side of each of its peers: a Device of the peer's own. */
function lab(endpoints: Endpoint[]) {
  const tun = new StandInTun(), udp = new StandInUdp(51820);
  const ours = generatePrivateKey();
  const engine = new WireGuardEngine({ privateKey: ours.raw, mtu: 1420, wallClockOffsetMs: 0 }, tun as unknown as TunDevice, udp as unknown as UdpSocket);
  const peers = endpoints.map((endpoint, i) => {
    const key = generatePrivateKey();
    const device = new Device({ privateKey: key.raw, wallClockOffsetMs: 0 });
    const us = device.addPeer({ publicKey: engine.device.publicKey, endpoint: { address: '10.99.0.1', port: 51820 } });
    const spec: WireGuardPeerSpec = {
      publicKey: Buffer.from(key.publicKey).toString('base64'), endpoint, allowedIPs: [`10.${i + 1}.0.0/24`], persistentKeepalive: 0, name: `node-${i}`,
    };
    return { device, us, spec, pod: [10, i + 1, 0, 1] };
  });
  const specs = () => peers.map((p) => p.spec);
  engine.control({ type: 'updatePeers', upsert: structuredClone(specs()), remove: [] });
  let now = 1_000_000;
  /** A packet from our pod to peer i: a handshake (answered by the peer from `from`) first if needed; the datagrams out. */
  const send = (i: number, from: { address: string; port: number } = peers[i]!.spec.endpoint!): Datagram[] => {
    const p = peers[i]!;
    now += 10;
    tun.reads.push(packet(OUR_POD, p.pod));
    engine.fromTunnel(now);
    // Everything we send reaches the peer (whatever its address: what it was sent to is returned);
    // what the peer answers comes from `from`.
    const sent: Datagram[] = [];
    for (let d = udp.outbox.shift(); d; d = udp.outbox.shift()) {
      sent.push({ bytes: d.bytes, address: formatIp(d.address), port: d.port });
      for (const a of p.device.decapsulate(d.bytes, { address: '10.99.0.1', port: 51820 }, now)) {
        if (a.kind === 'network') { udp.inbox.push({ bytes: Uint8Array.from(a.datagram), address: parseIp(from.address).bytes, port: from.port }); engine.fromNetwork(now); }
      }
    }
    return sent;
  };
  /** A packet from peer i's pod to ours, sent from `from`. */
  const receive = (i: number, from: { address: string; port: number }): void => {
    const p = peers[i]!;
    now += 10;
    for (const a of p.device.encapsulate(p.us, packet(p.pod, OUR_POD), now)) {
      if (a.kind === 'network') { udp.inbox.push({ bytes: Uint8Array.from(a.datagram), address: parseIp(from.address).bytes, port: from.port }); engine.fromNetwork(now); }
    }
  };
  const status = () => engine.control({ type: 'status' }) as WireGuardEngineStatus;
  const digest = () => (engine.control({ type: 'digest', full: true }) as { digest: string }).digest;
  return { engine, tun, udp, peers, specs, send, receive, status, digest, now: () => now };
}

test('an IPv4 peer keeps its endpoint as numbers; IPv4 and IPv6 peers are sent to their addresses and read back as given', () => {
  const l = lab([{ address: '192.0.2.7', port: 51820 }, { address: 'fd00::7', port: 51821 }]);
  const [v4, v6] = [l.engine.device.peer(l.peers[0]!.spec.publicKey)!, l.engine.device.peer(l.peers[1]!.spec.publicKey)!];
  assert.ok(v4.endpoint instanceof Ipv4Endpoint, 'an IPv4 endpoint as two numbers');
  assert.ok(!(v6.endpoint instanceof Ipv4Endpoint));
  for (const [i, address, port] of [[0, '192.0.2.7', 51820], [1, 'fd00::7', 51821]] as const) {
    const out = l.send(i);
    assert.ok(out.length >= 2, 'an initiation, then the packet');
    for (const d of out) assert.deepEqual([d.address, d.port], [address, port]);
    assert.equal(l.tun.written, 0);
  }
  assert.deepEqual(l.status().peers.map((p) => p.endpoint).sort(), ['192.0.2.7:51820', '[fd00::7]:51821']);
  const exported = l.engine.exportState(l.now()).peers.map((p) => p.endpoint);
  assert.deepEqual(exported, [{ address: '192.0.2.7', port: 51820 }, { address: 'fd00::7', port: 51821 }], 'plain objects, addresses as text');
  assert.equal(JSON.stringify(structuredClone(exported)), JSON.stringify(exported), 'what a handover posts reads back whole');
  assert.equal(l.digest(), wireGuardSpecsDigest(l.specs()));
});

test('a peer that sends from another address is followed there (IPv4 and IPv6), and its roam is no drift', () => {
  const l = lab([{ address: '192.0.2.7', port: 51820 }, { address: 'fd00::7', port: 51821 }]);
  l.send(0);
  l.send(1);
  l.receive(0, { address: '198.51.100.9', port: 40000 });
  l.receive(1, { address: 'fd00::9', port: 40001 });
  assert.equal(l.tun.written, 2, 'both packets delivered');
  const after = l.send(0).concat(l.send(1));
  assert.deepEqual(after.map((d) => `${d.address} ${d.port}`), ['198.51.100.9 40000', 'fd00::9 40001']);
  assert.deepEqual(l.status().peers.map((p) => p.endpoint).sort(), ['198.51.100.9:40000', '[fd00::9]:40001']);
  assert.equal(l.digest(), wireGuardSpecsDigest(l.specs()), 'the table as given: a roam is the peer’s own');
  // Another address, the same port: told apart by the address alone.
  l.receive(0, { address: '198.51.100.10', port: 40000 });
  l.receive(1, { address: 'fd00::a', port: 40001 });
  assert.deepEqual(l.send(0).concat(l.send(1)).map((d) => `${d.address} ${d.port}`), ['198.51.100.10 40000', 'fd00::a 40001']);
  // The same table again leaves them where they roamed to; a new endpoint given moves them.
  l.engine.control({ type: 'updatePeers', upsert: structuredClone(l.specs()), remove: [] });
  assert.deepEqual(l.send(0).map((d) => d.address), ['198.51.100.10']);
  l.peers[0]!.spec.endpoint = { address: '203.0.113.1', port: 51820 };
  l.engine.control({ type: 'updatePeers', upsert: structuredClone([l.peers[0]!.spec]), remove: [] });
  assert.deepEqual(l.send(0).map((d) => d.address), ['203.0.113.1']);
  assert.equal(l.digest(), wireGuardSpecsDigest(l.specs()));
});

test('a peer removed and given again is sent to the endpoint given; one roamed back to its given address is at home', () => {
  const l = lab([{ address: '192.0.2.7', port: 51820 }]);
  l.send(0);
  l.receive(0, { address: '198.51.100.9', port: 40000 });
  l.receive(0, { address: '192.0.2.7', port: 51820 });
  assert.deepEqual(l.status().peers.map((p) => p.endpoint), ['192.0.2.7:51820']);
  l.engine.control({ type: 'updatePeers', upsert: [], remove: [l.peers[0]!.spec.publicKey] });
  assert.equal(l.status().peers.length, 0);
  l.peers[0]!.spec.endpoint = { address: '192.0.2.8', port: 51822 };
  l.engine.control({ type: 'updatePeers', upsert: structuredClone(l.specs()), remove: [] });
  assert.deepEqual(l.send(0).map((d) => `${d.address} ${d.port}`).slice(0, 1), ['192.0.2.8 51822']);
  assert.equal(l.digest(), wireGuardSpecsDigest(l.specs()));
});

test('an IPv4 address spelled otherwise than its dotted quad is kept as given (the digest hashes the text given)', () => {
  const l = lab([{ address: '192.0.2.07', port: 51820 }]);
  const p = l.engine.device.peer(l.peers[0]!.spec.publicKey)!;
  assert.equal(p.endpoint!.address, '192.0.2.07');
  assert.equal(l.digest(), wireGuardSpecsDigest(l.specs()));
});
