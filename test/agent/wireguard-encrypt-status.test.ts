// GET /encrypt of a WireGuard agent: the datapath worker writes its peers' list as JSON bytes
// (raw-json.ts), which the answer carries whole; read over the network API, it is the answer a list of
// objects made: Cilium's shape, every peer (with and without an endpoint, node IPs as host prefixes).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { WireGuardMode } from '../../src/agent/wireguard-mode.js';
import type { SecretSource } from '../../src/agent/agent-inputs.js';
import type { Tunnel } from '../../src/agent/tunnel.js';
import type { WireGuardEncryptStatus } from '../../src/agent/api.js';
import { defaultSettings } from '../../src/agent/settings.js';
import { Health } from '../../src/agent/health.js';
import { loadOrCreateApiCertificate } from '../../src/agent/api-certificate.js';
import { ApiServer } from '../../src/agent/api-server.js';
import { AgentClient } from '../../src/agent/agent-client.js';
import { WireGuardEngine } from '../../src/datapath/wireguard-engine.js';
import type { TunDevice } from '../../src/datapath/tun-device.js';
import type { UdpSocket } from '../../src/datapath/udp-socket.js';
import { jsonBody } from '../../src/util/raw-json.js';
import { createLogger } from '../../src/util/log.js';
import { generatePrivateKey } from '../../src/crypto/index.js';

const TOKEN = 'Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5';
const quiet = () => createLogger({}, new Writable({ write(_c, _e, cb) { cb(); } }));

test('GET /encrypt over the network API: the worker\'s peer list as bytes, read as every peer in Cilium\'s shape', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'veil-t-wg-encrypt-'));
  // The engine answers status from its peers and counters alone: no packet moves here.
  const engine = new WireGuardEngine({ privateKey: generatePrivateKey().raw, mtu: 1420, wallClockOffsetMs: 0 },
    { counters: () => ({}) } as unknown as TunDevice, { gro: false, port: 51871, counters: () => ({}) } as unknown as UdpSocket);
  const specs = Array.from({ length: 1500 }, (_, i) => ({
    name: `node-${i}`, publicKey: Buffer.from(generatePrivateKey().publicKey).toString('base64'),
    endpoint: i % 7 ? { address: `172.18.${i >> 8}.${i & 255}`, port: 51871 } : null,
    allowedIPs: [`10.${100 + (i >> 8)}.${i & 255}.0/24`, `172.18.${i >> 8}.${i & 255}/32`], persistentKeepalive: i % 2 ? 25 : 0,
  }));
  engine.control({ type: 'setPeers', peers: structuredClone(specs) });
  const mode = new WireGuardMode({
    node: { name: 'self', internalIPs: ['172.18.0.2'], podCIDRs: ['10.244.1.0/24'], podGateway: '10.244.1.1', underlayInterface: 'eth0', underlayMtu: 1500, bootID: 'x' },
    stateDir: dir, settings: { ...defaultSettings(), 'encryption.enabled': true, 'encryption.type': 'wireguard', 'encryption.nodeEncryption': true },
    secrets: undefined as unknown as SecretSource, log: quiet(), health: new Health(), requestReconcile: () => undefined,
  });
  await mode.prepare();
  const probes = [{ node: 'node-1', address: '172.18.0.1', sent: 3, acked: 2, lastAckMs: null, rttMs: 0.4 }];
  // As the worker posts a reply: the peer list's chunks transferred (the worker keeps none of it).
  const sent: unknown[] = [];
  const post = (reply: ReturnType<typeof engine.control>) => { sent.push(reply); return structuredClone(reply, { transfer: engine.transferOf(reply) }); };
  const tunnel = { request: async (req: never) => post(engine.control(req)), probes: () => probes } as unknown as Tunnel<'wireguard'>;
  const cert = await loadOrCreateApiCertificate(dir, 'n1', '127.0.0.1');
  const server = new ApiServer({
    host: '127.0.0.1', port: 0, certificate: cert, log: quiet(), token: async () => TOKEN,
    answer: async () => ({ type: 'application/json', body: jsonBody(await mode.encryptStatus(tunnel)) }),
  });
  await server.listen();
  try {
    const got = await new AgentClient({ kind: 'network', node: 'n1', url: server.address, fingerprint256: cert.fingerprint256, token: TOKEN }).encryptStatus() as WireGuardEncryptStatus;
    const wg = got.wireguard.interfaces[0]!;
    assert.equal(wg['peer-count'], specs.length);
    const byNode = new Map(wg.peers.map((p) => [p.node, p]));
    assert.equal(byNode.size, specs.length);
    for (const s of specs) {
      assert.deepEqual(byNode.get(s.name), {
        node: s.name, 'public-key': s.publicKey, ...(s.endpoint && { endpoint: `${s.endpoint.address}:${s.endpoint.port}` }), 'allowed-ips': s.allowedIPs,
        'last-handshake-time': '0001-01-01T00:00:00.000Z', 'transfer-rx': 0, 'transfer-tx': 0,
      });
    }
    assert.equal(got.mode, 'Wireguard');
    assert.equal(wg['public-key'], (engine.control({ type: 'status' }) as { publicKey: string }).publicKey);
    assert.deepEqual(got.probes, probes);
    const chunks = (sent[0] as { peersJson: { chunks: Uint8Array[] } }).peersJson.chunks;
    assert.ok(chunks.length > 1 && chunks.every((c) => c.byteLength === 0), 'the worker\'s chunks moved to the host');
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
