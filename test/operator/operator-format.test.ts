// The pure pieces of the operator commands: cilium-cli's encryption summary, the status report and
// its reasons, pcap reading and frame classification, the verify verdict, Prometheus text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatEncryptionSummary, summarizeEncryption, encryptionSummaryJson } from '../../src/operator/encryption-summary.js';
import { buildStatusReport, formatStatusReport, handshakeProblems, peersAwaitingHandshake } from '../../src/operator/cluster-status.js';
import { classifyFrame, countOccurrences, parsePcap } from '../../src/operator/pcap.js';
import { parseIp } from '../../src/net/cidr.js';
import { judgeVerify } from '../../src/operator/verify-report.js';
import { parsePrometheusText, sampleValue } from '../../src/operator/prometheus-text.js';
import { defaultSettings } from '../../src/agent/settings.js';
import type { RegistryObject } from '../../src/control/registry.js';
import type { CiliumEncryptionStatus, Healthz } from '../../src/agent/api.js';
import type { HealthCheck } from '../../src/agent/health.js';

const wg: CiliumEncryptionStatus = { mode: 'Wireguard' };
const ipsec = (keys: number, seq: string, errors: Record<string, number> = {}): CiliumEncryptionStatus => ({
  mode: 'IPsec', ipsec: { 'decrypt-interfaces': ['eth0'], 'keys-in-use': keys, 'max-seq-number': seq, 'error-count': Object.values(errors).reduce((a, b) => a + b, 0), 'xfrm-errors': errors },
});

test('encryption summary: WireGuard on every node, and a mixed cluster, as cilium-cli prints them', () => {
  const all = summarizeEncryption([1, 2, 3, 4].map((i) => ({ node: `n${i}`, status: wg })), { ipsecEnabled: false });
  assert.equal(formatEncryptionSummary(all), 'Encryption: Wireguard (4/4 nodes)\n\n');
  assert.equal(encryptionSummaryJson(all), '{\n "total-node-count": 4,\n "enc-wireguard-node-count": 4\n}\n');
  const mixed = summarizeEncryption([{ node: 'a', status: { mode: 'Disabled' as const } }, { node: 'b', status: wg }, { node: 'c', status: wg }], { ipsecEnabled: false });
  assert.equal(formatEncryptionSummary(mixed), 'Encryption: Disabled (1/3 nodes)\nEncryption: Wireguard (2/3 nodes)\n\n');
});

test('encryption summary: IPsec keys, highest sequence number, expected keys, rotation, errors', () => {
  const steady = summarizeEncryption([ipsec(6, '0x1a/0xffffffffffffffff'), ipsec(6, '0x3f/0xffffffffffffffff'), ipsec(6, '0x2/0xffffffffffffffff'), ipsec(6, 'N/A')]
    .map((status, i) => ({ node: `n${i}`, status })), { ipsecEnabled: true });
  assert.equal(formatEncryptionSummary(steady), [
    'Encryption: IPsec (4/4 nodes)', 'IPsec keys in use: 6 on 4/4', 'IPsec highest Seq. Number: 0x3f/0xffffffffffffffff across all nodes',
    'IPsec expected key count: 6', 'IPsec key rotation in progress: false', 'IPsec errors: 0 across all nodes', '', ''].join('\n'));
  const rotating = summarizeEncryption([ipsec(12, '0x5/0xffffffffffffffff', { XfrmInNoStates: 3 }), ipsec(6, '0x5/0xffffffffffffffff'), ipsec(6, '0x5/0xffffffffffffffff', { XfrmInNoStates: 1, XfrmInStateProtoError: 2 }), ipsec(6, '0x1/0xffffffffffffffff')]
    .map((status, i) => ({ node: `n${i}`, status })), { ipsecEnabled: true });
  const text = formatEncryptionSummary(rotating);
  assert.match(text, /^IPsec keys in use: 6 on 3\/4, 12 on 1\/4$/m);
  assert.match(text, /^IPsec key rotation in progress: true$/m);
  assert.match(text, /^IPsec errors: 6 across all nodes$/m);
  assert.match(text, /^\tXfrmInNoStates: 4 on 2\/4 nodes$/m);
  assert.match(text, /^\tXfrmInStateProtoError: 2 on 1\/4 nodes$/m);
  assert.equal(rotating['ipsec-expected-key-count'], 6);
});

function node(name: string, agent?: Record<string, unknown>): RegistryObject {
  return { kind: 'Node', metadata: { name }, spec: {}, status: agent ? { agent } : {} };
}

