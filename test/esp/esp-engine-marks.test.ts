// The ESP engine's marks file across its peers' lives: an outbound SA in force holds its sequence
// mark (not the engine's map), so the file must still name it while the SA lives, keep it once the
// SA retires, and start a later SA of the same key identity above it. No packets: the engine is
// given no TUN device or socket I/O (only its peer table and marks writer run).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EspEngine } from '../../src/datapath/esp-engine.js';
import type { EspPeerSpec } from '../../src/datapath/messages.js';
import type { TunDevice } from '../../src/datapath/tun-device.js';
import type { UdpSocket } from '../../src/datapath/udp-socket.js';
import { randomBytes } from 'node:crypto';
import { AEAD_GCM, packedSa, packTransforms, type EspTransform } from '../../src/esp/esp-transform.js';
import { readSequenceMarks, sequenceMarkId } from '../../src/esp/sequence-mark-file.js';
import { SEQUENCE_BLOCK } from '../../src/esp/sequence-store.js';

const LOCAL = '10.9.0.1';

/** A peer with fresh keys (as after a reboot of its node). */
function peer(name: string, ip: string, spi: number): EspPeerSpec {
  const fresh = (): EspTransform => ({ kind: 'aead', name: AEAD_GCM, key: randomBytes(16), salt: randomBytes(4), icvLength: 16 });
  const [o, i] = packTransforms([fresh(), fresh()]);
  return { name, ip, allowedIPs: [`${ip}/32`], outbound: packedSa(spi, o!), activeSpi: spi, inbound: packedSa(spi, i!) };
}

async function marksUntil(file: string, want: (m: Map<string, number>) => boolean): Promise<Map<string, number>> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const m = await readSequenceMarks(file);
    if (want(m)) return m;
    if (Date.now() > deadline) return m;
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('esp engine marks: an SA in force is in the file, a retired one stays, a new SA of its identity starts above it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'veil-tmarks-'));
  const file = join(dir, 'marks.json');
  const udp = { describe: () => ({}), gro: false } as unknown as UdpSocket;
  const engine = new EspEngine({ localIp: LOCAL, mtu: 1400, marksFile: file, marks: { 'in 7 10.9.0.9>10.9.0.1 00': 5 } }, {} as TunDevice, udp);
  try {
    const a = sequenceMarkId(3, LOCAL, '10.9.0.2'), b = sequenceMarkId(3, LOCAL, '10.9.0.3');
    const outSeq = (ip: string) => engine.exportState().sas.find((s) => s.direction === 'out' && s.peer === ip)!.last;

    engine.control({ type: 'updatePeers', upsert: [peer('a', '10.9.0.2', 3)], remove: [] });
    let m = await marksUntil(file, (x) => x.get(a) === SEQUENCE_BLOCK);
    assert.equal(m.get(a), SEQUENCE_BLOCK, 'the live SA\'s first block is in the file');

    engine.control({ type: 'updatePeers', upsert: [peer('b', '10.9.0.3', 3)], remove: ['10.9.0.2'] });
    m = await marksUntil(file, (x) => x.get(b) === SEQUENCE_BLOCK);
    assert.equal(m.get(b), SEQUENCE_BLOCK);
    assert.equal(m.get(a), SEQUENCE_BLOCK, 'a retired SA\'s mark stays in the file');

    // The peer comes back with a new key under the same SPI (a reboot): its SA goes on above the old one's mark.
    engine.control({ type: 'updatePeers', upsert: [peer('a', '10.9.0.2', 3)], remove: [] });
    assert.equal(outSeq('10.9.0.2'), SEQUENCE_BLOCK, 'the new SA starts above the retired one\'s mark');
    m = await marksUntil(file, (x) => x.get(a) === 2 * SEQUENCE_BLOCK);
    assert.equal(m.get(a), 2 * SEQUENCE_BLOCK, 'and reserves its own block above it');
    assert.equal(m.get(b), SEQUENCE_BLOCK);
    assert.equal([...m.keys()].filter((k) => k === a).length, 1);

    // A key replaced in place (same SPI, new key) retires the SA and starts the next above it too.
    engine.control({ type: 'updatePeers', upsert: [peer('a', '10.9.0.2', 3)], remove: [] });
    assert.equal(outSeq('10.9.0.2'), 2 * SEQUENCE_BLOCK);
    m = await marksUntil(file, (x) => x.get(a) === 3 * SEQUENCE_BLOCK);
    assert.equal(m.get(a), 3 * SEQUENCE_BLOCK);
  } finally {
    engine.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
