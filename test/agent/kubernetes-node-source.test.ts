// The Kubernetes node source against the test API server (loopback, TLS, token): its own Node's
// fields or a clear refusal, peers only while their Lease is renewed, a forged Node refused by the
// admission rules, annotations written once and written again when someone strips them, a deleted
// Node gone from the peers.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { TestApiServer } from '../kube-api/test-api-server.js';
import { makeApiServerCerts, TEST_TOKEN, writeKubeconfig } from '../kube-api/kubectl.js';
import { loadKubeConfig } from '../../src/control/kubernetes/kube-connection.js';
import { KubernetesNodeSource } from '../../src/agent/kubernetes-node-source.js';
import { AGENT_STATUS_ANNOTATION, ENCRYPTION_KEY_ANNOTATION } from '../../src/control/kubernetes/kube-node.js';
import { LEASE_GRACE_MS } from '../../src/agent/registry-node-source.js';
import type { OwnFields } from '../../src/agent/node-source.js';
import { VeilError } from '../../src/util/errors.js';
import { waitFor } from '../kube-api/wait-for.js';

let server: TestApiServer;
let dir: string;
let kc: k8s.KubeConfig;
let api: k8s.KubernetesObjectApi;

const node = (name: string, ip: string | undefined, cidr: string | undefined, bootID = `${name}-boot`) => ({
  apiVersion: 'v1', kind: 'Node', metadata: { name },
  spec: cidr ? { podCIDR: cidr, podCIDRs: [cidr] } : {},
  status: { addresses: ip ? [{ type: 'InternalIP', address: ip }] : [], nodeInfo: { bootID } },
});

async function holdFor(name: string, durationSeconds: number): Promise<ReturnType<typeof setInterval>> {
  const coord = kc.makeApiClient(k8s.CoordinationV1Api);
  const renew = async () => {
    const body = { metadata: { name, namespace: 'veil' }, spec: { holderIdentity: `${name}/1`, leaseDurationSeconds: durationSeconds, renewTime: new k8s.V1MicroTime() } };
    try {
      const cur = await coord.readNamespacedLease({ name, namespace: 'veil' });
      await coord.replaceNamespacedLease({ name, namespace: 'veil', body: { ...cur, spec: body.spec } });
    } catch {
      await coord.createNamespacedLease({ namespace: 'veil', body });
    }
  };
  await renew();
  return setInterval(() => { void renew().catch(() => undefined); }, 300);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'veil-kube-source-'));
  const certs = makeApiServerCerts(dir);
  server = new TestApiServer({ tls: certs.server, token: TEST_TOKEN, bookmarkIntervalMs: 500 });
  kc = loadKubeConfig({ kubeconfig: writeKubeconfig(join(dir, 'kubeconfig'), await server.listen({ host: '127.0.0.1', port: 0 }), certs.ca) });
  api = k8s.KubernetesObjectApi.makeApiClient(kc);
  await api.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'veil' } });
  for (const n of [node('a', '172.18.0.2', '10.244.0.0/24'), node('b', '172.18.0.3', '10.244.1.0/24'), node('c', '172.18.0.4', '10.244.2.0/24'),
    node('forger', '172.18.0.9', '10.244.1.0/25'), node('no-cidr', '172.18.0.5', undefined), node('no-ip', undefined, '10.244.5.0/24')]) {
    await api.create(n as k8s.KubernetesObject);
  }
});

after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

const source = (name: string) => new KubernetesNodeSource({ kc, nodeName: name, namespace: 'veil', underlayFor: (address) => ({ interface: 'eth0', address, mtu: 1500 }) });

test('self: the Node\'s InternalIP, pod CIDRs and boot id; a Node without them, or none, is refused saying what to fix', async () => {
  const me = await source('a').self();
  assert.deepEqual(me, { name: 'a', internalIPs: ['172.18.0.2'], podCIDRs: ['10.244.0.0/24'], podGateway: '10.244.0.1', underlayInterface: 'eth0', underlayMtu: 1500, bootID: 'a-boot' });
  const refusal = async (name: string) => { try { await source(name).self(); } catch (e) { return e as VeilError; } assert.fail(`${name} accepted`); };
  assert.match((await refusal('no-cidr')).describe(), /no spec.podCIDRs.*allocate-node-cidrs/);
  assert.match((await refusal('no-ip')).describe(), /no InternalIP/);
  const unknown = await refusal('zz');
  assert.equal(unknown.code, 'UNKNOWN_NODE');
});