test('status report: all ready is OK (exit-worthy), a dead agent and a lapsed liveness lease are errors with reasons', () => {
  const now = Date.parse('2026-01-01T00:01:00Z');
  const settings = { ...defaultSettings(), 'encryption.enabled': true, 'encryption.type': 'wireguard' as const };
  const fresh = { ready: true, pid: 10, health: { state: 'Ok', problems: [] }, encryption: { mode: 'Wireguard' } };
  const lease = (n: string): RegistryObject => ({ kind: 'Lease', metadata: { name: n }, spec: { renewTime: new Date(now - 2000).toISOString(), ttlSeconds: 15 } });
  const healthz = (n: string, checks: HealthCheck[] = []): Healthz => ({ node: n, pid: 10, startedAt: new Date(now - 60_000).toISOString(), health: { state: checks.length ? 'Degraded' : 'Ok', checks }, encryption: { mode: 'Wireguard', device: 'veil_wg0' } });
  const ok = buildStatusReport({ cluster: 'c', version: '1', settings, now, observations: ['a', 'b'].map((n) => ({ name: n, object: node(n, fresh), agentPid: 10, lease: lease(n), healthz: healthz(n), encrypt: wg })) });
  assert.equal(ok.ok, true);
  assert.deepEqual(ok.agents, { desired: 2, running: 2, ready: 2, available: 2 });
  assert.match(formatStatusReport(ok), /^Veil:\s+OK$/m);
  assert.match(formatStatusReport(ok), /^Encryption:\s+Wireguard \(2\/2 nodes\)$/m);
  assert.match(formatStatusReport(ok), /^a\s+Available\s+-\s+Ok\s+Wireguard\s+2s ago$/m);
  assert.match(formatStatusReport(ok), /^Version:\s+veil 1$/m, 'agents of the CLI\'s version (or none reported): nothing more');
  // An upgrade under way: the agents' versions are counted when one differs from the CLI's.
  const upgrading = buildStatusReport({ cluster: 'c', version: '1', settings, now, observations: [
    { name: 'a', object: node('a', fresh), agentPid: 10, lease: lease('a'), healthz: { ...healthz('a'), version: '2' }, encrypt: wg },
    { name: 'b', object: node('b', { ...fresh, version: '1' }), agentPid: 10, lease: lease('b'), encrypt: wg }] });
  assert.deepEqual(upgrading.nodes.map((n) => n.version), ['2', '1']);
  assert.match(formatStatusReport(upgrading), /^Version:\s+veil 1; agents: 2 \(1\/2 nodes\), 1 \(1\/2 nodes\)$/m);

  const bad = buildStatusReport({ cluster: 'c', version: '1', settings, now, observations: [
    { name: 'a', object: node('a', fresh), agentPid: 10, lease: lease('a'), healthz: healthz('a', [{ name: 'peer b', state: 'Degraded', message: 'detected duplicate public key', since: new Date(now - 5000).toISOString() }]) },
    { name: 'b', object: node('b', { ...fresh, health: { state: 'Failure', problems: ['keys: key file rejected'] } }) }, // no lease: it lapsed
  ] });
  assert.equal(bad.ok, false);
  assert.deepEqual(bad.agents, { desired: 2, running: 1, ready: 1, available: 1 });
  const reasons = bad.errors.map((e) => `${e.node}: ${e.reason}`);
  assert.ok(reasons.includes('a: peer b: detected duplicate public key'), reasons.join('\n'));
  assert.ok(reasons.includes('b: agent not running (pid 10 is gone)'), reasons.join('\n'));
  assert.ok(reasons.includes('b: no liveness lease: Lease/b lapsed (its agent stopped renewing it)'), reasons.join('\n'));
  assert.ok(reasons.includes('b: keys: key file rejected (last reported)'), reasons.join('\n'));
  assert.match(formatStatusReport(bad), /^Veil:\s+4 errors$/m);
  assert.match(formatStatusReport(bad), /^Encryption:\s+Disabled \(1\/2 nodes\), Wireguard \(1\/2 nodes\)$/m);

  // killed (kill -9) a second ago: its lease and its published "ready" live on, its process does not
  const killed = buildStatusReport({ cluster: 'c', version: '1', settings, now, observations: [
    { name: 'a', object: node('a', fresh), agentPid: 10, lease: lease('a'), healthz: healthz('a'), encrypt: wg },
    { name: 'b', object: node('b', fresh), lease: lease('b'), supervision: { restarts: 3, state: 'backoff', lastExit: { code: null, signal: 'SIGKILL', at: new Date(now - 1000).toISOString() }, nextStartAt: new Date(now + 500).toISOString() } },
  ] });
  assert.equal(killed.ok, false);
  assert.deepEqual(killed.agents, { desired: 2, running: 1, ready: 1, available: 1 });
  assert.ok(killed.errors.some((e) => e.node === 'b' && e.reason === 'agent not running (pid 10 is gone): it was killed by SIGKILL 1s ago; its supervisor restarts it in 0.5s; restarts: 3'), JSON.stringify(killed.errors));
  assert.match(formatStatusReport(killed), /^b\s+NotRunning\s+3\s+/m);
  // a new agent runs but the registry still holds what the dead one published: not ready yet
  const replaced = buildStatusReport({ cluster: 'c', version: '1', settings, now, observations: [
    { name: 'b', object: node('b', fresh), agentPid: 11, lease: lease('b'), healthz: healthz('b'), encrypt: wg },
  ] });
  assert.equal(replaced.agents.ready, 0);

  const none = buildStatusReport({ cluster: 'c', version: '1', settings: undefined, now, observations: [{ name: 'a', object: node('a') }] });
  assert.equal(none.installed, false);
  assert.equal(none.ok, false);
  assert.deepEqual(none.errors, []);
});

