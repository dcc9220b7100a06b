// WireGuard static key rotation end to end (issue 15): on a 4-node lab under 100 pings/s on every
// node pair, `veil encryption rotate-key --wireguard --node NODE` and then the same on every node
// at once lose no ping; afterwards every peer holds the new keys and none of the old ones, no node
// still answers for its old key, and `veil status` shows the rotations.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { WireGuardEncryptStatus } from '../../src/agent/api.js';
import { registerPid } from '../../src/lab/pids.js';
import { agentApi, ok, veilCli, sleep } from './cli.js';
import { waitFor } from '../wait-for.js';
import { pingUntilStopped } from './lab-harness.js';

const C = `twgrot-${process.pid}`; // a run cut off mid-test must not collide with the next
const home = mkdtempSync(join(tmpdir(), 'veil-t-wgrot-'));
const env: NodeJS.ProcessEnv = { ...process.env, VEIL_HOME: home };
process.env['VEIL_HOME'] = home; // the agents' sockets (agentApi) and the pid records (registerPid, which lab down reads) are found there
delete env['VEIL_CLUSTER'];
const veil = veilCli(env, 60_000);
const NODES = [`${C}-control-plane`, `${C}-worker`, `${C}-worker2`, `${C}-worker3`];
const podNs = (pod: string) => `veil-${C}_pod_${pod}`;
const pods: { name: string; ip: string }[] = [];
/**
 * The pings (100/s asked with `ping -i 0.01`; 60-70/s on a busy 2-core machine) run from before the
 * first rotation until each stream has sent UNJUDGED + 10 more after the last rotation ended, then
 * stop on SIGINT. ping does not wait for the replies still in flight then: its last UNJUDGED
 * requests (its last second at least, at one per 10 ms) are not judged; every earlier one, all
 * those sent during the rotations among them, must have its reply.
 */
const UNJUDGED = 100;


const encryptStatus = (node: string) => JSON.parse(ok(veil('agent', 'encrypt', 'status', node, '-o', 'json'))) as WireGuardEncryptStatus;
const rotationOf = (node: string) => encryptStatus(node).wireguard['key-rotation'];
/** The same, asked of the agent's API from this process: for polls, which then start no CLI beside the pings. */
const askRotationOf = async (node: string) => ((await (await agentApi(C, node)).encryptStatus()) as WireGuardEncryptStatus).wireguard['key-rotation'];
/** One ping from pod a to pod b, in a's namespace (as `veil lab exec` runs it; no CLI start: it is polled). */
const pingOnce = (a: string, ip: string) => spawnSync('ip', ['netns', 'exec', podNs(a), 'ping', '-c', '1', '-W', '1', ip], { timeout: 10_000 }).status === 0;
const keyOf = (node: string) => encryptStatus(node).wireguard.interfaces[0]!['public-key'];

/** A ping stream from one pod to another (100/s) until stop(): the judged requests that got no reply, with the time around them. */
function pingStream(from: string, to: string) {
  const ping = pingUntilStopped(podNs(from), pods.find((x) => x.name === to)!.ip, 0.01, UNJUDGED);
  registerPid(C, `e2e-ping-${from}-${to}`, ping.pid);
  const done = async () => {
    const r = await ping.stop();
    const near = (seq: number) => r.replies.get(seq - 1) ?? r.replies.get(seq + 1);
    const summary = r.out.trim().split('\n').slice(-3).join(' ');
    return {
      sent: r.sent, judged: r.judged, out: `${from} -> ${to}: ${summary}`,
      missing: r.missing.map((seq) => `icmp_seq=${seq} near ${near(seq) ? new Date(near(seq)!).toISOString() : '?'}`).join(', '),
      missingAt: r.missing.map((seq) => near(seq) ?? NaN),
    };
  };
  return { running: ping.running, lastReplied: ping.lastReplied, done };
}

before(() => {
  ok(veil('lab', 'up', '--name', C, '--nodes', '4'));
  NODES.forEach((node, i) => pods.push({ name: `r${i}`, ip: /with IP (\S+)/.exec(ok(veil('lab', 'pod', 'create', `r${i}`, '--node', node)))![1]! }));
  ok(veil('install', '--encryption', 'wireguard'));
});

after(() => {
  veil('lab', 'down', '--name', C);
  rmSync(home, { recursive: true, force: true });
});

