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

test('peer-config over IPv6 and dual stack: tc matches IPv6 node addresses, policies pair allowed IPs and pod CIDRs of one family, routes of the other family go onto the device', () => {
  const peer6 = { ...peer, endpoint: { address: 'fd12:ac1c::c8', port: 0 }, allowedIPs: ['10.250.0.1/32', 'fd50::1/128'] };
  const dual = [{ name: 'n1', ip: 'fd12:ac1c::2', podCIDRs: ['10.228.0.0/24', 'fd10:ae4::/64'], bootID: nodes[0]!.bootID },
    { name: 'n2', ip: 'fd12:ac1c::3', podCIDRs: ['fd10:ae4:0:1::/64'], bootID: nodes[1]!.bootID }];
  const out = xfrmPeerCommands('c', peer6, key, dual).split('\n');
  assert.ok(out.some((l) => /^tc filter del .* tc filter add dev \$DEV ingress pref 49001 protocol ipv6 u32 match ip6 src fd12:ac1c::2\/128 action skbedit mark 0x[0-9a-f]+$/.test(l)), out.join('\n'));
  assert.ok(out.includes('ip xfrm state add src fd12:ac1c::c8 dst fd12:ac1c::2 proto esp spi 3 reqid 1 mode tunnel ' + out.find((l) => l.startsWith('ip xfrm state add src fd12:ac1c::c8 dst fd12:ac1c::2'))!.split(' mode tunnel ')[1]));
  const policies = out.filter((l) => l.startsWith('ip xfrm policy add'));
  const sel = (l: string) => / src (\S+) dst (\S+) dir/.exec(l)!.slice(1);
  for (const l of policies) assert.equal(sel(l)[0]!.includes(':'), sel(l)[1]!.includes(':'), `one family per policy: ${l}`);
  assert.equal(policies.length, 3 * 3, 'n1: 10.228.0.0/24 with 10.250.0.1, fd10:ae4::/64 with fd50::1; n2: fd10:ae4:0:1::/64 with fd50::1');
  assert.deepEqual(out.filter((l) => l.startsWith('ip route')), [
    'ip route replace 10.228.0.0/24 dev $DEV src 10.250.0.1', 'ip route replace fd10:ae4::/64 via fd12:ac1c::2 src fd50::1', 'ip route replace fd10:ae4:0:1::/64 via fd12:ac1c::3 src fd50::1']);
  assert.deepEqual(out.filter((l) => l.startsWith('ip addr add')), ['ip addr add 10.250.0.1/32 dev lo 2>/dev/null || true', 'ip addr add fd50::1/128 dev lo 2>/dev/null || true']);
  // A peer with IPv4 allowed IPs alone gets no IPv6 policies (ip xfrm refuses a policy of mixed families).
  const v4only = xfrmPeerCommands('c', { ...peer6, allowedIPs: ['10.250.0.1/32'] }, key, dual);
  assert.doesNotMatch(v4only, /policy add src \S+ dst fd10|policy add src fd10/);
  assert.doesNotMatch(v4only, /route replace fd10/);
});
