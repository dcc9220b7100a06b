// The engine matches a packet to the SA of the packet before it when its sender and SPI are the same,
// across batches (EspEngine.lastSa): a lone packet a batch skips the SA table. That SA must never
// outlive the table's answer: a peer's inbound key replaced under the same SPI, or the peer gone,
// is what the next packet meets. Real ESP packets through the real engine; only the socket and the
// TUN are stand-ins.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EspEngine } from '../../src/datapath/esp-engine.js';
import type { EspEngineStatus, EspPeerSpec } from '../../src/datapath/messages.js';
import type { PacketBatch } from '../../src/datapath/packet-batch.js';
import type { TunDevice } from '../../src/datapath/tun-device.js';
import type { UdpSocket } from '../../src/datapath/udp-socket.js';
import { encodeEsp } from '../../src/esp/esp-encoder.js';
import { packedSa, type EspTransform } from '../../src/esp/esp-transform.js';
import { ESP_IN_UDP_PORT } from '../../src/esp/udp-encap.js';
import { gcm, icmpEcho, packed, saPair } from './esp-helpers.js';

const LOCAL = '10.9.0.1', PEER = '10.9.0.2', SPI = 20;

test('esp engine: a lone packet a batch meets the SA in force, after its key changed under the same SPI and after its peer left', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'veil-tlast-'));
  const queue: Uint8Array[] = [];
  const udp = {
    describe: () => ({}), gro: false, counters: () => ({}),
    recvBatch(b: PacketBatch): number {
      const n = queue.length;
      queue.splice(0).forEach((packet, i) => {
        const off = b.slotOffset(i);
        b.buf.set(packet, off);
        b.set(i, off, packet.length);
        b.setPeer(i, Uint8Array.from(PEER.split('.').map(Number)), 4, ESP_IN_UDP_PORT);
      });
      b.count = n;
      return n;
    },
  } as unknown as UdpSocket;
  let delivered = 0;
  const tun = { writeBatch: (_b: PacketBatch, n: number) => { delivered += n; return n; }, counters: () => ({}) } as unknown as TunDevice;
  const engine = new EspEngine({ localIp: LOCAL, mtu: 1400, marksFile: join(dir, 'marks.json'), marks: {} }, tun, udp);
  const status = () => engine.control({ type: 'status' }) as EspEngineStatus;
  const settle = async () => {
    for (const deadline = Date.now() + 30_000; status().marksPending > 0 && Date.now() < deadline; await new Promise((r) => setTimeout(r, 20))) engine.tick(performance.now());
  };
  const spec = (t: EspTransform): EspPeerSpec => ({
    name: PEER, ip: PEER, allowedIPs: ['10.98.0.0/24'], outbound: [packedSa(SPI, packed(t))], activeSpi: SPI, inbound: [packedSa(SPI, packed(t))],
  });
  const scratch = new Uint8Array(2048);
  /** One packet under `t` from PEER, alone in its batch; answers how many reached the TUN. */
  const receive = (t: EspTransform, seq: number): number => {
    const r = encodeEsp(saPair(t, SPI, PEER, LOCAL, seq - 1).out, icmpEcho('10.98.0.5', '10.99.0.1', 'x', seq), scratch, 0);
    if (!r.ok) throw new Error(r.reason);
    queue.push(scratch.slice(0, r.length));
    const before = delivered;
    engine.fromNetwork(performance.now());
    return delivered - before;
  };
  try {
    const first = gcm(16), second = gcm(16);
    if (second.kind === 'aead') second.key = Uint8Array.from({ length: 16 }, (_, i) => 0x50 + i); // another key, the same SPI
    engine.control({ type: 'setPeers', peers: [spec(first)] });
    await settle();
    for (let seq = 1; seq <= 3; seq++) assert.equal(receive(first, seq), 1, `packet ${seq} under the first key`);
    engine.control({ type: 'updatePeers', upsert: [spec(second)], remove: [] }); // a new key, the same SPI
    await settle();
    assert.equal(receive(second, 1), 1, 'the new key\'s packet opens under the new SA');
    assert.equal(receive(first, 4), 0, 'the old key\'s packet is refused');
    assert.equal(status().drops['auth-failed'], 1);
    engine.control({ type: 'updatePeers', upsert: [], remove: [PEER] });
    assert.equal(receive(second, 2), 0, 'no SA once the peer left');
    assert.equal(status().drops['no-state'], 1, 'refused for want of an SA, not by a retired one');
  } finally {
    engine.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
