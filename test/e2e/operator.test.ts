// The operator's commands end to end on a 4-node lab: verify fails in plaintext (before install and
// after uninstall) and passes with WireGuard (and IPsec); status reports 4/4 and exit 0, then the
// reason and a non-zero exit when an agent is stopped; metrics scraped over HTTP move with traffic;
// capture writes a pcap tshark reads.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parsePrometheusText, sampleValue } from '../../src/operator/prometheus-text.js';
import { ok, veilCli } from './cli.js';

const CLUSTER = `topere2e-${process.pid}`; // a run cut off mid-test must not collide with the next
const W1 = `${CLUSTER}-worker`, W2 = `${CLUSTER}-worker2`;
const home = mkdtempSync(join(tmpdir(), 'veil-t-oper-'));
const env: NodeJS.ProcessEnv = { ...process.env, VEIL_HOME: home, VEIL_CLUSTER: CLUSTER };

const veil = veilCli(env, 90_000);
interface VerifyJson { ok: boolean; mode: string; pairs: { from: string; to: string; icmp: boolean; tcp: boolean; udp: boolean; leaked: number; outer: string[]; ok: boolean }[]; unexpected: unknown[]; durationMs: number }

function verify(expectPass: boolean): VerifyJson {
  const t0 = Date.now();
  const r = veil('verify', '--timeout', '10s', '-o', 'json'); // killed after veilCli's 90 s: the deadline
  console.log(`# verify took ${Date.now() - t0} ms`); // a figure, not an assertion: timing belongs in the bench
  assert.equal(r.status, expectPass ? 0 : 1, r.status === null ? 'verify did not finish within 90 s' : `verify exit ${r.status}: ${r.stderr}\n${r.stdout.slice(0, 3000)}`);
  const rep = JSON.parse(r.stdout) as VerifyJson;
  assert.equal(rep.pairs.length, 12, 'every ordered pair of 4 nodes');
  const pods = JSON.parse(ok(veil('lab', 'get', 'pods', '-o', 'json'))).items.map((p: { metadata: { name: string } }) => p.metadata.name);
  assert.deepEqual(pods.filter((n: string) => n.startsWith('veil-verify-')), [], 'verify removed its pods');
  return rep;
}

function plaintextFailure(rep: VerifyJson): void {
  assert.equal(rep.ok, false);
  assert.equal(rep.mode, 'Disabled');
  for (const p of rep.pairs) {
    assert.ok(p.icmp && p.tcp && p.udp, `${p.from}->${p.to} delivered in plaintext`);
    assert.ok(p.leaked > 0, `${p.from}->${p.to}: the marker is seen on the underlay`);
    assert.deepEqual(p.outer, ['plaintext']);
  }
}

before(() => {
  ok(veil('lab', 'up', '--name', CLUSTER, '--nodes', '4'));
});
after(() => {
  veil('lab', 'down', '--name', CLUSTER);
  rmSync(home, { recursive: true, force: true });
});

test('e2e operator: verify fails on a plaintext lab (the check can fail)', () => {
  plaintextFailure(verify(false));
  const st = veil('status');
  assert.equal(st.status, 3, 'not installed');
  assert.match(st.stdout, /^Veil:\s+not installed$/m);
  assert.match(ok(veil('encryption', 'status')), /^Encryption: Disabled \(4\/4 nodes\)$/m);
});

test('e2e operator: WireGuard: status 4/4, encryption status, verify passes', () => {
  ok(veil('install', '--encryption', 'wireguard'));
  const text = ok(veil('status', '--wait', '--wait-duration', '30s'));
  assert.match(text, /^Veil:\s+OK$/m);
  assert.match(text, /^Agents:\s+Desired: 4, Ready: 4\/4, Available: 4\/4$/m);
  assert.match(text, /^Encryption:\s+Wireguard \(4\/4 nodes\)$/m);
  assert.match(text, /^Version:\s+veil \d+\.\d+\.\d+/m);
  const js = JSON.parse(ok(veil('status', '-o', 'json')));
  assert.equal(js.ok, true);
  assert.deepEqual(js.agents, { desired: 4, running: 4, ready: 4, available: 4 });
  assert.equal(ok(veil('encryption', 'status')), 'Encryption: Wireguard (4/4 nodes)\n\n');
  assert.deepEqual(JSON.parse(ok(veil('encryption', 'status', '-o', 'json'))), { 'total-node-count': 4, 'enc-wireguard-node-count': 4 });

  const rep = verify(true);
  assert.equal(rep.ok, true);
  for (const p of rep.pairs) assert.deepEqual([p.icmp, p.tcp, p.udp, p.leaked, p.outer], [true, true, true, 0, ['WireGuard']], `${p.from}->${p.to}`);
  assert.deepEqual(rep.unexpected, []);
});

