// The IPsec mode's desired state pass after pass: an unchanged peer keeps its spec object (the tunnel
// then skips it by identity), and whatever a spec depends on (the peer object, the published key id,
// the keys in force) makes it anew, equal to what a mode without that memory makes.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { IpsecMode } from '../../src/agent/ipsec-mode.js';
import { registrySecrets } from '../../src/agent/agent-inputs.js';
import { defaultSettings } from '../../src/agent/settings.js';
import { Health } from '../../src/agent/health.js';
import { createLogger } from '../../src/util/log.js';
import { EmbeddedRegistry } from '../../src/control/embedded-registry.js';
import type { PeerNode } from '../../src/agent/node-source.js';
import type { EspPeerSpec } from '../../src/datapath/messages.js';
import { packedMaterial, type PackedSa } from '../../src/esp/esp-transform.js';
import { listOf } from '../../src/util/one-or-more.js';

const root = mkdtempSync(join(tmpdir(), 'veil-t-ipsec-specs-'));
after(() => rmSync(root, { recursive: true, force: true }));
const b64 = (s: string) => Buffer.from(s).toString('base64');
const KEY3 = '3+ rfc4106(gcm(aes)) 0123456789abcdef0123456789abcdef01234567 128';
const KEY4 = '4+ rfc4106(gcm(aes)) 89abcdef0123456789abcdef0123456789abcdef 128';

const peer = (i: number, key = 3, boot = 'a'): PeerNode => ({ // boot ids are UUIDs (Cilium derives from them)
  name: `n${i}`, slot: i, internalIP: `172.18.0.${10 + i}`, internalIPs: [`172.18.0.${10 + i}`], podCIDRs: [`10.244.${10 + i}.0/24`],
  podGateway: `10.244.${10 + i}.1`, bootID: `${boot.repeat(8)}-1111-2222-3333-${String(i).padStart(12, '0')}`, encryptionKey: key, annotations: {},
});

/** Specs with each transform's own key bytes in place of the shared chunk it sits in (its place there differs between modes). */
let messageOf: (spec: EspPeerSpec) => EspPeerSpec = (s) => s;
const plain = (specs: EspPeerSpec[]) => specs.map((spec) => {
  const s = messageOf(spec); // as the tunnel sends it
  const keys = (x: PackedSa) => ({ ...x, material: [...packedMaterial(x)], at: 0 });
  return { ...s, outbound: listOf(s.outbound).map(keys), inbound: listOf(s.inbound).map(keys) };
});

async function openMode(reg: EmbeddedRegistry, dir: string): Promise<IpsecMode> {
  const mode = new IpsecMode({
    node: { name: 'self', internalIPs: ['172.18.0.2'], podCIDRs: ['10.244.1.0/24'], podGateway: '10.244.1.1', underlayInterface: 'eth0', underlayMtu: 1500, bootID: 'f0f0f0f0-1111-2222-3333-444455556666' },
    stateDir: mkdtempSync(join(dir, 'state-')), settings: defaultSettings(), secrets: registrySecrets(reg),
    log: createLogger({}, new Writable({ write(_c, _e, cb) { cb(); } })), health: new Health(), requestReconcile: () => undefined,
  });
  await mode.prepare();
  return mode;
}

