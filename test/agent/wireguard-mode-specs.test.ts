// The WireGuard mode's desired state pass after pass: it keeps its specs, key holders and routes
// from pass to pass (an unchanged peer keeps its spec object, so the tunnel skips it by identity),
// and every pass must equal what a mode without that memory makes of the same peers: duplicate
// public keys refused to the later peer, next keys accepted only when nobody else holds them,
// routes (the pod CIDRs as they are; with node encryption node IPs too, once per prefix), probes.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { WG_PUBKEY_ANNOTATION, WireGuardMode } from '../../src/agent/wireguard-mode.js';
import { WG_NEXT_PUBKEY_ANNOTATION } from '../../src/agent/wireguard-key-rotation.js';
import type { SecretSource } from '../../src/agent/agent-inputs.js';
import { defaultSettings } from '../../src/agent/settings.js';
import { Health } from '../../src/agent/health.js';
import { createLogger } from '../../src/util/log.js';
import { generatePrivateKey } from '../../src/crypto/index.js';
import type { PeerNode } from '../../src/agent/node-source.js';

const root = mkdtempSync(join(tmpdir(), 'veil-t-wg-specs-'));
after(() => rmSync(root, { recursive: true, force: true }));

async function openMode(nodeEncryption: boolean, stateDir: string): Promise<WireGuardMode> {
  const mode = new WireGuardMode({
    node: { name: 'self', internalIPs: ['172.18.0.2'], podCIDRs: ['10.244.1.0/24'], podGateway: '10.244.1.1', underlayInterface: 'eth0', underlayMtu: 1500, bootID: 'x' },
    stateDir, settings: { ...defaultSettings(), 'encryption.enabled': true, 'encryption.type': 'wireguard', 'encryption.nodeEncryption': nodeEncryption },
    secrets: undefined as unknown as SecretSource, // the rotation reads secrets only once attached to a tunnel
    log: createLogger({}, new Writable({ write(_c, _e, cb) { cb(); } })), health: new Health(), requestReconcile: () => undefined,
  });
  await mode.prepare();
  return mode;
}