test('status report: a WireGuard peer without a handshake is a problem only after the grace time', () => {
  const now = 1_000_000_000;
  const st: CiliumEncryptionStatus = { mode: 'Wireguard', wireguard: { interfaces: [{ peers: [
    { node: 'x', 'last-handshake-time': '0001-01-01T00:00:00.000Z' },
    { node: 'y', 'last-handshake-time': new Date(now - 10_000).toISOString() },
    { node: 'z', 'last-handshake-time': new Date(now - 400_000).toISOString() }] }] } };
  assert.deepEqual(handshakeProblems(st, now - 5_000, now), ['peer z: latest handshake 400s ago (more than 180s)']);
  assert.deepEqual(handshakeProblems(st, now - 60_000, now), ['peer x: no handshake 60s after the agent started', 'peer z: latest handshake 400s ago (more than 180s)']);
  assert.deepEqual(handshakeProblems({ mode: 'IPsec' }, 0, now), []);
  assert.deepEqual(peersAwaitingHandshake(st, now - 5_000, now), ['x'], 'within the grace time x is pending, not an error');
  assert.deepEqual(peersAwaitingHandshake(st, now - 60_000, now), []);
});

// ---- pcap ---------------------------------------------------------------------------------------

function ipv4Frame(src: string, dst: string, proto: number, l4: Buffer): Buffer {
  const eth = Buffer.alloc(14); eth.writeUInt16BE(0x0800, 12);
  const ip = Buffer.alloc(20); ip[0] = 0x45; ip.writeUInt16BE(20 + l4.length, 2); ip[8] = 64; ip[9] = proto;
  src.split('.').forEach((b, i) => { ip[12 + i] = Number(b); });
  dst.split('.').forEach((b, i) => { ip[16 + i] = Number(b); });
  return Buffer.concat([eth, ip, l4]);
}
function udp(sport: number, dport: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(8); h.writeUInt16BE(sport, 0); h.writeUInt16BE(dport, 2); h.writeUInt16BE(8 + payload.length, 4);
  return Buffer.concat([h, payload]);
}
function pcapFile(frames: Buffer[], bigEndian = false): Buffer {
  const w32 = (b: Buffer, v: number, o: number) => (bigEndian ? b.writeUInt32BE(v, o) : b.writeUInt32LE(v, o));
  const head = Buffer.alloc(24); w32(head, 0xa1b2c3d4, 0); (bigEndian ? head.writeUInt16BE(2, 4) : head.writeUInt16LE(2, 4)); w32(head, 262144, 16); w32(head, 1, 20);
  const recs = frames.map((f, i) => { const r = Buffer.alloc(16); w32(r, 1700000000 + i, 0); w32(r, 500000, 4); w32(r, f.length, 8); w32(r, f.length, 12); return Buffer.concat([r, f]); });
  return Buffer.concat([head, ...recs]);
}