test('peers: only Nodes whose agent renews its Lease, a forged pod CIDR refused (also while its holder is away), a lapsed Lease and a deleted Node leave', async () => {
  const s = source('a');
  let changes = 0;
  const renewers = [await holdFor('b', 1), await holdFor('forger', 1)];
  const cLease = await holdFor('c', 1);
  try {
    await s.watchPeers(() => { changes++; });
    await waitFor('b and c as peers', () => s.peers().map((p) => p.name).join() === 'b,c');
    const b = s.peers()[0]!;
    assert.deepEqual([b.internalIP, b.podCIDRs, b.podGateway, b.bootID], ['172.18.0.3', ['10.244.1.0/24'], '10.244.1.1', 'b-boot']);
    assert.match(s.refusedPeers().get('peer forger') ?? '', /overlaps 10.244.1.0\/24 of node 'b'/);
    assert.ok(!s.peers().some((p) => p.name === 'no-cidr'), 'no Lease: not a peer');
    // c's and b's agents stop renewing: they leave after the Lease's duration and the grace.
    clearInterval(cLease);
    clearInterval(renewers[0]);
    const t0 = Date.now();
    await waitFor('c and b to lapse', () => s.peers().length === 0, 1000 + LEASE_GRACE_MS + 5000);
    assert.ok(Date.now() - t0 >= LEASE_GRACE_MS - 1000, 'not before its grace');
    // b's claim holds while it is away: the forger does not take its pods
    assert.match(s.refusedPeers().get('peer forger') ?? '', /overlaps 10.244.1.0\/24 of node 'b'/);
    renewers[0] = await holdFor('b', 1);
    await waitFor('b back', () => s.peers().map((p) => p.name).join() === 'b');
    // a deleted Node's claim goes with it
    await api.delete({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'b' } });
    await waitFor('b deleted, its pod CIDR free for the forger', () => s.peers().map((p) => p.name).join() === 'forger');
    assert.ok(changes >= 3);
  } finally {
    for (const r of renewers) clearInterval(r);
    clearInterval(cLease);
    s.close();
  }
});

test('publish: the annotations once, unchanged fields not rewritten, rewritten when someone strips them', async () => {
  const s = source('a');
  try {
    await s.watchPeers(() => undefined);
    const fields: OwnFields = { agent: { ready: true, pid: 1, bootID: 'a-boot', startedAt: 'now', health: { state: 'Ok', problems: [] } }, encryptionKey: 3, annotations: { 'network.veil.io/wg-pub-key': 'k=' } };
    await s.publish(fields);
    const annotations = () => ((server.get('nodes', '', 'a')!['metadata'] as { annotations?: Record<string, string> }).annotations ?? {});
    assert.equal(annotations()[ENCRYPTION_KEY_ANNOTATION], '3');
    assert.equal(JSON.parse(annotations()[AGENT_STATUS_ANNOTATION]!).ready, true);
    const rv = (server.get('nodes', '', 'a')!['metadata'] as { resourceVersion: string }).resourceVersion;
    await s.publish({ ...fields });
    assert.equal((server.get('nodes', '', 'a')!['metadata'] as { resourceVersion: string }).resourceVersion, rv, 'no write for unchanged fields');
    // someone strips them (kubectl annotate node a network.veil.io/wg-pub-key-)
    await api.patch({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'a', annotations: { 'network.veil.io/wg-pub-key': null } as unknown as Record<string, string> } },
      undefined, undefined, 'someone', undefined, k8s.PatchStrategy.MergePatch);
    await waitFor('the annotation back', () => annotations()['network.veil.io/wg-pub-key'] === 'k=');
    await s.publish({ ...fields, encryptionKey: undefined });
    assert.equal(annotations()[ENCRYPTION_KEY_ANNOTATION], undefined, 'an undefined key id removes its annotation');
  } finally {
    s.close();
  }
});