/** A small deterministic generator, so a failure names a seed that replays it. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s / 2 ** 32; };
}

for (const nodeEncryption of [false, true]) {
  test(`pass after pass equal to a fresh mode's: duplicate and next keys, shared prefixes, peers that come and go (node encryption ${nodeEncryption})`, { timeout: 60_000 }, async () => {
    const stateDir = mkdtempSync(join(root, 'state-'));
    const mode = await openMode(nodeEncryption, stateDir);
    const seed = Number(process.env.VEIL_TEST_SEED ?? Date.now() % 100000);
    const rand = rng(seed);
    const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const own = mode.desired([]).publish.annotations[WG_PUBKEY_ANNOTATION]!;
    // Few keys and prefixes, so that peers collide: the later of two peers with one key is refused.
    const keys = [...Array.from({ length: 6 }, () => Buffer.from(generatePrivateKey().publicKey).toString('base64')), own, 'not a key'];
    // One pod CIDR is a peer's node IP as a host prefix: with node encryption, a prefix routed twice with two sources.
    const prefixes = ['10.244.2.0/24', '10.244.3.0/24', '10.244.4.0/24', '10.244.5.0/24', '172.18.0.12/32'];
    const peers = new Map<string, PeerNode>();
    let kept = 0;
    let last = new Map<string, unknown>();
    for (let step = 0; step < 200; step++) {
      const name = `n${Math.floor(rand() * 8)}`;
      if (rand() < 0.2) peers.delete(name);
      else if (rand() < 0.9 || !peers.has(name)) { // a new peer object (changed), else the same one again
        const i = Number(name.slice(1));
        const next = rand() < 0.3 ? pick(keys) : undefined;
        peers.set(name, {
          name, slot: i, internalIP: `172.18.0.${10 + i}`, internalIPs: [`172.18.0.${10 + i}`], podCIDRs: [pick(prefixes)], podGateway: `10.244.${10 + i}.1`,
          annotations: { ...(rand() < 0.9 ? { [WG_PUBKEY_ANNOTATION]: pick(keys) } : {}), ...(next ? { [WG_NEXT_PUBKEY_ANNOTATION]: next } : {}) },
          ...(rand() < 0.1 ? { external: { port: 51000 + i, persistentKeepalive: 25 } } : {}),
        });
      }
      const list = [...peers.values()];
      const d = mode.desired(list);
      const fresh = await openMode(nodeEncryption, stateDir); // the same key pair, no memory of earlier passes
      const f = fresh.desired(list);
      fresh.stop();
      const what = `step ${step} (VEIL_TEST_SEED=${seed})`;
      assert.deepEqual(d.datapathPeers.map(d.messageOf!), f.datapathPeers.map(f.messageOf!), `${what}: specs as sent`);
      assert.deepEqual(d.routes, f.routes, `${what}: routes`);
      // Without node encryption the routes are the pod CIDRs' own strings, as IPsec's (the tunnel routes a prefix twice once);
      // with it, once per prefix.
      if (!nodeEncryption) assert.deepEqual(d.routes, list.flatMap((p) => p.podCIDRs), `${what}: routes are the pod CIDRs`);
      else assert.equal(new Set(d.routes.map((r) => (typeof r === 'string' ? r : r.prefix))).size, d.routes.length, `${what}: a prefix once`);
      assert.deepEqual([...d.probes], [...f.probes], `${what}: probes`);
      assert.deepEqual([...d.problems], [...f.problems], `${what}: problems`);
      assert.deepEqual(d.publish, f.publish, `${what}: what it publishes`);
      for (const s of d.datapathPeers) if (last.get(s.name!) === s) kept++;
      last = new Map(d.datapathPeers.map((s) => [s.name!, s]));
    }
    assert.ok(kept > 0, 'an unchanged peer keeps its spec object');
    mode.stop();
  });
}

test('a spec\'s message: what the datapath worker gets is the spec fields only, as plain data, the next key only when accepted', async () => {
  const mode = await openMode(false, mkdtempSync(join(root, 'state-')));
  const [k1, k2] = Array.from({ length: 2 }, () => Buffer.from(generatePrivateKey().publicKey).toString('base64'));
  const peer = (name: string, i: number, annotations: Record<string, string>): PeerNode => ({
    name, slot: i, internalIP: `172.18.0.${i}`, internalIPs: `172.18.0.${i}`, podCIDRs: `10.244.${i}.0/24`, podGateway: `10.244.${i}.1`, annotations,
  });
  const peers = [peer('a', 10, { [WG_PUBKEY_ANNOTATION]: k1! }), peer('b', 11, { [WG_PUBKEY_ANNOTATION]: k2!, [WG_NEXT_PUBKEY_ANNOTATION]: k1! })];
  const d = mode.desired(peers);
  // b's next key is a's key: refused (held), so b's spec has no nextPublicKey at all
  const sent = d.datapathPeers.map(d.messageOf!);
  assert.deepEqual(sent.map((s) => structuredClone(s)), [
    { name: 'a', publicKey: k1, endpoint: { address: '172.18.0.10', port: 51871 }, allowedIPs: ['10.244.10.0/24', '172.18.0.10/32'], persistentKeepalive: 0 },
    { name: 'b', publicKey: k2, endpoint: { address: '172.18.0.11', port: 51871 }, allowedIPs: ['10.244.11.0/24', '172.18.0.11/32'], persistentKeepalive: 0 },
  ]);
  assert.deepEqual(sent.map((s) => Object.keys(s)), [0, 1].map(() => ['name', 'publicKey', 'endpoint', 'allowedIPs', 'persistentKeepalive']));
  assert.deepEqual(JSON.parse(JSON.stringify(sent[0])), structuredClone(sent[0]));
  // The spec itself reads the same through its getters (the key rotation and the mode's next pass read it).
  assert.deepEqual([d.datapathPeers[1]!.name, d.datapathPeers[1]!.publicKey, d.datapathPeers[1]!.allowedIPs, d.datapathPeers[1]!.nextPublicKey], ['b', k2, ['10.244.11.0/24', '172.18.0.11/32'], undefined]);
  const [k3] = [Buffer.from(generatePrivateKey().publicKey).toString('base64')];
  const e = mode.desired([peers[0]!, peer('b', 11, { [WG_PUBKEY_ANNOTATION]: k2!, [WG_NEXT_PUBKEY_ANNOTATION]: k3! })]);
  assert.equal(e.datapathPeers[0], d.datapathPeers[0], 'an unchanged peer keeps its spec object');
  assert.deepEqual(structuredClone(e.messageOf!(e.datapathPeers[1]!)), { name: 'b', publicKey: k2, endpoint: { address: '172.18.0.11', port: 51871 }, allowedIPs: ['10.244.11.0/24', '172.18.0.11/32'], persistentKeepalive: 0, nextPublicKey: k3 });
  assert.deepEqual(e.slotOf && e.datapathPeers.map(e.slotOf), d.datapathPeers.map(d.slotOf), 'a changed peer keeps its slot');
  mode.stop();
});