test('an unchanged peer keeps its spec object; a new peer object, published key id or key makes it anew, as from scratch', { timeout: 30_000 }, async () => {
  const dir = join(root, 'reg');
  const reg = new EmbeddedRegistry(dir);
  await reg.create({ kind: 'Secret', metadata: { name: 'ipsec-keys' }, type: 'Opaque', data: { keys: b64(KEY3) } });
  const mode = await openMode(reg, root);
  const fresh = async () => openMode(reg, root); // no memory of earlier passes
  const check = async (peers: PeerNode[], published: number) => {
    const d = mode.desired(peers, published);
    assert.deepEqual([...d.problems], []);
    assert.equal(d.datapathPeers.length, peers.length, 'a spec per peer');
    messageOf = d.messageOf!;
    for (const spec of d.datapathPeers) {
      const m = messageOf(spec);
      assert.deepEqual(structuredClone(m), m, 'a message goes whole to the worker (own data properties only)');
      assert.deepEqual(Object.keys(m).sort(), ['activeSpi', 'allowedIPs', 'inbound', 'ip', 'outbound']);
      assert.deepEqual([spec.ip, spec.allowedIPs, spec.outbound, spec.activeSpi, spec.inbound], [m.ip, m.allowedIPs, m.outbound, m.activeSpi, m.inbound], 'the kept spec reads as its message');
    }
    const f = await fresh();
    try {
      const scratch = f.desired(peers, published);
      assert.deepEqual(plain(d.datapathPeers), plain(scratch.datapathPeers));
      assert.deepEqual(d.routes, scratch.routes, 'the same routes');
      assert.deepEqual([...d.probes], [...scratch.probes], 'the same probes');
    } finally { f.stop(); }
    return d.datapathPeers;
  };
  try {
    const peers = [peer(1), peer(2), peer(3)];
    const first = await check(peers, 3);
    const material = first.flatMap((s) => [...listOf(s.outbound), ...listOf(s.inbound)].map((x) => x.material));
    assert.ok(material.every((m) => m === material[0]), "every peer's keys in one shared chunk, not a buffer each");
    const firstKeys = plain([first[1]!]);
    const again = await check(peers, 3);
    assert.ok(again.every((s, i) => s === first[i]), 'the same spec objects');

    // n2 rebooted and published key 4: only its spec is new
    const moved = [peers[0]!, peer(2, 4, 'b'), peers[2]!];
    const next = await check(moved, 3);
    assert.deepEqual(next.map((s, i) => s === first[i]), [true, false, true]);
    assert.notDeepEqual(plain([next[1]!]), plain([first[1]!]), 'new derived keys');
    assert.deepEqual(plain([first[1]!]), firstKeys, 'key material once handed out never changes (append only)');

    // a peer gone, then back under the same name; a prefix two peers claim is listed by each (the tunnel routes it once)
    assert.equal((await check([moved[0]!, moved[2]!], 3)).length, 2);
    const back = await check(moved, 3);
    assert.ok(back[1] !== next[1], 'a peer that went is made anew when it comes back');
    await check([moved[0]!, moved[2]!, peer(5)], 3); // one peer gone and one new in one pass: as many specs as before
    assert.ok((await check(moved, 3))[1] !== back[1], 'a peer that went while another came is forgotten all the same');
    const shared = { ...peer(4), podCIDRs: [...peer(1).podCIDRs, '10.99.0.0/24'] };
    await check([...moved, shared], 3);
    assert.deepEqual(mode.desired([...moved, shared], 3).routes, [...moved.map((p) => p.podCIDRs[0]), ...shared.podCIDRs]);
    assert.deepEqual(mode.desired(moved, 3).routes, moved.map((p) => p.podCIDRs[0]), 'a prefix no peer claims is no longer routed');

    // this node published another key id: every pairing is decided again
    const published = await check(moved, 4);
    assert.ok(published.every((s, i) => s !== next[i]));

    // a new key in force: new specs with the SAs of both keys
    await reg.mutate('Secret', 'ipsec-keys', (cur) => cur && { ...cur, data: { keys: b64(KEY4) } });
    const deadline = Date.now() + 10_000;
    let rotated = mode.desired(moved, 3).datapathPeers;
    while (listOf(rotated[0]!.outbound).length < 2) {
      assert.ok(Date.now() < deadline, 'the new key loaded');
      await new Promise((r) => setTimeout(r, 50));
      rotated = mode.desired(moved, 3).datapathPeers;
    }
    assert.ok(rotated.every((s, i) => s !== published[i]));
    assert.deepEqual(rotated.map((s) => [listOf(s.outbound).map((o) => o.spi), s.activeSpi]), [[[4, 3], 3], [[4, 3], 3], [[4, 3], 3]]);
  } finally {
    mode.stop();
    reg.close();
  }
});
