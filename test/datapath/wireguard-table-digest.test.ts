// The digest of a WireGuard table as the agent gave it (wireguard-table-digest.ts): the same for
// the same specs in any order, kept spec by spec or counted whole; another for any field given;
// an IPv4 prefix hashed from the trie's form (no text made) as its text, and a key given as its
// bytes in Latin-1 (the engine's) as its base64 text. The engine's side, its
// drift and its mending on real engines: peer-updates.test.ts, whole-pass-drift.test.ts.
import { test } from 'node:test';
import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import { WireGuardSpecsDigest, WireGuardTableDigest, wireGuardSpecsDigest } from '../../src/datapath/wireguard-table-digest.js';
import type { WireGuardPeerSpec } from '../../src/datapath/messages.js';
import { AllowedIps } from '../../src/net/allowed-ips.js';

const KEY = (i: number) => Buffer.alloc(32, i + 1).toString('base64');
const spec = (i: number): WireGuardPeerSpec => ({ name: `node-${i}`, publicKey: KEY(i), endpoint: { address: `10.0.0.${i}`, port: 51871 }, allowedIPs: [`10.${i}.0.0/24`, `10.0.0.${i}/32`], persistentKeepalive: 0 });

test('the same specs give the same digest in any order, kept spec by spec or counted whole, and none leaves nothing behind', () => {
  const specs = [1, 2, 3, 4].map(spec);
  const kept = new WireGuardSpecsDigest();
  for (const s of [...specs].reverse()) kept.add(structuredClone(s));
  assert.equal(kept.value, wireGuardSpecsDigest(specs));
  assert.equal(wireGuardSpecsDigest([...specs].reverse()), wireGuardSpecsDigest(specs));
  assert.equal(wireGuardSpecsDigest([{ ...specs[0]!, allowedIPs: [...specs[0]!.allowedIPs, specs[0]!.allowedIPs[0]!] }, ...specs.slice(1)]), wireGuardSpecsDigest(specs), 'a prefix named twice counts once');
  for (const s of specs) kept.remove(s);
  assert.equal(kept.value, wireGuardSpecsDigest([]));
});

test('each field given changes the digest', () => {
  const specs = [1, 2, 3].map(spec), base = wireGuardSpecsDigest(specs);
  const changed: Record<string, Partial<WireGuardPeerSpec>> = {
    publicKey: { publicKey: KEY(9) }, name: { name: 'node-9' }, noName: { name: undefined }, endpointAddress: { endpoint: { address: '10.0.0.9', port: 51871 } },
    endpointPort: { endpoint: { address: '10.0.0.1', port: 51872 } }, noEndpoint: { endpoint: null }, keepalive: { persistentKeepalive: 25 },
    nextKey: { nextPublicKey: KEY(8) }, prefix: { allowedIPs: ['10.1.0.0/24', '10.0.0.9/32'] }, prefixGone: { allowedIPs: ['10.1.0.0/24'] },
  };
  for (const [what, change] of Object.entries(changed)) {
    assert.notEqual(wireGuardSpecsDigest([{ ...specs[0]!, ...change }, ...specs.slice(1)]), base, what);
  }
  assert.notEqual(wireGuardSpecsDigest(specs.slice(1)), base, 'a peer gone');
  // A prefix moved from one peer to another: the same prefixes, another owner.
  const moved = [{ ...specs[0]!, allowedIPs: [specs[0]!.allowedIPs[0]!] }, { ...specs[1]!, allowedIPs: [...specs[1]!.allowedIPs, specs[0]!.allowedIPs[1]!] }, specs[2]!];
  assert.notEqual(wireGuardSpecsDigest(moved), base, 'a prefix that moved');
});

test("an IPv4 prefix from the trie's form hashes as its text", () => {
  const trie = new AllowedIps<number>();
  for (const p of ['0.0.0.0/0', '10.0.0.0/8', '10.1.2.0/24', '192.168.100.7/32', '255.255.255.255/32', '1.20.100.0/22']) {
    const h = trie.insert(p, 1);
    assert.equal(trie.prefixAt(h), p);
    const a = new WireGuardTableDigest(), b = new WireGuardTableDigest();
    a.prefix(p, KEY(1));
    b.prefixIpv4(trie.ipv4At(h), trie.lengthAt(h), KEY(1));
    assert.equal(b.value, a.value, p);
  }
});

test('a key given as its 32 bytes in Latin-1 (the engine keeps given keys so) hashes as its base64 text', () => {
  for (let i = 0; i < 64; i++) {
    const bytes = randomBytes(32), text = bytes.toString('base64'), name = bytes.toString('latin1');
    const a = new WireGuardTableDigest(), b = new WireGuardTableDigest();
    a.peer(text, 'n', { address: '10.0.0.1', port: 1 }, 0, undefined); a.prefix('10.1.0.0/24', text); a.prefixIpv4(0x0a000001, 32, text);
    b.peer(name, 'n', { address: '10.0.0.1', port: 1 }, 0, undefined); b.prefix('10.1.0.0/24', name); b.prefixIpv4(0x0a000001, 32, name);
    assert.equal(b.value, a.value, text);
  }
  const other = new WireGuardTableDigest(), one = new WireGuardTableDigest();
  other.peer(KEY(2), 'n', null, 0, undefined); // KEY(2): 32 bytes of 3
  one.peer(Buffer.alloc(32, 3).toString('latin1'), 'n', null, 0, undefined);
  const third = new WireGuardTableDigest();
  third.peer(Buffer.alloc(32, 4).toString('latin1'), 'n', null, 0, undefined);
  assert.equal(one.value, other.value);
  assert.notEqual(third.value, other.value, 'another key, another digest');
});
