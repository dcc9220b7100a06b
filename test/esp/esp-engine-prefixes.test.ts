// The ESP engine's allowed IPs by peer: a peer keeps each prefix it owns as the trie's handle (not
// its text), and the text as given otherwise. What status, the digest and a handover's export say
// must be what the specs said: a prefix given in another spelling, one another peer took (and the
// trie's node then freed and taken by a third peer's prefix). No packets: no TUN device or socket I/O.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { EspEngine } from '../../src/datapath/esp-engine.js';
import { espSpecsDigest } from '../../src/datapath/esp-table-digest.js';
import type { EspEngineStatus, EspPeerSpec } from '../../src/datapath/messages.js';
import type { TunDevice } from '../../src/datapath/tun-device.js';
import type { UdpSocket } from '../../src/datapath/udp-socket.js';
import { AEAD_GCM, packedSa, packTransforms, type EspTransform } from '../../src/esp/esp-transform.js';

function peer(ip: string, allowedIPs: string[]): EspPeerSpec {
  const fresh = (): EspTransform => ({ kind: 'aead', name: AEAD_GCM, key: randomBytes(16), salt: randomBytes(4), icvLength: 16 });
  const [o, i] = packTransforms([fresh(), fresh()]);
  return { name: ip, ip, allowedIPs, outbound: packedSa(3, o!), activeSpi: 3, inbound: packedSa(3, i!) };
}

test('esp engine prefixes: as given in status, digest and export, across another spelling, a takeover and a freed node taken again', () => {
  const dir = mkdtempSync(join(tmpdir(), 'veil-tprefix-'));
  const udp = { describe: () => ({}), gro: false, counters: () => ({}) } as unknown as UdpSocket;
  const tun = { counters: () => ({}) } as unknown as TunDevice; // status reads their counters
  const engine = new EspEngine({ localIp: '10.9.0.1', mtu: 1400, marksFile: join(dir, 'marks.json'), marks: {} }, tun, udp);
  try {
    const specs = new Map<string, EspPeerSpec>();
    const put = (s: EspPeerSpec) => { specs.set(s.ip, s); engine.control({ type: 'updatePeers', upsert: [s], remove: [] }); };
    const owned = (ip: string) => (engine.control({ type: 'status', peer: ip }) as EspEngineStatus).peers[0]!.allowedIPs;
    const exported = (ip: string) => engine.exportState().peers.find((p) => p.ip === ip)!.allowedIPs;
    const digestAgrees = () => (engine.control({ type: 'digest', full: true }) as { digest: string }).digest === espSpecsDigest([...specs.values()]);

    put(peer('10.9.0.2', ['10.20.2.0/24', '10.9.0.2/32']));
    put(peer('10.9.0.3', ['10.20.3.7/24'])); // not the trie's spelling: kept as given
    assert.deepEqual(owned('10.9.0.3'), ['10.20.3.7/24']);
    assert.ok(digestAgrees(), 'the digest is the specs\' (their spelling)');

    put(peer('10.9.0.4', ['10.20.2.0/24'])); // takes a prefix of 10.9.0.2
    assert.deepEqual(owned('10.9.0.2'), ['10.9.0.2/32'], 'a prefix another peer took is no longer owned');
    assert.deepEqual(exported('10.9.0.2'), ['10.20.2.0/24', '10.9.0.2/32'], 'but still listed as configured');

    // The taker lets go: the prefix leaves the trie, and its node goes to the next new prefix.
    put(peer('10.9.0.4', ['10.20.4.0/24']));
    put(peer('10.9.0.5', ['10.20.5.0/24']));
    assert.deepEqual(exported('10.9.0.2'), ['10.20.2.0/24', '10.9.0.2/32'], 'the first owner still lists its own prefix, not the node\'s new one');
    assert.deepEqual(owned('10.9.0.5'), ['10.20.5.0/24']);

    // The first owner is given its prefixes again (the agent's next pass): it owns both.
    put(peer('10.9.0.2', ['10.20.2.0/24', '10.9.0.2/32']));
    assert.deepEqual(owned('10.9.0.2').sort(), ['10.20.2.0/24', '10.9.0.2/32']);
    assert.ok(digestAgrees());

    // Another spelling of a prefix it holds, then back: it keeps the prefix throughout.
    put(peer('10.9.0.2', ['10.20.2.9/24']));
    assert.deepEqual(owned('10.9.0.2'), ['10.20.2.9/24']);
    assert.ok(digestAgrees());
    put(peer('10.9.0.2', ['10.20.2.0/24']));
    assert.deepEqual(owned('10.9.0.2'), ['10.20.2.0/24']);
    assert.ok(digestAgrees());

    engine.control({ type: 'updatePeers', upsert: [], remove: ['10.9.0.2', '10.9.0.3'] });
    specs.delete('10.9.0.2'); specs.delete('10.9.0.3');
    assert.ok(digestAgrees(), 'a peer removed takes its prefixes with it');
    engine.control({ type: 'setPeers', peers: [...specs.values()] });
    assert.ok(digestAgrees());
  } finally {
    engine.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
