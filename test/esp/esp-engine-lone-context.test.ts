// A lone packet's AEAD context (aead-contexts.ts: an SA with no context of its own gets one for its
// batch, freed after it): made from a copy of the SA's key in a buffer the engine keeps, which is
// wiped once the context is made; the SA's own key stays as it was, so every later lone packet
// opens too. Real ESP packets through the real engine; only the socket and the TUN are stand-ins.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EspEngine } from '../../src/datapath/esp-engine.js';
import type { EspEngineStatus } from '../../src/datapath/messages.js';
import type { PacketBatch } from '../../src/datapath/packet-batch.js';
import type { TunDevice } from '../../src/datapath/tun-device.js';
import type { UdpSocket } from '../../src/datapath/udp-socket.js';
import { encodeEsp } from '../../src/esp/esp-encoder.js';
import { packedSa } from '../../src/esp/esp-transform.js';
import { ESP_IN_UDP_PORT } from '../../src/esp/udp-encap.js';
import { gcm, icmpEcho, packed, saPair } from './esp-helpers.js';

const LOCAL = '10.9.0.1';

test('esp engine: lone packets of several SAs open through contexts made per batch from a wiped key copy', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'veil-tlone-'));
  const queue: { packet: Uint8Array; from: number[] }[] = [];
  const udp = {
    describe: () => ({}), gro: false, counters: () => ({}),
    recvBatch(b: PacketBatch): number {
      const n = queue.length;
      queue.splice(0).forEach(({ packet, from }, i) => {
        const off = b.slotOffset(i);
        b.buf.set(packet, off);
        b.set(i, off, packet.length);
        b.setPeer(i, Uint8Array.from(from), 4, ESP_IN_UDP_PORT);
      });
      b.count = n;
      return n;
    },
  } as unknown as UdpSocket;
  let delivered = 0;
  const tun = { writeBatch: (_b: PacketBatch, n: number) => { delivered += n; return n; }, counters: () => ({}) } as unknown as TunDevice;
  // aeadHotMs -1: no SA keeps a context, every packet is a lone one (a health probe's ack). (0 kept
  // one for an SA whose second packet came within the same millisecond: the machine's speed decided.)
  const engine = new EspEngine({ localIp: LOCAL, mtu: 1400, marksFile: join(dir, 'marks.json'), marks: {}, aeadHotMs: -1 }, tun, udp);
  try {
    const peers = [16, 24, 32].map((keyBytes, i) => ({ ip: `10.9.0.${2 + i}`, spi: 20 + i, t: gcm(keyBytes), inner: `10.98.${i}.5` }));
    engine.control({
      type: 'setPeers',
      peers: peers.map((p, i) => ({ name: p.ip, ip: p.ip, allowedIPs: [`10.98.${i}.0/24`], outbound: [packedSa(p.spi, packed(p.t))], activeSpi: p.spi, inbound: [packedSa(p.spi, packed(p.t))] })),
    });
    const status = () => engine.control({ type: 'status' }) as EspEngineStatus;
    for (const deadline = Date.now() + 30_000; status().marksPending > 0 && Date.now() < deadline; await new Promise((r) => setTimeout(r, 20))) engine.tick(performance.now());
    const outs = peers.map((p) => saPair(p.t, p.spi, p.ip, LOCAL).out);
    const scratch = new Uint8Array(2048);
    const send = (i: number, seq: number) => {
      const r = encodeEsp(outs[i]!, icmpEcho(peers[i]!.inner, '10.99.0.1', 'probe', seq), scratch, 0);
      if (!r.ok) throw new Error(r.reason);
      queue.push({ packet: scratch.slice(0, r.length), from: peers[i]!.ip.split('.').map(Number) });
    };
    for (let round = 1; round <= 3; round++) {
      for (let i = 0; i < peers.length; i++) { send(i, round); engine.fromNetwork(performance.now()); } // one a batch
      for (let i = 0; i < peers.length; i++) send(i, 10 + round); // one batch of the three
      engine.fromNetwork(performance.now());
    }
    assert.equal(delivered, 18, 'every lone packet opened, under each key length');
    assert.equal(status().aeadContexts, 0, 'no SA kept a context');
    assert.deepEqual(status().drops, Object.fromEntries(Object.keys(status().drops).map((k) => [k, 0])), 'nothing dropped');
    const copies = (engine as unknown as { keyScratches: Map<number, Buffer> }).keyScratches;
    assert.deepEqual([...copies.keys()].sort((a, b) => a - b), [16, 24, 32], 'one kept buffer per key length');
    for (const [len, b] of copies) assert.ok(b.every((x) => x === 0), `the ${len}-byte key copy is wiped`);
  } finally {
    engine.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
