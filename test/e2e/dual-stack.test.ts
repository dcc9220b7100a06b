// Dual stack end to end (issue 16 §5): a 2-node lab with IPv6 node addresses and pod CIDRs beside
// IPv4 (`veil lab up --ip-family dual`). Plaintext IPv6 pod routing works before install and
// `veil verify` fails on it (so the IPv6 check can fail); then WireGuard and IPsec each carry IPv6
// pod traffic between the nodes and `veil verify` proves both families, IPv6 pairs with markers
// of their own; a too-big IPv6 packet gets its ICMPv6 Packet Too Big back through the tunnel path.
// WireGuard runs between the nodes' IPv4 addresses; IPsec, on a second lab, between their IPv6 ones
// (--underlay-family ipv6), with the per-tunnel keys of IPv6 node pairs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { ok } from './cli.js';
import { TestLab, verifyJson, type VerifyJson } from './lab-harness.js';
import { waitFor } from '../wait-for.js';

const lab = new TestLab('tdual', 2);
const [CP, W1] = lab.nodes as [string, string];
let ipA6 = '', ipB6 = '', ipB4 = '';

const verify = (expectPass: boolean): VerifyJson => verifyJson(lab, expectPass);

/** ping -6 from pod A's namespace; the received count. */
function ping6(dst: string, extra: string[] = []): { received: number; out: string } {
  const r = spawnSync('ip', ['netns', 'exec', `veil-${lab.cluster}_pod_pa`, 'ping', '-6', '-n', '-c', '3', '-i', '0.2', '-W', '2', ...extra, dst], { encoding: 'utf8', timeout: 30_000 });
  return { received: Number(/(\d+) received/.exec(r.stdout)?.[1] ?? 0), out: r.stdout + r.stderr };
}

function assertBothFamiliesPass(rep: VerifyJson, outer: string): void {
  assert.equal(rep.ok, true, rep.problems.join('; '));
  assert.equal(rep.pairs.length, 4, 'two ordered pairs, each over IPv4 and IPv6');
  assert.deepEqual(rep.pairs.map((p) => p.family ?? 4).sort(), [4, 4, 6, 6]);
  for (const p of rep.pairs) assert.deepEqual([p.icmp, p.tcp, p.udp, p.leaked, p.outer], [true, true, true, 0, [outer]], `${p.from}->${p.to} IPv${p.family ?? 4}`);
}

before(() => {
  lab.start('--ip-family', 'dual', '--underlay-subnet', '172.29.0.0/24', '--pod-cidr', '10.229.0.0/16');
  const a = ok(lab.veil('lab', 'pod', 'create', 'pa', '--node', CP));
  const b = ok(lab.veil('lab', 'pod', 'create', 'pb', '--node', W1));
  ipA6 = /, (\S+:\S+)$/m.exec(a)![1]!;
  [, ipB4, ipB6] = /with IPs (\S+), (\S+)$/m.exec(b)!;
}, { timeout: 120_000 });

after(() => lab.stop());

test('e2e dual stack: nodes and pods get both families; IPv6 plaintext routing works and verify fails on it', { timeout: 120_000 }, () => {
  const nodes = JSON.parse(ok(lab.veil('lab', 'get', 'nodes', '-o', 'json'))) as { items: { metadata: { name: string }; spec: { internalIPs: string[]; podCIDRs: string[] } }[] };
  const w = nodes.items.find((n) => n.metadata.name === W1)!.spec;
  assert.deepEqual(w.internalIPs, ['172.29.0.3', 'fd12:ac1d::3']);
  assert.deepEqual(w.podCIDRs, ['10.229.1.0/24', 'fd10:ae5:0:1::/64']);
  assert.equal(ipB4, '10.229.1.2');
  assert.equal(ipB6, 'fd10:ae5:0:1::2');
  assert.equal(ipA6, 'fd10:ae5::2');
  assert.equal(ping6(ipB6).received, 3, 'IPv6 pod to pod in plaintext');
  const rep = verify(false);
  const v6 = rep.pairs.filter((p) => p.family === 6);
  assert.equal(v6.length, 2);
  for (const p of v6) assert.ok(p.icmp && p.tcp && p.udp && !p.ok && p.outer.includes('plaintext'), JSON.stringify(p));
  assert.ok(v6.some((p) => p.leaked > 0), 'an IPv6 pair\'s marker is seen in plaintext');
});

