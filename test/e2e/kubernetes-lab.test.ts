// The Kubernetes node source end to end: a 4-node lab whose Nodes live in the test API server (in
// the lab's control-plane namespace, over TLS with a token), one `veil agent run --kubernetes` per
// node with its settings and IPsec key mounted as the kubelet mounts them. IPsec converges and
// passes `veil verify`; `kubectl patch secret` rotates the key with no ping lost; WireGuard
// converges and passes verify; a restarted agent's new public key, published while every watch was
// held and then cut with 410 Gone, reaches its peers through the relist; a deleted Node leaves its
// peers; a Peer added with `veil peer add` through the API becomes a WireGuard peer of every agent,
// a hostile one written with kubectl is refused in every agent's status, and a deleted one leaves.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nodeStateDir } from '../../src/agent/state-paths.js';
import { defaultSettings, type Settings } from '../../src/agent/settings.js';
import { writeSettings } from '../../src/agent/install-state.js';
import { AGENT_STATUS_ANNOTATION, ENCRYPTION_KEY_ANNOTATION } from '../../src/control/kubernetes/kube-node.js';
import { openRegistry } from '../../src/control/cluster.js';
import type { RegistryObject } from '../../src/control/registry.js';
import { labUninstall } from '../../src/lab/agents.js';
import { labAgentEtcdEndpoints } from '../../src/lab/lifecycle.js';
import { nodeSpec, readLabMeta } from '../../src/lab/objects.js';
import { WG_PUBKEY_ANNOTATION } from '../../src/agent/wireguard-mode.js';
import { KubeLab } from '../kube-api/kube-lab.js';
import { MAIN, agentApi, ok, veilCli, sleep } from './cli.js';
import { timedWaitFor, waitFor } from '../wait-for.js';
import { pingUntilStopped } from './lab-harness.js';
import { registerPid } from '../../src/lab/pids.js';

const C = `tk8se2e-${process.pid}`; // a run cut off mid-test must not collide with the next
const W1 = `${C}-worker`, W3 = `${C}-worker3`;
const home = mkdtempSync(join(tmpdir(), 'veil-t-k8slab-'));
const env: NodeJS.ProcessEnv = { ...process.env, VEIL_HOME: home, VEIL_CLUSTER: C };
process.env['VEIL_HOME'] = home; // the pid records go where `lab down` reads them
const veil = veilCli(env, 120_000);
const psk = (n: number) => `${n}+ rfc4106(gcm(aes)) ${String(n).repeat(40).slice(0, 40)} 128`;

let lab: KubeLab;
let nodes: RegistryObject[] = [];
const pids = new Map<string, number>();
let podB = '';


function settingsFor(mode: 'ipsec' | 'wireguard'): Settings {
  return { ...defaultSettings(), 'encryption.enabled': true, 'encryption.type': mode };
}

/** Every agent published ready on its Node, with `key` (if given) as its key annotation. */
function allReady(check: (annotations: Record<string, string>) => boolean = () => true): boolean {
  return nodes.every((n) => {
    const a = lab.node(n.metadata.name)?.metadata.annotations ?? {};
    const st = a[AGENT_STATUS_ANNOTATION] ? JSON.parse(a[AGENT_STATUS_ANNOTATION]) as { ready?: boolean; health?: { state?: string } } : undefined;
    return st?.ready === true && check(a);
  });
}

type WgEncryptStatus = { wireguard?: { interfaces?: { peers?: { node?: string; 'public-key'?: string }[] }[] } };
const peerKeys = (st: WgEncryptStatus) => new Map((st.wireguard?.interfaces?.[0]?.peers ?? []).map((p) => [p.node ?? '?', p['public-key'] ?? '']));
/** A node's WireGuard peers (name -> public key), as `veil agent encrypt status` prints them. */
function wgPeerKeys(node: string): Map<string, string> {
  return peerKeys(JSON.parse(ok(veil('agent', 'encrypt', 'status', node, '-o', 'json'))) as WgEncryptStatus);
}
/** The same, asked of the agent's API from this process: for polls, which then start no CLI. */
async function askWgPeerKeys(node: string): Promise<Map<string, string>> {
  return peerKeys(await (await agentApi(C, node)).encryptStatus() as WgEncryptStatus);
}
/** Whether every one of `nodes` passes `check` on its WireGuard peers (asked in-process, all at once). */
async function everyPeerList(nodes: string[], check: (peers: Map<string, string>) => boolean): Promise<boolean> {
  return (await Promise.all(nodes.map(askWgPeerKeys))).every(check);
}

