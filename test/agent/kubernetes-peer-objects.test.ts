// The Kubernetes agent's peers that run no agent: the Kubernetes node source with the cluster's Peer
// resources (an informer over peers.network.veil.io) through the same admission as on etcd, against
// the test API server with the real client. Without the CRD the agent runs on and says why; once
// the CRD is applied the Peers arrive; a hostile Peer that the schema lets through (its allowed
// IPs on this node's pod CIDR or address, or on a node's whose agent is away, host bits set, another
// peer's range) is refused with the reason; a deleted Peer leaves.
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
import { KubernetesPeerObjects } from '../../src/agent/kubernetes-peer-objects.js';
import { PEER_OBJECTS_CHECK, WithExternalPeers } from '../../src/agent/external-peers.js';
import { PEER_API_VERSION, peerCrd } from '../../src/control/kubernetes/peer-crd.js';
import { waitFor } from '../kube-api/wait-for.js';

let server: TestApiServer;
let dir: string;
let kc: k8s.KubeConfig;
let api: k8s.KubernetesObjectApi;

const KEY = `${'k'.repeat(42)}A=`;
const peer = (name: string, allowedIPs: string[], publicKey?: string) => ({
  apiVersion: PEER_API_VERSION, kind: 'Peer', metadata: { name }, spec: { ...(publicKey ? { publicKey } : {}), endpoint: { address: '192.0.2.10', port: 51820 }, allowedIPs },
}) as k8s.KubernetesObject;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'veil-kube-peers-agent-'));
  const certs = makeApiServerCerts(dir);
  server = new TestApiServer({ tls: certs.server, token: TEST_TOKEN, bookmarkIntervalMs: 500 });
  kc = loadKubeConfig({ kubeconfig: writeKubeconfig(join(dir, 'kubeconfig'), await server.listen({ host: '127.0.0.1', port: 0 }), certs.ca) });
  api = k8s.KubernetesObjectApi.makeApiClient(kc);
  await api.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'veil' } });
  await api.create({
    apiVersion: 'v1', kind: 'Node', metadata: { name: 'a' }, spec: { podCIDR: '10.244.0.0/24', podCIDRs: ['10.244.0.0/24'] },
    status: { addresses: [{ type: 'InternalIP', address: '172.18.0.2' }], nodeInfo: { bootID: 'a-boot' } },
  } as k8s.KubernetesObject);
  // a node whose agent is away (no Lease): no peer, but its pod CIDR is still its own
  await api.create({
    apiVersion: 'v1', kind: 'Node', metadata: { name: 'b' }, spec: { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24'] },
    status: { addresses: [{ type: 'InternalIP', address: '172.18.0.3' }], nodeInfo: { bootID: 'b-boot' } },
  } as k8s.KubernetesObject);
});

after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

test('Peer resources reach the agent through the same admission as on etcd: no CRD said and survived, hostile ones refused, deleted ones gone', { timeout: 60_000 }, async () => {
  const nodes = new KubernetesNodeSource({ kc, nodeName: 'a', namespace: 'veil', underlayFor: (address) => ({ interface: 'eth0', address, mtu: 1500 }) });
  const s = new WithExternalPeers(nodes, new KubernetesPeerObjects(kc));
  let changes = 0;
  try {
    await s.self();
    await s.watchPeers(() => { changes++; });
    // no CRD yet: the agent runs on, and its health says what to do
    await waitFor('the missing CRD reported', () => /CRD is not installed: re-run veil install --kubernetes/.test(s.refusedPeers().get(PEER_OBJECTS_CHECK) ?? ''));
    assert.match(s.refusedPeers().get(PEER_OBJECTS_CHECK)!, /cannot list the Peer objects \(peers.network.veil.io\)/);

    await api.create(peerCrd({}) as k8s.KubernetesObject);
    await waitFor('the CRD served', () => server.get('customresourcedefinitions', '', 'peers.network.veil.io')?.['status'] !== undefined);
    await api.create(peer('laptop', ['10.250.0.1/32'], KEY));
    await waitFor('laptop admitted', () => s.peers().some((p) => p.name === 'laptop'), 20_000);
    assert.equal(s.refusedPeers().get(PEER_OBJECTS_CHECK), undefined, 'the problem cleared');
    const laptop = s.peers().find((p) => p.name === 'laptop')!;
    assert.deepEqual([laptop.internalIP, laptop.podCIDRs, laptop.external, laptop.annotations['network.veil.io/wg-pub-key']],
      ['192.0.2.10', ['10.250.0.1/32'], { port: 51820, persistentKeepalive: 0 }, KEY]);
    const uid = (server.get('peers', '', 'laptop')!['metadata'] as { uid: string }).uid;
    assert.equal(laptop.bootID, uid, 'no bootID given: its uid, as veil ipsec peer-config derives it');

    // what the schema lets through but admission refuses
    await api.create(peer('on-my-pods', ['10.244.0.128/25']));
    await api.create(peer('on-my-address', ['172.18.0.0/24']));
    await api.create(peer('host-bits', ['10.250.5.1/24']));
    await api.create(peer('overlaps-laptop', ['10.250.0.0/24']));
    await api.create(peer('on-away-pods', ['10.244.1.0/25']));
    await waitFor('five refusals', () => [...s.refusedPeers().keys()].filter((k) => k !== PEER_OBJECTS_CHECK).length === 5);
    const refused = s.refusedPeers();
    assert.match(refused.get('peer on-my-pods')!, /peer object refused: its allowed IPs 10.244.0.128\/25 overlap 10.244.0.0\/24 of node 'a' \(its pod CIDR\)/);
    assert.match(refused.get('peer on-my-address')!, /contain the address 172.18.0.2 of node 'a'/);
    assert.match(refused.get('peer host-bits')!, /10.250.5.1\/24.*not a CIDR/);
    assert.match(refused.get('peer overlaps-laptop')!, /overlap 10.250.0.1\/32 of peer 'laptop'/);
    assert.match(refused.get('peer on-away-pods')!, /overlap 10.244.1.0\/24 of node 'b'/, 'a node whose agent is away keeps its pod CIDR');
    assert.deepEqual(s.peers().map((p) => p.name), ['laptop']);

    await api.delete({ apiVersion: PEER_API_VERSION, kind: 'Peer', metadata: { name: 'laptop' } });
    await waitFor('laptop gone, the peer it blocked admitted', () => s.peers().map((p) => p.name).join() === 'overlaps-laptop');
    assert.ok(changes >= 4, `onChange ran on every change (${changes})`);
  } finally {
    s.close();
  }
});
