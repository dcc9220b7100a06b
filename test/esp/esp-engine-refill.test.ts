// The ESP engine's replay mark refill (replay-mark.ts refillDue): the packet path only notes that a
// mark is due, and tick() writes it, ahead of need. Real ESP packets (encoded by src/esp/) go
// through the real engine and its real marks file; only the socket and the TUN device are stand-ins
// (the socket hands the packets over as recvmmsg would, the TUN device takes what is written).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EspEngine } from '../../src/datapath/esp-engine.js';
import type { EspEngineStatus, EspPeerSpec } from '../../src/datapath/messages.js';
import type { OutboundSa } from '../../src/esp/security-association.js';
import type { PacketBatch } from '../../src/datapath/packet-batch.js';
import type { TunDevice } from '../../src/datapath/tun-device.js';
import type { UdpSocket } from '../../src/datapath/udp-socket.js';
import { encodeEsp } from '../../src/esp/esp-encoder.js';
import { packedSa } from '../../src/esp/esp-transform.js';
import { readSequenceMarks, replayMarkId } from '../../src/esp/sequence-mark-file.js';
import { ESP_IN_UDP_PORT } from '../../src/esp/udp-encap.js';
import { gcm, icmpEcho, packed, saPair } from './esp-helpers.js';

const LOCAL = '10.9.0.1', PEER = '10.9.0.2', SPI = 7;
/** The engine's idle time for AEAD contexts and replay windows where a test lets them go. */
const IDLE_MS = 50;

/** The real engine on a stand-in socket (receive(): a packet as recvmmsg hands it over) and TUN device (counts what is delivered). */
function engineOnStandIns(file: string, aeadIdleMs?: number) {
  const queue: Uint8Array[] = [];
  const udp = {
    describe: () => ({}), gro: false, counters: () => ({}),
    recvBatch(b: PacketBatch): number {
      const n = queue.length;
      queue.splice(0).forEach((p, i) => {
        const off = b.slotOffset(i);
        b.buf.set(p, off);
        b.set(i, off, p.length);
        b.setPeer(i, Uint8Array.of(10, 9, 0, 2), 4, ESP_IN_UDP_PORT);
      });
      b.count = n;
      return n;
    },
  } as unknown as UdpSocket;
  const counts = { delivered: 0 };
  const tun = { writeBatch: (_b: PacketBatch, n: number) => { counts.delivered += n; return n; }, counters: () => ({}) } as unknown as TunDevice;
  const engine = new EspEngine({ localIp: LOCAL, mtu: 1400, marksFile: file, marks: {}, aeadIdleMs }, tun, udp);
  /** Packet `seq` from PEER under `out` (the peer's outbound SA), through the engine's network path. */
  const receive = (out: OutboundSa, seq: number): void => {
    const scratch = new Uint8Array(2048);
    const r = encodeEsp(out, icmpEcho('10.98.0.5', '10.99.0.1', 'refill', seq), scratch, 0);
    if (!r.ok) throw new Error(`encode failed: ${r.reason}`);
    queue.push(scratch.slice(0, r.length));
    engine.fromNetwork(performance.now());
  };
  const status = () => engine.control({ type: 'status' }) as EspEngineStatus;
  /** Ticks until no mark is being written (the writer thread's fsyncs: a generous deadline). */
  const settle = async (): Promise<void> => {
    for (const deadline = Date.now() + 30_000; status().marksPending > 0 && Date.now() < deadline; await new Promise((r) => setTimeout(r, 20))) engine.tick(performance.now());
    assert.equal(status().marksPending, 0, 'the marks were written');
  };
  return { engine, receive, status, settle, counts };
}

