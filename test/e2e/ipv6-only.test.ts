// An IPv6-only lab end to end (issue 16 §5, `veil lab up --ip-family ipv6`): 2 nodes whose underlay,
// pods and etcd have IPv6 addresses alone. Plaintext IPv6 pod routing works before install and
// `veil verify` fails on it; WireGuard with node encryption (node-to-node IPv6 inside the tunnel,
// the tunnel's own datagrams kept on the underlay by the IPv6 bypass rule) and IPsec as raw ESP
// (IP protocol 50 between IPv6 node addresses) each pass `veil verify`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { ok } from './cli.js';
import { TestLab, pingCount, verifyJson, type VerifyJson } from './lab-harness.js';
import { waitFor } from '../wait-for.js';

const lab = new TestLab('tv6', 2);
const [CP, W1] = lab.nodes as [string, string];
const CP_IP = 'fd12:ac1d:200::2', W1_IP = 'fd12:ac1d:200::3', POD_B = 'fd10:ae7:0:1::2';

const verify = (expectPass: boolean): VerifyJson => verifyJson(lab, expectPass);

function assertPasses(rep: VerifyJson, outer: string): void {
  assert.equal(rep.ok, true, rep.problems.join('; '));
  assert.deepEqual(rep.pairs.map((p) => [p.family, p.icmp, p.tcp, p.udp, p.leaked, p.outer]), [[6, true, true, true, 0, [outer]], [6, true, true, true, 0, [outer]]]);
}

/** ping from a node; how many replies came back. */
function nodePing(node: string, dst: string): number {
  return Number(/(\d+) received/.exec(lab.onNode(node, 'ping', '-n', '-c', '3', '-i', '0.2', '-W', '2', dst).stdout)?.[1] ?? 0);
}

before(() => {
  lab.start('--ip-family', 'ipv6', '--underlay-subnet', '172.29.2.0/24', '--pod-cidr', '10.231.0.0/16');
  ok(lab.veil('lab', 'pod', 'create', 'pa', '--node', CP));
  assert.match(ok(lab.veil('lab', 'pod', 'create', 'pb', '--node', W1)), new RegExp(`with IPs? ${POD_B}$`, 'm'));
}, { timeout: 120_000 });

after(() => lab.stop());

test('e2e IPv6 only: nodes, pods and etcd have IPv6 addresses alone; plaintext routing works and verify fails on it', { timeout: 120_000 }, () => {
  const nodes = JSON.parse(ok(lab.veil('lab', 'get', 'nodes', '-o', 'json'))) as { items: { metadata: { name: string }; spec: { internalIP: string; podCIDR: string; podGateway: string } }[] };
  const w = nodes.items.find((n) => n.metadata.name === W1)!.spec;
  assert.deepEqual([w.internalIP, w.podCIDR, w.podGateway], [W1_IP, 'fd10:ae7:0:1::/64', 'fd10:ae7:0:1::1']);
  for (const ns of [lab.netns(CP), lab.netns(W1), `veil-${lab.cluster}_pod_pa`]) {
    assert.equal(spawnSync('ip', ['-n', ns, '-4', 'addr', 'show', 'scope', 'global'], { encoding: 'utf8' }).stdout.trim(), '', `no IPv4 address in ${ns}`);
  }
  assert.equal(pingCount(lab, 'pa', POD_B), 3, 'pod to pod in plaintext');
  const rep = verify(false);
  assert.equal(rep.pairs.length, 2);
  for (const p of rep.pairs) assert.ok(p.family === 6 && p.icmp && p.tcp && p.udp && !p.ok && p.outer.includes('plaintext'), JSON.stringify(p));
  assert.ok(rep.pairs.some((p) => p.leaked > 0), 'a marker is seen in plaintext');
});

test('e2e IPv6 only: WireGuard with node encryption between IPv6 node addresses; verify passes', { timeout: 120_000 }, async () => {
  ok(lab.veil('install', '--encryption', 'wireguard', '--set', 'encryption.nodeEncryption=true'));
  ok(lab.veil('status', '--wait', '--wait-duration', '30s'));
  const st = JSON.parse(ok(lab.veil('agent', 'encrypt', 'status', CP, '-o', 'json'))) as { wireguard: { interfaces: { peers: { endpoint: string; 'allowed-ips': string[] }[] }[] } };
  const peer = st.wireguard.interfaces[0]!.peers[0]!;
  assert.deepEqual([...peer['allowed-ips']].sort(), ['fd10:ae7:0:1::/64', `${W1_IP}/128`]);
  assert.equal(peer.endpoint, `[${W1_IP}]:51871`);
  // Node to node goes into the tunnel (node encryption); the tunnel's own datagrams to the same
  // address must not: without the IPv6 bypass rule no handshake completes.
  await waitFor('node-to-node IPv6 ping through WireGuard', () => nodePing(CP, W1_IP) === 3, 20_000);
  const route = spawnSync('ip', ['-n', lab.netns(CP), 'route', 'get', W1_IP], { encoding: 'utf8' }).stdout;
  assert.match(route, /dev veil_wg0/, route);
  assertPasses(verify(true), 'WireGuard');
});

test('e2e IPv6 only: IPsec as raw ESP (IP protocol 50) between IPv6 node addresses; verify passes', { timeout: 120_000 }, async () => {
  ok(lab.veil('uninstall'));
  ok(lab.veil('install', '--encryption', 'ipsec', '--generate-key', '--set', 'encryption.ipsec.encapsulation=esp'));
  ok(lab.veil('status', '--wait', '--wait-duration', '30s'));
  const st = JSON.parse(ok(lab.veil('agent', 'encrypt', 'status', CP, '-o', 'json'))) as { sas: { direction: string; src: string; dst: string }[] };
  assert.deepEqual(st.sas.map((x) => `${x.direction} ${x.src}>${x.dst}`).sort(), [`in ${W1_IP}>${CP_IP}`, `out ${CP_IP}>${W1_IP}`]);
  const cap = await lab.capture(CP, 'eth0', 'ip6 proto 50');
  await waitFor('an IPv6 pod ping through raw ESP', () => pingCount(lab, 'pa', POD_B) === 3, 20_000);
  const lines = spawnSync('tcpdump', ['-nr', await cap.stop()], { encoding: 'utf8' }).stdout.trim().split('\n');
  assert.ok(lines.length >= 6 && lines.every((l) => /IP6 fd12:ac1d:200::[23] > fd12:ac1d:200::[23]: ESP\(spi=/.test(l)), lines.slice(0, 5).join('\n'));
  assertPasses(verify(true), 'ESP');
});
