// `veil ipsec peer-config`'s commands for both encapsulations: ESP in UDP 4500 (the encap clause
// and the note about the encap socket) or raw ESP (neither), the same keys, SPI, ESN and marks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { xfrmPeerCommands } from '../../src/operator/peer-config.js';
import { parseKeyLine } from '../../src/keys/ipsec-keyfile.js';

const parsed = parseKeyLine(`3+ rfc4106(gcm(aes)) ${'ab'.repeat(20)} 128`);
assert.ok(parsed.ok);
const key = parsed.value;
const peer = { name: 'vm', endpoint: { address: '172.28.200.1', port: 0 }, allowedIPs: ['10.250.0.1/32'], persistentKeepalive: 0, bootID: '0b4e7a8c-1d2e-4f30-9a1b-2c3d4e5f6a70' };
const nodes = [
  { name: 'n1', ip: '172.28.0.2', podCIDRs: ['10.228.0.0/24'], bootID: '1b4e7a8c-1d2e-4f30-9a1b-2c3d4e5f6a71' },
  { name: 'n2', ip: '172.28.0.3', podCIDRs: ['10.228.1.0/24'], bootID: '2b4e7a8c-1d2e-4f30-9a1b-2c3d4e5f6a72' },
];

test('peer-config: ESP in UDP by default, raw ESP (no encap clause, no encap socket) when the cluster says esp', () => {
  const udp = xfrmPeerCommands('c', peer, key, nodes);
  const esp = xfrmPeerCommands('c', peer, key, nodes, 'esp');
  const states = (s: string) => s.split('\n').filter((l) => l.startsWith('ip xfrm state add'));
  assert.equal(states(udp).length, 4);
  assert.ok(states(udp).every((l) => l.endsWith(' encap espinudp 4500 4500 0.0.0.0')));
  assert.match(udp, /UDP_ENCAP_ESPINUDP/);
  assert.equal(states(esp).length, 4);
  assert.ok(states(esp).every((l) => !l.includes('encap') && / flag esn replay-window 1024( mark 0x[0-9a-f]+d00 mask 0xffff0f00)?$/.test(l)), states(esp).join('\n'));
  assert.doesNotMatch(esp, /UDP_ENCAP_ESPINUDP/);
  assert.match(esp, /IP protocol 50/);
  // the same SAs apart from the encapsulation
  assert.deepEqual(states(esp), states(udp).map((l) => l.replace(' encap espinudp 4500 4500 0.0.0.0', '')));
});