test('e2e operator: metrics over HTTP move with traffic', () => {
  ok(veil('lab', 'pod', 'create', 'pa', '--node', W1));
  ok(veil('lab', 'pod', 'create', 'pb', '--node', W2));
  ok(veil('lab', 'exec', 'pa', '--', 'ping', '-c', '1', '-W', '3', '10.244.2.2'));
  // Prometheus' view: HTTP from another node to the worker's node IP and metrics port.
  const scrape = () => {
    const script = "fetch('http://172.18.0.3:9962/metrics').then(r => r.text()).then(t => process.stdout.write(t))";
    const r = spawnSync('ip', ['netns', 'exec', `veil-${CLUSTER}_control-plane`, process.execPath, '-e', script], { encoding: 'utf8', timeout: 10_000 });
    assert.equal(r.status, 0, r.stderr);
    return parsePrometheusText(r.stdout);
  };
  const before = scrape();
  for (const name of ['veil_agent_health', 'veil_wireguard_peer_rx_bytes_total', 'veil_wireguard_peer_tx_bytes_total', 'veil_wireguard_peer_handshake_age_seconds', 'veil_datapath_drops_total', 'veil_datapath_packets_total']) {
    assert.ok(before.some((s) => s.name === name), `${name} is served`);
  }
  assert.equal(sampleValue(before, 'veil_agent_health', { state: 'Ok' }), 1);
  ok(veil('lab', 'exec', 'pa', '--', 'ping', '-c', '50', '-i', '0.01', '-s', '1000', '-q', '10.244.2.2'));
  const after = scrape();
  const tx = (s: typeof before) => sampleValue(s, 'veil_wireguard_peer_tx_bytes_total', { peer: W2 }) ?? 0;
  const pk = (s: typeof before) => sampleValue(s, 'veil_datapath_packets_total', { direction: 'tx' }) ?? 0;
  assert.ok(tx(after) - tx(before) >= 50 * 1000, `peer tx bytes grew by ${tx(after) - tx(before)}`);
  assert.ok(pk(after) - pk(before) >= 50, `tx packets grew by ${pk(after) - pk(before)}`);
  const peerPk = (s: typeof before) => sampleValue(s, 'veil_wireguard_peer_tx_packets_total', { peer: W2 }) ?? 0;
  assert.ok(peerPk(after) - peerPk(before) >= 50, `peer tx packets grew by ${peerPk(after) - peerPk(before)}`);
  assert.ok((sampleValue(after, 'veil_wireguard_keys_in_use', {}) ?? 0) >= 1, 'at least one live session keypair');
  // the CLI gives the same families, via the socket and via HTTP
  const viaCli = JSON.parse(ok(veil('metrics', W1, '--http', '-o', 'json'))) as { name: string }[];
  assert.ok(viaCli.some((s) => s.name === 'veil_wireguard_peer_rx_bytes_total'));
  assert.match(ok(veil('metrics', W1, '--raw')), /^# TYPE veil_wireguard_peer_tx_bytes_total counter$/m);
});

test('e2e operator: capture writes a pcap that tshark reads', () => {
  const file = join(home, 'underlay.pcap');
  ok(veil('capture', W1, '-c', '3', '-w', file, 'udp port 51871'));
  assert.ok(existsSync(file));
  const r = spawnSync('tshark', ['-r', file, '-T', 'fields', '-e', 'ip.src', '-e', 'wg.type'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, 3);
  for (const l of lines) assert.match(l, /^172\.18\.0\.\d+\t[1-4]$/);
  const tunnel = ok(veil('capture', W1, '--iface', 'tunnel', '-c', '1', 'udp port 4240'));
  // A probe goes from the prober's own port to 4240, its ack back: one end is 4240.
  assert.match(tunnel, /10\.244\.\d+\.1\.(4240 > 10\.244\.\d+\.1\.\d+|\d+ > 10\.244\.\d+\.1\.4240): UDP/, 'the health probes in the clear inside the tunnel');
  const bad = veil('capture', 'nope');
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /unknown node 'nope'/);
});

test('e2e operator: a stopped agent makes status fail with the reason; --wait sees it back', async () => {
  const pid = Number(ok(veil('agent', 'pid', W1)).trim());
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 100 && existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 50));
  const st = veil('status');
  assert.equal(st.status, 1, st.stdout);
  assert.match(st.stdout, /^Agents:\s+Desired: 4, Ready: 3\/4, Available: 3\/4$/m);
  assert.match(st.stdout, new RegExp(`${W1}\\s+agent not running`));
  const js = JSON.parse(veil('status', '-o', 'json').stdout);
  assert.ok(js.errors.some((e: { node: string; reason: string }) => e.node === W1 && /agent not running/.test(e.reason)));
  assert.equal(veil('encryption', 'status').status, 1, 'a node did not answer');
  const timedOut = veil('status', '--wait', '--wait-duration', '1s');
  assert.equal(timedOut.status, 1);
  assert.match(timedOut.stderr, /Timed out/);
  ok(veil('agent', 'restart', W1));
  ok(veil('status', '--wait', '--wait-duration', '30s'));
});

test('e2e operator: after uninstall verify fails again', () => {
  ok(veil('uninstall'));
  plaintextFailure(verify(false));
});

test('e2e operator: IPsec: verify passes with only ESP-in-UDP on the underlay', () => {
  const psk = spawnSync('openssl', ['rand', '-hex', '20'], { encoding: 'utf8' }).stdout.trim();
  ok(veil('secret', 'create', 'ipsec-keys', `--from-literal=keys=3+ rfc4106(gcm(aes)) ${psk} 128`));
  ok(veil('install', '--encryption', 'ipsec'));
  ok(veil('status', '--wait', '--wait-duration', '30s'));
  const enc = ok(veil('encryption', 'status'));
  assert.match(enc, /^Encryption: IPsec \(4\/4 nodes\)$/m);
  assert.match(enc, /^IPsec expected key count: 6$/m);
  const rep = verify(true);
  for (const p of rep.pairs) assert.deepEqual([p.icmp, p.tcp, p.udp, p.leaked, p.outer], [true, true, true, 0, ['ESP-in-UDP']], `${p.from}->${p.to}`);
  ok(veil('uninstall'));
});
