// The test API server serves CustomResourceDefinitions as kube-apiserver does, checked with the real
// kubectl and the official JavaScript client against veil's own Peer CRD: registration (not served
// until Established; discovery, short names, categories), the structural schema enforced on every
// write (422 with the field's message, unknown fields pruned or refused under Strict, defaults),
// 404/409, no strategic merge patch for custom objects, list + watch from a resourceVersion, and
// deleting the CRD deletes its objects and ends their watches. A schema that is not structural, or
// uses a keyword the stand-in does not implement, is refused rather than half-checked.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { stringify as toYaml } from 'yaml';
import { TestApiServer } from '../kube-api/test-api-server.js';
import { kubectlAsync, makeApiServerCerts, TEST_TOKEN, writeKubeconfig } from '../kube-api/kubectl.js';
import { loadKubeConfig } from '../../src/control/kubernetes/kube-connection.js';
import { Informer } from '../../src/control/kubernetes/informer.js';
import { PEER_API_VERSION, PEER_CRD_NAME, PEER_PATH, peerCrd } from '../../src/control/kubernetes/peer-crd.js';
import { apiErrorMessage, apiStatusCode } from '../../src/control/kubernetes/kube-errors.js';
import { waitFor } from '../kube-api/wait-for.js';

let server: TestApiServer;
let dir: string;
let kubeconfig: string;
let api: k8s.KubernetesObjectApi;

const kubectl = (...args: string[]) => kubectlAsync(kubeconfig, args);