test('esp engine: a replay mark due ahead of need is written by tick(), so no later packet of a steady tunnel waits for a write', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'veil-trefill-'));
  const file = join(dir, 'marks.json');
  const { engine, status, counts, settle, receive: receiveUnder } = engineOnStandIns(file);
  const transform = gcm();
  try {
    const spec: EspPeerSpec = {
      name: 'peer', ip: PEER, allowedIPs: ['10.98.0.0/24'], outbound: [packedSa(SPI, packed(transform))], activeSpi: SPI,
      inbound: [packedSa(SPI, packed(transform))],
    };
    engine.control({ type: 'setPeers', peers: [spec] });
    const { out } = saPair(transform, SPI, PEER, LOCAL);
    const id = replayMarkId(SPI, PEER, LOCAL, transform);
    const receive = (seq: number): void => receiveUnder(out, seq);

    // The SA's first mark is written with the update that made it: the smallest lead (REPLAY_MIN_LEAD 8) above nothing seen.
    await settle();
    assert.equal((await readSequenceMarks(file)).get(id), 8, 'the new SA\'s first mark is durable before any packet');
    receive(1);
    assert.equal(status().marksPending, 0, 'the first packet waits for no write');
    // Packets 2..6: 6 is three quarters into the lead, so a refill is due, noted and not yet written.
    for (let seq = 2; seq <= 6; seq++) receive(seq);
    assert.equal(counts.delivered, 6);
    assert.equal(engine.nextDeadline(), -Infinity, 'a refill is due: tick() at the end of this turn');
    assert.equal((await readSequenceMarks(file)).get(id), 8, 'the packet path itself writes nothing');
    engine.tick(performance.now());
    assert.notEqual(engine.nextDeadline(), -Infinity, 'tick() took the refill');
    // While that write is on its way, a packet past three quarters of the lead does not note the
    // refill again (its mark knows a write is pending), so the loop is not asked for a tick() at
    // every turn for nothing; once the write ended, the new lead is far from used up.
    receive(7);
    assert.notEqual(engine.nextDeadline(), -Infinity, 'a packet while the refill is being written notes no refill');
    let mark = 0;
    for (const deadline = Date.now() + 30_000; (mark <= 8 || status().marksPending > 0) && Date.now() < deadline; await new Promise((r) => setTimeout(r, 20))) {
      engine.tick(performance.now()); // settles the write
      mark = (await readSequenceMarks(file)).get(id) ?? 0;
    }
    assert.ok(mark > 8, `tick() wrote the next mark ahead of need (${mark})`);
    assert.equal(status().marksPending, 0);
    // Packets above the old mark (8) are accepted under the refilled one, without a write of their own.
    for (let seq = 8; seq <= 12; seq++) receive(seq);
    assert.equal(counts.delivered, 12);
    assert.equal(status().marksPending, 0, 'no packet past the old mark asked for a write');
    assert.equal((await readSequenceMarks(file)).get(id), mark);
    assert.equal(status().counters.replayMarkFailed, 0);
  } finally {
    engine.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('esp engine: new inbound SAs have their first replay marks written with the update that makes them, and a write moves the marks of idle tunnels too', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'veil-tfirstmark-'));
  const file = join(dir, 'marks.json');
  const { engine, receive, status, settle, counts } = engineOnStandIns(file, IDLE_MS);
  const oldKey = gcm(), newKey = gcm(32);
  const QUIET = '10.9.0.3';
  const spec = (inbound: number[], ip = PEER): EspPeerSpec => ({
    name: ip, ip, allowedIPs: [ip === PEER ? '10.98.0.0/24' : '10.97.0.0/24'], outbound: [packedSa(SPI, packed(oldKey))], activeSpi: SPI,
    inbound: inbound.map((spi) => packedSa(spi, packed(spi === SPI ? oldKey : newKey))),
  });
  try {
    engine.control({ type: 'setPeers', peers: [spec([SPI])] });
    await settle();
    const oldSender = saPair(oldKey, SPI, PEER, LOCAL).out;
    receive(oldSender, 1);
    assert.equal(status().marksPending, 0, 'the first packet waited for no write: its mark came with the update');
    // The rotation: the new key's inbound SA comes in force beside the old one, for PEER and for a new peer.
    engine.control({ type: 'updatePeers', upsert: [spec([SPI, SPI + 1]), spec([SPI + 1], QUIET)], remove: [] });
    assert.equal(status().marksPending, 3, 'one write for the update: the new peer\'s first sequence block and both new SAs\' first replay marks');
    await settle();
    const marks = await readSequenceMarks(file);
    const newId = replayMarkId(SPI + 1, PEER, LOCAL, newKey);
    assert.equal(marks.get(newId), 8, 'the least lead above nothing seen (REPLAY_MIN_LEAD)');
    assert.equal(marks.get(replayMarkId(SPI + 1, QUIET, LOCAL, newKey)), 8);
    // Their first packets are covered by those marks: accepted with no write on the packet path.
    const sender = saPair(newKey, SPI + 1, PEER, LOCAL).out;
    for (let seq = 1; seq <= 5; seq++) receive(sender, seq);
    assert.equal(counts.delivered, 6);
    assert.equal(status().marksPending, 0, 'no packet asked for a write');
    // The old key's tunnel carries two more packets, then both go quiet and their windows are let
    // go (idleWindow: after IDLE_MS here). The new SA's refill (packet 6, three quarters into its
    // lead) moves the idle old SA's mark too: one write for both tunnels, not one for each.
    for (let seq = 2; seq <= 3; seq++) receive(oldSender, seq);
    await new Promise((r) => setTimeout(r, 3 * IDLE_MS));
    engine.tick(performance.now());
    receive(sender, 6);
    engine.tick(performance.now());
    await settle();
    const after = await readSequenceMarks(file);
    assert.ok(after.get(newId)! > 8, 'the refilled SA\'s mark moved');
    assert.ok(after.get(replayMarkId(SPI, PEER, LOCAL, oldKey))! > 8, 'and the other tunnel\'s with it');
    assert.equal(status().counters.replayMarkFailed, 0);
  } finally {
    engine.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