test('e2e dual stack: WireGuard carries IPv6 pod traffic; allowed IPs of both families; verify passes for both', { timeout: 120_000 }, async () => {
  ok(lab.veil('install', '--encryption', 'wireguard'));
  ok(lab.veil('status', '--wait', '--wait-duration', '30s'));
  const st = JSON.parse(ok(lab.veil('agent', 'encrypt', 'status', CP, '-o', 'json'))) as { wireguard: { interfaces: { peers: { 'allowed-ips': string[] }[] }[] } };
  assert.deepEqual([...st.wireguard.interfaces[0]!.peers[0]!['allowed-ips']].sort(), ['10.229.1.0/24', '172.29.0.3/32', 'fd10:ae5:0:1::/64', 'fd12:ac1d::3/128']);
  await waitFor('an IPv6 ping through WireGuard', () => ping6(ipB6).received === 3, 20_000);
  // The tunnel device's MTU is 1420: a 1500-byte IPv6 packet that may not be fragmented gets an
  // ICMPv6 Packet Too Big, and the pod's path MTU follows it.
  const big = ping6(ipB6, ['-M', 'do', '-s', '1452', '-c', '1']);
  assert.match(big.out, /(Packet too big|message too long).*mtu ?=? ?1420/i, big.out);
  assert.equal(ping6(ipB6, ['-s', '1372']).received, 3, 'a packet that fits the tunnel crosses it');
  assertBothFamiliesPass(verify(true), 'WireGuard');
});

test('e2e dual stack, tunnels over IPv6 (--underlay-family ipv6): IPsec SAs between the nodes\' IPv6 addresses carry both families; verify passes for both', { timeout: 120_000 }, async () => {
  const lab6 = new TestLab('tdual6', 2);
  try {
    lab6.start('--ip-family', 'dual', '--underlay-family', 'ipv6', '--underlay-subnet', '172.29.1.0/24', '--pod-cidr', '10.230.0.0/16');
    ok(lab6.veil('lab', 'pod', 'create', 'pa', '--node', lab6.nodes[0]!));
    ok(lab6.veil('lab', 'pod', 'create', 'pb', '--node', lab6.nodes[1]!));
    ok(lab6.veil('install', '--encryption', 'ipsec', '--generate-key'));
    ok(lab6.veil('status', '--wait', '--wait-duration', '30s'));
    // Cilium's per-tunnel keys derived from the IPv6 node pair: both ends agree, or nothing would pass.
    const st = JSON.parse(ok(lab6.veil('agent', 'encrypt', 'status', lab6.nodes[0]!, '-o', 'json'))) as { sas: { direction: string; src: string; dst: string }[] };
    assert.deepEqual(st.sas.map((x) => `${x.direction} ${x.src}>${x.dst}`).sort(), ['in fd12:ac1d:100::3>fd12:ac1d:100::2', 'out fd12:ac1d:100::2>fd12:ac1d:100::3']);
    const pod6 = (dst: string) => spawnSync('ip', ['netns', 'exec', `veil-${lab6.cluster}_pod_pa`, 'ping', '-n', '-c', '3', '-i', '0.2', '-W', '2', dst], { encoding: 'utf8', timeout: 30_000 });
    const cap = await lab6.capture(lab6.nodes[0]!, 'eth0', 'udp port 4500');
    await waitFor('IPv6 and IPv4 pings through IPsec over IPv6', () => /3 received/.test(pod6('fd10:ae6:0:1::2').stdout) && /3 received/.test(pod6('10.230.1.2').stdout), 20_000);
    const lines = spawnSync('tcpdump', ['-nr', await cap.stop()], { encoding: 'utf8' }).stdout.trim().split('\n');
    assert.ok(lines.length >= 12 && lines.every((l) => / IP6 fd12:ac1d:100::[23]\.4500 > fd12:ac1d:100::[23]\.4500: /.test(l)), lines.slice(0, 5).join('\n'));
    assertBothFamiliesPass(JSON.parse(lab6.veil('verify', '--timeout', '10s', '-o', 'json').stdout) as VerifyJson, 'ESP-in-UDP');
  } finally {
    lab6.stop();
  }
});