async function ok(...args: string[]): Promise<string> {
  const r = await kubectl(...args);
  assert.equal(r.status, 0, `kubectl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

function file(doc: unknown, json = false): string {
  const f = join(dir, `${Math.random().toString(36).slice(2)}.${json ? 'json' : 'yaml'}`);
  writeFileSync(f, json ? JSON.stringify(doc) : toYaml(doc));
  return f;
}

const KEY = 'hE1gZp3Vq0l7wv3ZcQF6m2nX4J0s8bYyq6kS5d9uT0A=';
const peer = (name: string, spec: Record<string, unknown>) => ({ apiVersion: PEER_API_VERSION, kind: 'Peer', metadata: { name }, spec });

async function failure(p: Promise<unknown>): Promise<{ code?: number; message: string }> {
  try { await p; } catch (e) { return { code: apiStatusCode(e), message: apiErrorMessage(e) }; }
  return assert.fail('the call succeeded');
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'veil-kube-crd-'));
  const certs = makeApiServerCerts(dir);
  server = new TestApiServer({ tls: certs.server, token: TEST_TOKEN, bookmarkIntervalMs: 300 });
  kubeconfig = writeKubeconfig(join(dir, 'kubeconfig'), await server.listen({ host: '127.0.0.1', port: 0 }), certs.ca);
  api = k8s.KubernetesObjectApi.makeApiClient(loadKubeConfig({ kubeconfig }));
});

after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

test('a CRD: refused when not structural; served once Established, with discovery, short names and categories', { timeout: 60_000 }, async () => {
  // not served before its CRD: the client's discovery says so
  const before = await failure(api.list(PEER_API_VERSION, 'Peer'));
  assert.equal(before.code, 404);

  const untyped = peerCrd({}) as any;
  untyped.spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.endpoint.properties.port = { minimum: 1 };
  const r1 = await kubectl('create', '--validate=false', '-f', file(untyped));
  assert.notEqual(r1.status, 0);
  assert.match(r1.stderr, /properties\[spec\]\.properties\[endpoint\]\.properties\[port\]\.type: Required value: must not be empty/);
  const cel = peerCrd({}) as any;
  cel.spec.versions[0].schema.openAPIV3Schema.properties.spec['x-kubernetes-validations'] = [{ rule: 'true' }];
  assert.match((await kubectl('create', '--validate=false', '-f', file(cel))).stderr, /x-kubernetes-validations: Forbidden: the test API server does not implement/);
  const misnamed = peerCrd({}) as any;
  misnamed.metadata.name = 'peer.network.veil.io';
  assert.match((await kubectl('create', '--validate=false', '-f', file(misnamed))).stderr, /must be spec.names.plural\+"."\+spec.group/);

  await ok('apply', '--server-side', '--field-manager', 'veil', '--validate=false', '-f', file(peerCrd({ 'app.kubernetes.io/part-of': 'veil' })));
  await ok('wait', '--for', 'condition=established', '--timeout', '20s', `crd/${PEER_CRD_NAME}`);
  const crd = JSON.parse(await ok('get', 'crd', PEER_CRD_NAME, '-o', 'json'));
  assert.deepEqual(crd.status.storedVersions, ['v1alpha1']);
  assert.equal(crd.status.acceptedNames.kind, 'Peer');
  const resources = await ok('api-resources', '--api-group', 'network.veil.io');
  assert.match(resources, /peers\s+network\.veil\.io\/v1alpha1\s+false\s+Peer/);
  assert.match((await kubectl('get', 'peers')).stderr, /No resources found/);
  assert.match((await kubectl('get', 'veil')).stderr, /No resources found/, 'the category');
});

test('custom objects: validated with kube-apiserver\'s messages, pruned, defaulted; 404, 409, no strategic merge patch', { timeout: 60_000 }, async () => {
  const bad = await kubectl('create', '--validate=false', '-f', file(peer('bad', { publicKey: 'short=', endpoint: { address: '192.0.2.1', port: 70000 }, persistentKeepalive: -1 })));
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /The Peer "bad" is invalid: \n\* /, "kubectl lists the causes");
  assert.match(bad.stderr, /spec.publicKey: Invalid value: "short=": spec.publicKey in body should match/);
  assert.match(bad.stderr, /spec.endpoint.port: Invalid value: 70000: spec.endpoint.port in body should be less than or equal to 65535/);
  assert.match(bad.stderr, /spec.persistentKeepalive: Invalid value: -1: spec.persistentKeepalive in body should be greater than or equal to 0/);
  assert.match(bad.stderr, /spec.allowedIPs: Required value/);
  // the same through the client: the status says which field
  const viaClient = await failure(api.create(peer('bad', { endpoint: { address: '192.0.2.1', port: '51820' }, allowedIPs: ['10.250.0.1/33'] })));
  assert.equal(viaClient.code, 422);
  assert.match(viaClient.message, /spec.endpoint.port: Invalid value: "string": spec.endpoint.port in body must be of type integer/);
  assert.match(viaClient.message, /spec.allowedIPs\[0\]: Invalid value: "10.250.0.1\/33": spec.allowedIPs\[0\] in body must be of type cidr/);
  assert.equal(server.get('peers', '', 'bad'), undefined, 'nothing stored');

  // unknown fields: refused under Strict, pruned (with a warning) otherwise; defaults filled in
  const strict = await kubectl('create', '--raw', `${PEER_PATH}?fieldValidation=Strict`, '-f', file(peer('vm1', { endpoint: { address: '192.0.2.1', port: 51820 }, allowedIPs: ['10.250.0.0/24'], colour: 'red' }), true));
  assert.notEqual(strict.status, 0);
  assert.match(strict.stderr, /strict decoding error: unknown field "spec.colour"/);
  const warned = await kubectl('create', '--raw', `${PEER_PATH}?fieldValidation=Warn`, '-f', file(peer('vm0', { endpoint: { address: '192.0.2.1', port: 51820 }, allowedIPs: ['10.250.2.0/24'], colour: 'red' }), true));
  assert.equal(warned.status, 0, warned.stderr);
  assert.match(warned.stderr, /Warning: unknown field "spec.colour"/);
  await ok('delete', 'peer', 'vm0');
  const created = await api.create(peer('vm1', { endpoint: { address: '192.0.2.1', port: 51820 }, allowedIPs: ['10.250.0.0/24'], publicKey: KEY, colour: 'red' }) as k8s.KubernetesObject) as any;
  assert.equal(created.spec.colour, undefined, 'pruned');
  assert.equal(created.spec.persistentKeepalive, 0, 'defaulted');
  assert.equal(created.metadata.generation, 1);
  assert.match(created.metadata.uid, /^[0-9a-f-]{36}$/);

  const dup = await failure(api.create(peer('vm1', { endpoint: { address: '192.0.2.1', port: 51820 }, allowedIPs: ['10.250.0.0/24'] }) as k8s.KubernetesObject));
  assert.equal(dup.code, 409);
  assert.match(dup.message, /peers.network.veil.io "vm1" already exists|peers "vm1" already exists/);
  assert.equal((await failure(api.read({ apiVersion: PEER_API_VERSION, kind: 'Peer', metadata: { name: 'nope' } }))).code, 404);
  const stale = { ...created, metadata: { ...created.metadata, resourceVersion: '1' }, spec: { ...created.spec, persistentKeepalive: 25 } };
  assert.equal((await failure(api.replace(stale))).code, 409, 'a stale resourceVersion is a conflict');

  const smp = await kubectl('patch', 'peer', 'vm1', '--type', 'strategic', '-p', '{"spec":{"persistentKeepalive":25}}');
  assert.notEqual(smp.status, 0);
  assert.match(smp.stderr, /UnsupportedMediaType|unknown format|not supported/);
  await ok('patch', 'peer', 'vm1', '--type', 'merge', '-p', '{"spec":{"persistentKeepalive":25}}');
  const badPatch = await kubectl('patch', 'peer', 'vm1', '--type', 'merge', '-p', '{"spec":{"ipsecKeyId":16}}');
  assert.match(badPatch.stderr, /spec.ipsecKeyId: Invalid value: 16: spec.ipsecKeyId in body should be less than or equal to 15/);
  const got = JSON.parse(await ok('get', 'peer', 'vm1', '-o', 'json'));
  assert.equal(got.spec.persistentKeepalive, 25);
  assert.equal(got.metadata.generation, 2, 'a spec change moves the generation');
});

test('list + watch from a resourceVersion (the informer), and deleting the CRD deletes its objects and ends the watch', { timeout: 60_000 }, async () => {
  const kc = loadKubeConfig({ kubeconfig });
  const seen = new Map<string, unknown>();
  let listFailed = '';
  const inf = new Informer(kc, { apiVersion: PEER_API_VERSION, kind: 'Peer', path: PEER_PATH }, {
    upsert: (o) => seen.set(o.metadata!.name!, (o as any).spec), remove: (o) => seen.delete(o.metadata!.name!), listFailed: (m) => { listFailed = m; },
  });
  try {
    await inf.start();
    assert.deepEqual([...seen.keys()], ['vm1']);
    const from = inf.lastResourceVersion;
    await ok('create', '--validate=false', '-f', file(peer('vm2', { endpoint: { address: '192.0.2.2', port: 51820 }, allowedIPs: ['10.250.1.0/24'] })));
    await waitFor('vm2 by the watch', () => seen.has('vm2'));
    assert.ok(server.requests.some((r) => r.startsWith(`GET ${PEER_PATH}?`) && r.includes('watch=true') && r.includes(`resourceVersion=${from}`)), 'watched from the list\'s resourceVersion');
    await ok('delete', 'peer', 'vm2');
    await waitFor('vm2 deleted', () => !seen.has('vm2'));

    await ok('delete', 'crd', PEER_CRD_NAME);
    await waitFor('every object gone with the CRD', () => seen.size === 0);
    await waitFor('the relist failing: no such resource', () => /could not find the requested resource/.test(listFailed), 15_000);
    assert.equal(server.openWatches('peers'), 0);
    assert.equal((await failure(api.list(PEER_API_VERSION, 'Peer'))).code, 404);
  } finally {
    inf.stop();
  }
});