// Neither rotation may lose a ping. The all-nodes-at-once one lost a few (8 of 15,000 in one run,
// unknownReceiverIndex at the receivers) until a keypair that a crossing handshake pushes out
// lingered receive-only (src/wireguard/peer.ts, linger(); the unit test that reproduces it is in
// test/wireguard/key-rotation.test.ts): every node initiates to every peer at its switch.
test('e2e wireguard key rotation: one node, then all nodes at once, under 100 pings/s on every node pair: no ping lost; old keys gone everywhere', async () => {
  await waitFor('every pod pair to answer', () => pods.every((a) => pods.every((b) => a === b || pingOnce(a.name, b.ip))), 60_000);
  const oldKeys = Object.fromEntries(NODES.map((n) => [n, keyOf(n)]));
  const streams = pods.flatMap((a, i) => pods.slice(i + 1).map((b) => pingStream(a.name, b.name)));
  assert.equal(streams.length, 6);
  await sleep(1000);

  // One node.
  const one = NODES[1]!;
  assert.match(ok(veil('encryption', 'rotate-key', '--wireguard', '--node', one)), /WireGuard key rotation requested on 1 node/);
  const t0 = Date.now();
  await waitFor(`${one} to finish its rotation`, async () => { const r = await askRotationOf(one); return r?.retiredAt && r.phase === 'idle'; }, 40_000);
  console.log(`one node rotated in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${JSON.stringify(rotationOf(one))}`);
  const afterOne = keyOf(one);
  assert.notEqual(afterOne, oldKeys[one]);

  // Every node at once.
  await sleep(1000);
  assert.match(ok(veil('encryption', 'rotate-key', '--wireguard')), /WireGuard key rotation requested on 4 nodes/);
  const t1 = Date.now();
  await waitFor('every node to finish its rotation', async () => (await Promise.all(NODES.map(askRotationOf))).every((r) =>
    r?.phase === 'idle' && r.retiredAt && Date.parse(r.retiredAt) >= t1 - 1000), 60_000).catch((e) => {
    for (const n of NODES) console.log(`${n}: ${JSON.stringify(rotationOf(n))} ${JSON.stringify(encryptStatus(n).drops)}`);
    for (const n of NODES) console.log(veil('agent', 'logs', n).stdout.split('\n').filter((l) => /rotation|WireGuard|warn|error/i.test(l)).slice(-15).join('\n'));
    throw e;
  });
  console.log(`all nodes rotated in ${((Date.now() - t1) / 1000).toFixed(1)} s`);
  assert.ok(streams.every((s) => s.running()), 'the pings still ran when the rotations ended (the rotations happened under traffic)');
  const rotationsEnd = streams.map((s) => s.lastReplied());
  await waitFor('every stream to send past the rotations\' end by more than it leaves unjudged', () => streams.every((s, i) => s.lastReplied() >= rotationsEnd[i]! + UNJUDGED + 10), 30_000);
  const results = await Promise.all(streams.map((s) => s.done()));
  for (const r of results) console.log(r.out);
  const lost = results.filter((r) => r.missingAt.length > 0);
  if (lost.length) {
    // Where they went: the missing replies' times against each node's rotation, and every drop counter.
    for (const r of lost) console.log(`lost: ${r.out}: ${r.missing}`);
    for (const n of NODES) {
      const st = encryptStatus(n);
      const nonzero = (o: object) => Object.entries(o).filter(([, v]) => typeof v === 'number' && v > 0 && !/^(tx|rx)/.test(`${String(v)}`));
      console.log(`${n}: ${JSON.stringify(st.wireguard['key-rotation'])} drops ${JSON.stringify(nonzero(st.drops))} counters ${JSON.stringify(st.counters)}`);
    }
  }
  for (const [i, r] of results.entries()) {
    assert.ok(r.judged > rotationsEnd[i]!, `every request up to the rotations' end is judged: ${r.judged} of ${r.sent}, the rotations ended at icmp_seq ${rotationsEnd[i]}: ${r.out}`);
    const beforeAllAtOnce = r.missingAt.filter((at) => !(at >= t1 - 500)); // unknown times count against the one-node phase
    assert.equal(beforeAllAtOnce.length, 0, `no ping lost before the all-at-once rotation (the one-node rotation): ${r.out}: ${r.missing}`);
  }
  const sent = results.reduce((a, r) => a + r.judged, 0);
  const lostAll = results.reduce((a, r) => a + r.missingAt.length, 0);
  console.log(`all-nodes-at-once rotation: ${lostAll} of ${sent} pings lost`);
  assert.equal(lostAll, 0, `no ping lost in the all-nodes-at-once rotation: ${lost.map((r) => `${r.out}: ${r.missing}`).join('; ')}`);

  // Afterwards: every peer holds each node's new key, none holds an old one, nothing is retiring.
  const newKeys = Object.fromEntries(NODES.map((n) => [n, keyOf(n)]));
  for (const n of NODES) {
    assert.notEqual(newKeys[n], oldKeys[n], `${n} has a new key`);
    assert.notEqual(newKeys[n], afterOne, `${n}: the second rotation gave a new key again`);
  }
  const retired = new Set([...Object.values(oldKeys), afterOne]);
  const objects = JSON.parse(ok(veil('lab', 'get', 'nodes', '-o', 'json'))).items as { metadata: { name: string; annotations: Record<string, string> } }[];
  for (const n of NODES) {
    const st = encryptStatus(n);
    assert.equal(st.wireguard['key-rotation']?.retiringKey, null, `${n} no longer answers for its old key`);
    assert.equal(st.wireguard['key-rotation']?.confirmed, '3/3', `${n}: every peer handshook under the new key`);
    const peers = st.wireguard.interfaces[0]!.peers;
    assert.equal(peers.length, 3);
    for (const p of peers) {
      assert.equal(p['public-key'], newKeys[p.node!], `${n} holds ${p.node}'s new key`);
      assert.ok(!retired.has(p['public-key']!), `${n} holds no old key`);
    }
    const annotations = objects.find((o) => o.metadata.name === n)!.metadata.annotations;
    assert.equal(annotations['network.veil.io/wg-pub-key'], newKeys[n]);
    assert.equal(annotations['network.veil.io/wg-next-pub-key'], undefined, 'no next key announced any more');
  }
  // veil status shows the rotations.
  const status = await waitFor('veil status to show the rotations', () => {
    const out = veil('status').stdout;
    return NODES.every((n) => new RegExp(`^  ${n}\\s+Key rotated `, 'm').test(out)) && out;
  }, 30_000);
  assert.match(status, /^Key rotations:$/m);
});