test('pcap: reads both byte orders; classifies WireGuard, ESP-in-UDP, ARP, IPv6 ND and plaintext', () => {
  const nodes = new Set(['172.18.0.2', '172.18.0.3']);
  const wgMsg = Buffer.alloc(48); wgMsg[0] = 4;
  const esp = Buffer.alloc(40); esp.writeUInt32BE(3, 0); esp.writeUInt32BE(7, 4);
  const arp = Buffer.alloc(42); arp.writeUInt16BE(0x0806, 12);
  const rs = Buffer.alloc(14 + 40 + 8); rs.writeUInt16BE(0x86dd, 12); rs[14 + 6] = 58; rs[14 + 8] = 0xfe; rs[14 + 9] = 0x80; rs[14 + 40] = 133;
  const marker = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
  const frames = [
    ipv4Frame('172.18.0.2', '172.18.0.3', 17, udp(51871, 51871, wgMsg)),
    ipv4Frame('172.18.0.3', '172.18.0.2', 17, udp(4500, 4500, esp)),
    arp, rs,
    ipv4Frame('10.244.1.2', '10.244.2.2', 1, Buffer.concat([Buffer.from([8, 0, 0, 0, 0, 1, 0, 1]), marker, marker])),
    ipv4Frame('172.18.0.2', '172.18.0.3', 17, udp(51871, 51871, Buffer.from('not wireguard at all, plaintext'))),
    ipv4Frame('172.18.0.2', '172.18.0.9', 17, udp(4500, 4500, esp)),
    ipv4Frame('172.18.0.2', '172.18.0.3', 50, esp), // raw ESP, as Cilium's nodes send it
    ipv4Frame('172.18.0.2', '172.18.0.9', 50, esp), // ...but not to a node
    ipv4Frame('172.18.0.2', '172.18.0.3', 50, Buffer.alloc(40)), // SPI 0 is no ESP
  ];
  for (const be of [false, true]) {
    const pkts = parsePcap(pcapFile(frames, be));
    assert.equal(pkts.length, frames.length);
    assert.equal(pkts[1]!.time, 1700000001.5);
    assert.deepEqual(pkts.map((p) => classifyFrame(p.data, nodes).kind), ['WireGuard', 'ESP-in-UDP', 'ARP', 'IPv6 link-local', 'plaintext', 'plaintext', 'plaintext', 'ESP', 'plaintext', 'plaintext']);
  }
  assert.equal(classifyFrame(frames[4]!, nodes).summary, 'ICMP 10.244.1.2 > 10.244.2.2');
  assert.equal(countOccurrences(pcapFile(frames), marker), 2);
  assert.throws(() => parsePcap(Buffer.from('0a0d0d0a000000000000000000000000000000000000000000', 'hex')), /not a pcap file/);
  const torn = pcapFile(frames).subarray(0, -5);
  assert.equal(parsePcap(torn).length, frames.length - 1, 'a torn last record is left out');
});

function ipv6Frame(src: string, dst: string, next: number, l4: Buffer): Buffer {
  const eth = Buffer.alloc(14); eth.writeUInt16BE(0x86dd, 12);
  const ip = Buffer.alloc(40); ip[0] = 0x60; ip.writeUInt16BE(l4.length, 4); ip[6] = next; ip[7] = 64;
  Buffer.from(parseIp(src).bytes).copy(ip, 8); Buffer.from(parseIp(dst).bytes).copy(ip, 24);
  return Buffer.concat([eth, ip, l4]);
}