function verifyPasses(mode: string): void {
  const r = veil('verify', '--timeout', '15s', '-o', 'json');
  const rep = JSON.parse(r.stdout || '{}') as { ok: boolean; mode: string; pairs: { ok: boolean }[] };
  const { pairs, ...rest } = rep;
  assert.equal(r.status, 0, `verify (${mode}) exit ${r.status}: ${r.stderr}\n${JSON.stringify({ ...rest, failedPairs: pairs?.filter((p) => !p.ok) }).slice(0, 4000)}`);
  assert.equal(rep.ok, true);
  assert.equal(rep.mode, mode);
  assert.equal(rep.pairs.length, 12);
}

function backgroundPing(from: string, to: string, count: number): Promise<string> {
  const p = spawn(process.execPath, [MAIN, 'lab', 'exec', from, '--', 'ping', '-i', '0.05', '-c', String(count), '-W', '1', to], { env });
  let out = '';
  p.stdout!.on('data', (d) => { out += d; });
  return new Promise((res) => p.on('close', () => res(out)));
}
const lossOf = (summary: string) => Number(/(\d+(?:\.\d+)?)% packet loss/.exec(summary)?.[1] ?? 'NaN');

async function startAgents(mode: 'ipsec' | 'wireguard'): Promise<void> {
  const reg = openRegistry(C);
  try { await writeSettings(reg, settingsFor(mode)); } finally { reg.close(); } // what verify reads: the lab's record of the mode
  for (const n of nodes) pids.set(n.metadata.name, lab.startAgent(n));
}

async function stopAgents(): Promise<void> {
  const reg = openRegistry(C);
  try { await labUninstall(C, reg); } finally { reg.close(); } // stops the recorded agents, gives the lab its plaintext routes back
  pids.clear();
}

before(async () => {
  ok(veil('lab', 'up', '--name', C, '--nodes', '4'));
  const reg = openRegistry(C);
  try { nodes = await reg.list('Node'); } finally { reg.close(); }
  const meta = readLabMeta(C)!;
  lab = new KubeLab(C, home, nodes, new URL(labAgentEtcdEndpoints(meta)[0]!).hostname);
  await lab.startApiServer();
  lab.registerCluster(psk(3), settingsFor('ipsec'));
  await lab.startVolumes();
  ok(veil('lab', 'pod', 'create', 'pa', '--node', W1));
  podB = /with IP (\S+)/.exec(ok(veil('lab', 'pod', 'create', 'pb', '--node', W3)))![1]!;
});