test('pcap: IPv6 frames are judged as IPv4 ones are: tunnel datagrams between node addresses, ND, plaintext', () => {
  const nodes = new Set(['fd12:ac1f:4d00::2', 'fd12:ac1f:4d00::3']);
  const wgMsg = Buffer.alloc(48); wgMsg[0] = 4;
  const esp = Buffer.alloc(40); esp.writeUInt32BE(3, 0); esp.writeUInt32BE(7, 4);
  const ns = Buffer.alloc(24); ns[0] = 135; // a neighbour solicitation for a global address, from a global source
  const echo = Buffer.concat([Buffer.from([128, 0, 0, 0, 0, 1, 0, 1]), Buffer.alloc(16, 0xab)]);
  const hopByHop = Buffer.alloc(8); hopByHop[0] = 17; // then UDP
  const frames = [
    ipv6Frame('fd12:ac1f:4d00::2', 'fd12:ac1f:4d00::3', 17, udp(51871, 51871, wgMsg)),
    ipv6Frame('fd12:ac1f:4d00::3', 'fd12:ac1f:4d00::2', 17, udp(4500, 4500, esp)),
    ipv6Frame('fd12:ac1f:4d00::2', 'fd12:ac1f:4d00::3', 50, esp),
    ipv6Frame('fd12:ac1f:4d00::2', 'ff02::1:ff00:3', 58, ns),
    ipv6Frame('fd10:ab1:0:1::2', 'fd10:ab1:0:2::2', 58, echo),
    ipv6Frame('fd12:ac1f:4d00::2', 'fd12:ac1f:4d00::9', 17, udp(51871, 51871, wgMsg)), // not to a node
    ipv6Frame('fd12:ac1f:4d00::2', 'fd12:ac1f:4d00::3', 0, Buffer.concat([hopByHop, udp(51871, 51871, wgMsg)])),
  ];
  assert.deepEqual(frames.map((f) => classifyFrame(f, nodes).kind), ['WireGuard', 'ESP-in-UDP', 'ESP', 'IPv6 link-local', 'plaintext', 'plaintext', 'WireGuard']);
  assert.equal(classifyFrame(frames[4]!, nodes).summary, 'ICMPv6 fd10:ab1:0:1::2 > fd10:ab1:0:2::2');
  assert.equal(classifyFrame(frames[0]!, nodes).summary, 'UDP [fd12:ac1f:4d00::2]:51871 > [fd12:ac1f:4d00::3]:51871');
  assert.equal(classifyFrame(frames[0]!, nodes).src, 'fd12:ac1f:4d00::2');
});

test('verify verdict, dual stack: the IPv6 pairs have markers of their own and the tunnel between the nodes carries them', () => {
  const nodes = [
    { name: 'a', internalIP: '172.18.0.2', podCIDR: '10.244.0.0/24', internalIPs: ['172.18.0.2', 'fd12:ac12::2'], podCIDRs: ['10.244.0.0/24', 'fd10:af4:0:0::/64'] },
    { name: 'b', internalIP: '172.18.0.3', podCIDR: '10.244.1.0/24', internalIPs: ['172.18.0.3', 'fd12:ac12::3'], podCIDRs: ['10.244.1.0/24', 'fd10:af4:0:1::/64'] },
  ];
  const all = { icmp: true, tcp: true, udp: true, detail: [] };
  const traffic = [{ from: 'a', to: 'b', ...all }, { from: 'a', to: 'b', family: 6 as const, ...all }, { from: 'b', to: 'a', ...all }, { from: 'b', to: 'a', family: 6 as const, ...all }];
  const markers = { 'a>b': 'aa', 'a>b/IPv6': 'a6', 'b>a': 'bb', 'b>a/IPv6': 'b6' };
  const wg = (src: string, dst: string) => ({ kind: 'WireGuard' as const, src, dst, summary: 'UDP' });
  const tunnel = [wg('172.18.0.2', '172.18.0.3'), wg('172.18.0.3', '172.18.0.2')];
  const good = judgeVerify({ mode: 'Wireguard', nodes, traffic, markers, durationMs: 1, captures: [{ node: 'a', frames: tunnel, markerHits: { aa: 0, a6: 0, bb: 0, b6: 0 } }] });
  assert.equal(good.ok, true, good.problems.join('; '));
  assert.deepEqual(good.pairs.map((p) => [p.family ?? 4, p.marker, p.outer]), [[4, 'aa', ['WireGuard']], [6, 'a6', ['WireGuard']], [4, 'bb', ['WireGuard']], [6, 'b6', ['WireGuard']]]);
  // An IPv6 pod packet in plaintext between the pods' IPv6 addresses is the pair's leak, and its marker counts for the IPv6 pair only.
  const leak = judgeVerify({ mode: 'Wireguard', nodes, traffic, markers, durationMs: 1, captures: [{ node: 'a', frames: [...tunnel, { kind: 'plaintext', src: 'fd10:af4:0:0::2', dst: 'fd10:af4:0:1::2', summary: 'ICMPv6' }], markerHits: { a6: 2 } }] });
  assert.equal(leak.ok, false);
  assert.deepEqual(leak.pairs.map((p) => p.ok), [false, false, true, true]);
  assert.deepEqual(leak.pairs.map((p) => p.leaked), [0, 2, 0, 0]);
  assert.deepEqual(leak.pairs[0]!.outer, ['WireGuard', 'plaintext']);
  // Tunnel datagrams between the nodes' IPv6 addresses belong to the same node pair.
  const over6 = judgeVerify({ mode: 'Wireguard', nodes, traffic, markers, durationMs: 1, captures: [{ node: 'a', frames: [wg('fd12:ac12::2', 'fd12:ac12::3'), wg('fd12:ac12::3', 'fd12:ac12::2')], markerHits: {} }] });
  assert.equal(over6.ok, true, over6.problems.join('; '));
});