after(async () => {
  const log = lab?.apiServerLog().trim();
  if (log) console.log(`# test API server log:\n${log.split('\n').map((l) => `#   ${l}`).join('\n')}`);
  await lab?.stopApiServer();
  veil('lab', 'down', '--name', C);
  lab?.cleanup();
  rmSync(home, { recursive: true, force: true });
});

test('e2e kubernetes: IPsec from Nodes in the API converges, passes verify, and rotates by kubectl patch secret with no ping lost', { timeout: 240_000 }, async () => {
  await startAgents('ipsec');
  const ms = await timedWaitFor('every agent ready with key 3', () => allReady((a) => a[ENCRYPTION_KEY_ANNOTATION] === '3'), 60_000);
  console.log(`# IPsec: 4 agents ready through the API in ${ms} ms`);
  const leases = JSON.parse(lab.kubectlOk(['-n', 'veil', 'get', 'leases.coordination.k8s.io', '-o', 'json'])) as { items: { metadata: { name: string } }[] };
  assert.deepEqual(leases.items.map((l) => l.metadata.name).sort(), nodes.map((n) => n.metadata.name).sort(), 'one liveness Lease per node');
  // every agent published with its own pod's identity through veil's admission policy, which refuses it any other Node
  const forged = lab.kubectl(['annotate', 'node', W3, '--overwrite', `${ENCRYPTION_KEY_ANNOTATION}=9`], undefined, W1);
  assert.notEqual(forged.status, 0, 'W1\'s agent credentials annotate W3\'s Node');
  assert.match(forged.stderr, new RegExp(`ValidatingAdmissionPolicy 'veil-agent-writes-own-node' .*the veil agent on Node ${W1} may not write Node ${W3}`));
  verifyPasses('IPsec');

  // The operator's commands read the cluster through the API (run where the API server is reachable).
  ok(veil('cluster', 'add', 'k8s', '--kubernetes', '--kubeconfig', lab.kubeconfig));
  const kenv = { ...env, VEIL_CLUSTER: 'k8s' };
  const status = JSON.parse(ok(lab.veil(['status', '-o', 'json'], kenv))) as { agents?: unknown; nodes?: { name: string; ready?: boolean }[] };
  assert.ok(JSON.stringify(status).includes(W3), `veil status lists the nodes: ${JSON.stringify(status).slice(0, 500)}`);
  const text = ok(lab.veil(['status'], kenv));
  assert.match(text, /IPsec/);
  assert.match(ok(lab.veil(['encryption', 'status'], kenv)), /IPsec/);
  assert.match(ok(lab.veil(['agent', 'status', W1], kenv)), /Encryption:\s+IPsec/);
  assert.match(ok(lab.veil(['config', 'view'], kenv)), /enable-ipsec\s+true/);
  console.log(`# veil status through the Kubernetes API:\n${text.split('\n').map((l) => `#   ${l}`).join('\n')}`);

  // 20 pings/s from before the patch until IN_FLIGHT + 10 replies after every agent is on key 4
  const IN_FLIGHT = 20; // a second of requests at the end, whose replies ping does not wait for
  const ping = pingUntilStopped(`veil-${C}_pod_pa`, podB, 0.05, IN_FLIGHT);
  registerPid(C, 'e2e-rotation-ping', ping.pid);
  await sleep(3000);
  lab.kubectlOk(['-n', 'veil', 'patch', 'secret', 'ipsec-keys', '-p', JSON.stringify({ stringData: { keys: psk(4) } })]);
  const rot = await timedWaitFor('every agent on key 4', () => allReady((a) => a[ENCRYPTION_KEY_ANNOTATION] === '4'), 30_000);
  console.log(`# IPsec: rotated to key 4 on every node ${rot} ms after kubectl patch secret`);
  const rotated = ping.lastReplied();
  await waitFor('pings past the rotation', () => ping.lastReplied() >= rotated + IN_FLIGHT + 10, 30_000);
  const run = await ping.stop();
  const summary = run.out.trim().split('\n').slice(-2).join(' ');
  assert.ok(run.judged > rotated, `every request until every agent was on key 4 is judged: ${run.judged} of ${run.sent}, key 4 everywhere at icmp_seq ${rotated}`);
  assert.deepEqual(run.missing, [], `no ping lost across the rotation: ${summary}`);
});

test('e2e kubernetes: WireGuard converges and passes verify; a key published while watches were held and cut with 410 arrives by relist; a deleted Node leaves its peers', { timeout: 240_000 }, async () => {
  await stopAgents();
  lab.setSettings(settingsFor('wireguard'));
  await waitFor('the settings volume', async () => {
    const { readFileSync } = await import('node:fs');
    try { return JSON.parse(readFileSync(join(lab.dir, 'pods', W1, 'install', 'settings.json'), 'utf8'))['encryption.type'] === 'wireguard'; } catch { return false; }
  });
  await startAgents('wireguard');
  await waitFor('every agent ready with a public key', () => allReady((a) => !!a[WG_PUBKEY_ANNOTATION]), 60_000);
  await waitFor('3 WireGuard peers on every node', () => everyPeerList(nodes.map((n) => n.metadata.name), (peers) => peers.size === 3), 60_000);
  verifyPasses('Wireguard');

  // Every open Node watch stops delivering (Lease watches go on: peers stay alive); worker3's agent
  // restarts with a new key pair meanwhile.
  const oldKey = lab.node(W3)!.metadata.annotations![WG_PUBKEY_ANNOTATION]!;
  const held = await lab.control('hold-watches?resource=nodes') as { held: number };
  assert.ok(held.held >= 4, `every agent's node watch is open (${JSON.stringify(held)})`);
  await lab.stopAgent(W3, pids.get(W3)!);
  rmSync(join(nodeStateDir(C, W3), 'veil_wg0.key'));
  pids.set(W3, lab.startAgent(nodes.find((n) => n.metadata.name === W3)!));
  await waitFor('worker3 publishing a new key', () => { const k = lab.node(W3)?.metadata.annotations?.[WG_PUBKEY_ANNOTATION]; return !!k && k !== oldKey; }, 30_000);
  const newKey = lab.node(W3)!.metadata.annotations![WG_PUBKEY_ANNOTATION]!;
  await sleep(1000);
  assert.equal(wgPeerKeys(W1).get(W3), oldKey, 'worker did not hear of the new key: its watch is held');
  // The API server cuts every watch with 410 Gone (its history compacted): the informers relist.
  await lab.control('expire-watches');
  const relist = await timedWaitFor('worker configured with the new key', async () => (await askWgPeerKeys(W1)).get(W3) === newKey, 20_000);
  console.log(`# WireGuard: the new key reached worker by relist ${relist} ms after the 410`);
  const ping = await backgroundPing('pa', podB, 20);
  assert.equal(lossOf(ping), 0, `pods talk over the new key: ${ping}`);

  ok(veil('lab', 'pod', 'delete', 'pb'));
  lab.kubectlOk(['delete', 'node', W3]);
  await waitFor('worker3 gone from every peer list', () => everyPeerList(nodes.map((n) => n.metadata.name).filter((n) => n !== W3), (peers) => !peers.has(W3)), 20_000);
});

test('e2e kubernetes: a Peer added through the API is configured on every agent; a hostile one is refused in their status; deleted, it leaves', { timeout: 120_000 }, async () => {
  const live = nodes.filter((n) => n.metadata.name !== W3).map((n) => n.metadata.name); // worker3's Node was deleted above
  const kenv = { ...env, VEIL_CLUSTER: 'k8s' };
  const key = `${'p'.repeat(42)}A=`;
  ok(lab.veil(['peer', 'add', 'laptop', '--public-key', key, '--endpoint', '192.0.2.10:51820', '--allowed-ips', '10.250.0.1/32'], kenv));
  const ms = await timedWaitFor('laptop on every agent', () => everyPeerList(live, (peers) => peers.get('laptop') === key), 30_000);
  console.log(`# Peer: configured on ${live.length} agents ${ms} ms after veil peer add`);
  // written past the CLI's checks (kubectl): its allowed IPs are worker's pods; every agent refuses it
  const podCidr = nodeSpec(nodes.find((n) => n.metadata.name === W1)!).podCIDR;
  lab.kubectlOk(['create', '--validate=false', '-f', '-'], JSON.stringify({ apiVersion: 'network.veil.io/v1alpha1', kind: 'Peer', metadata: { name: 'evil' }, spec: { endpoint: { address: '192.0.2.66', port: 51820 }, allowedIPs: [podCidr] } }));
  const cidr = podCidr.replace(/[./]/g, '\\$&');
  const why = `peer object refused: its allowed IPs ${cidr} overlap ${cidr} of node '${W1}'`;
  // polled in the agents' health from this process; then what `veil agent status` prints of it, once each
  await waitFor('evil refused in the health of every agent', async () => (await Promise.all(live.map(async (n) => (await (await agentApi(C, n)).healthz()).health.checks.find((c) => c.name === 'peer evil'))))
    .every((c) => c?.state === 'Degraded' && new RegExp(why).test(c.message)), 30_000);
  for (const n of live) assert.match(lab.veil(['agent', 'status', n], kenv).stdout, new RegExp(`peer evil: Degraded \\(${why}`), `${n}'s status names evil refused`);
  assert.ok(live.every((n) => !wgPeerKeys(n).has('evil')), 'configured nowhere');
  lab.kubectlOk(['delete', 'peer', 'evil']);
  ok(lab.veil(['peer', 'delete', 'laptop'], kenv));
  await waitFor('laptop gone from every agent', () => everyPeerList(live, (peers) => !peers.has('laptop')), 30_000);
});