test('verify verdict: passes only with all traffic, no marker and only the expected tunnel packets', () => {
  const nodes = [{ name: 'a', internalIP: '172.18.0.2', podCIDR: '10.244.0.0/24' }, { name: 'b', internalIP: '172.18.0.3', podCIDR: '10.244.1.0/24' }];
  const traffic = [{ from: 'a', to: 'b', icmp: true, tcp: true, udp: true, detail: [] }, { from: 'b', to: 'a', icmp: true, tcp: true, udp: true, detail: [] }];
  const markers = { 'a>b': 'aa', 'b>a': 'bb' };
  const wgAB = { kind: 'WireGuard' as const, src: '172.18.0.2', dst: '172.18.0.3', summary: 'UDP' };
  const wgBA = { kind: 'WireGuard' as const, src: '172.18.0.3', dst: '172.18.0.2', summary: 'UDP' };
  const good = judgeVerify({ mode: 'Wireguard', nodes, traffic, markers, durationMs: 1, captures: [{ node: 'a', frames: [wgAB, wgBA, { kind: 'ARP', summary: 'ARP' }], markerHits: { aa: 0, bb: 0 } }] });
  assert.equal(good.ok, true, good.problems.join('; '));
  assert.deepEqual(good.pairs.map((p) => p.outer), [['WireGuard'], ['WireGuard']]);

  const leak = judgeVerify({ mode: 'Wireguard', nodes, traffic, markers, durationMs: 1, captures: [{ node: 'a', frames: [wgAB, wgBA, { kind: 'plaintext', src: '10.244.0.2', dst: '10.244.1.2', summary: 'ICMP 10.244.0.2 > 10.244.1.2' }], markerHits: { aa: 3, bb: 0 } }] });
  assert.equal(leak.ok, false);
  assert.deepEqual(leak.pairs.map((p) => [p.leaked, p.ok]), [[3, false], [0, true]]);
  assert.deepEqual(leak.unexpected, [{ summary: 'ICMP 10.244.0.2 > 10.244.1.2', count: 1 }]);

  const espAB = { ...wgAB, kind: 'ESP' as const }, espBA = { ...wgBA, kind: 'ESP' as const };
  const raw = judgeVerify({ mode: 'IPsec', encapsulation: 'esp', nodes, traffic, markers, durationMs: 1, captures: [{ node: 'a', frames: [espAB, espBA], markerHits: {} }] });
  assert.equal(raw.ok, true, raw.problems.join('; '));
  assert.equal(raw.expected, 'ESP');
  const rawExpectedUdp = judgeVerify({ mode: 'IPsec', nodes, traffic, markers, durationMs: 1, captures: [{ node: 'a', frames: [espAB, espBA], markerHits: {} }] });
  assert.equal(rawExpectedUdp.ok, false, 'raw ESP where ESP in UDP is installed is unexpected');

  const lost = judgeVerify({ mode: 'IPsec', nodes, traffic: [{ ...traffic[0]!, udp: false }], markers, durationMs: 1, captures: [{ node: 'a', frames: [{ ...wgAB, kind: 'ESP-in-UDP' }], markerHits: {} }] });
  assert.equal(lost.ok, false);
  const plain = judgeVerify({ mode: 'Disabled', nodes, traffic, markers, durationMs: 1, captures: [{ node: 'a', frames: [], markerHits: {} }] });
  assert.equal(plain.ok, false);
  assert.match(plain.problems[0]!, /not installed/);
});

test('prometheus text: samples, labels with escapes, HELP and TYPE', () => {
  const s = parsePrometheusText('# HELP veil_x_total Bytes.\n# TYPE veil_x_total counter\nveil_x_total{peer="a\\"b",dir="tx"} 42\nveil_up 1\n\nbad line here\n');
  assert.deepEqual(s[0], { name: 'veil_x_total', labels: { peer: 'a"b', dir: 'tx' }, value: 42, type: 'counter', help: 'Bytes.' });
  assert.equal(sampleValue(s, 'veil_x_total', { dir: 'tx' }), 42);
  assert.equal(sampleValue(s, 'veil_up'), 1);
  assert.equal(s.length, 2);
});
