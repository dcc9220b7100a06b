// The test API server speaks the Kubernetes API as the real clients expect it: the real kubectl
// (get, patch in every patch type, apply client-side and server-side, watch) and the official
// JavaScript client (veil's informer: bookmarks, 410 and relist; its Lease) against it, on loopback.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { TestApiServer } from '../kube-api/test-api-server.js';
import { Informer } from '../../src/control/kubernetes/informer.js';
import { holdLease } from '../../src/control/kubernetes/kube-lease.js';
import { loadKubeConfig } from '../../src/control/kubernetes/kube-connection.js';
import { kubectlAsync, kubectlPath, makeApiServerCerts, TEST_TOKEN, writeKubeconfig } from '../kube-api/kubectl.js';
import { stringify as toYaml } from 'yaml';
import { waitFor } from '../kube-api/wait-for.js';

let server: TestApiServer;
let dir: string;
let kubeconfig: string;

// Asynchronous: the server runs in this very process, so a synchronous child would starve it.
const kubectl = (...args: string[]) => kubectlAsync(kubeconfig, args);

async function ok(...args: string[]): Promise<string> {
  const r = await kubectl(...args);
  assert.equal(r.status, 0, `kubectl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

function applyFile(text: string, ...flags: string[]): ReturnType<typeof kubectl> {
  const f = join(dir, `apply-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(f, text);
  return kubectl('apply', '--validate=false', '-f', f, ...flags);
}

/** A strategic merge patch of Node kind-worker's status subresource. */
async function patchNodeStatus(body: object): Promise<void> {
  const core = loadKubeConfig({ kubeconfig }).makeApiClient(CoreV1Api);
  await core.patchNodeStatus({ name: 'kind-worker', body }, setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch));
}

const NODE = `apiVersion: v1
kind: Node
metadata: {name: kind-worker, labels: {team: a}}
spec: {podCIDR: 10.244.1.0/24, podCIDRs: [10.244.1.0/24]}
status:
  addresses: [{type: InternalIP, address: 172.18.0.3}, {type: Hostname, address: kind-worker}]
  nodeInfo: {bootID: 5b0ab8a6-5d1d-4bd2-9a2b-3c1f0e6b1a11}
`;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'veil-kube-api-'));
  const certs = makeApiServerCerts(dir);
  server = new TestApiServer({ bookmarkIntervalMs: 200, tls: certs.server, token: TEST_TOKEN });
  const url = await server.listen({ host: '127.0.0.1', port: 0 });
  kubeconfig = writeKubeconfig(join(dir, 'kubeconfig'), url, certs.ca);
});

after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

test('the server wants the bearer token, as a real one does', async () => {
  const r = await kubectl('--token', 'wrong', 'get', 'nodes');
  assert.notEqual(r.status, 0);
  // kubectl words a 401 by what it was doing: '(the server has asked for the client to provide
  // credentials)' from discovery, '(Unauthorized)', the server's Status, when discovery was cached
  assert.match(r.stderr, /You must be logged in to the server \((the server has asked for the client to provide credentials|Unauthorized)\)/);
});

test('kubectl: discovery, create by apply, get by name, short name and jsonpath; 404 and 409', async () => {
  assert.equal((await applyFile(`apiVersion: v1\nkind: Namespace\nmetadata: {name: veil}\n---\n${NODE}`)).status, 0);
  assert.match(await ok('get', 'nodes'), /^NAME\s+AGE\n kind-worker|kind-worker/m);
  assert.equal(await ok('get', 'no', 'kind-worker', '-o', 'jsonpath={.status.addresses[?(@.type=="InternalIP")].address}'), '172.18.0.3');
  const missing = await kubectl('get', 'node', 'nope');
  assert.notEqual(missing.status, 0);
  assert.match(missing.stderr, /NotFound.*nodes "nope" not found/);
  const f = join(dir, 'ns.yaml');
  writeFileSync(f, 'apiVersion: v1\nkind: Namespace\nmetadata: {name: veil}\n');
  const dup = await kubectl('create', '--validate=false', '-f', f);
  assert.notEqual(dup.status, 0);
  assert.match(dup.stderr, /AlreadyExists.*namespaces "veil" already exists/);
  const noNs = await applyFile('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: elsewhere}\ndata: {a: b}\n');
  assert.notEqual(noNs.status, 0);
  assert.match(noNs.stderr, /namespaces "elsewhere" not found/);
});

test('kubectl patch: merge, strategic (keyed list merge, status subresource) and JSON patch of a Node; a Secret by stringData', async () => {
  await ok('patch', 'node', 'kind-worker', '--type', 'merge', '-p', '{"metadata":{"annotations":{"network.veil.io/wg-pub-key":"abc="}}}');
  // the status subresource through the official client (kubectl has --subresource only from 1.24 on)
  await patchNodeStatus({ status: { addresses: [{ type: 'ExternalIP', address: '203.0.113.9' }] } });
  const node = JSON.parse(await ok('get', 'node', 'kind-worker', '-o', 'json'));
  assert.equal(node.metadata.annotations['network.veil.io/wg-pub-key'], 'abc=');
  assert.deepEqual(node.status.addresses.map((a: { type: string }) => a.type), ['InternalIP', 'Hostname', 'ExternalIP'], 'merged by type, not replaced');
  // A write to the Node itself does not change its status (the status subresource does).
  await ok('patch', 'node', 'kind-worker', '--type', 'merge', '-p', '{"status":{"addresses":[]}}');
  assert.equal(JSON.parse(await ok('get', 'node', 'kind-worker', '-o', 'json')).status.addresses.length, 3);
  await ok('patch', 'node', 'kind-worker', '--type', 'json', '-p', '[{"op":"remove","path":"/metadata/annotations/network.veil.io~1wg-pub-key"}]');
  assert.equal(JSON.parse(await ok('get', 'node', 'kind-worker', '-o', 'json')).metadata.annotations?.['network.veil.io/wg-pub-key'], undefined);
  // A strategic patch deletes a keyed element with $patch: delete.
  await patchNodeStatus({ status: { addresses: [{ type: 'ExternalIP', $patch: 'delete' }] } });
  assert.equal(JSON.parse(await ok('get', 'node', 'kind-worker', '-o', 'json')).status.addresses.length, 2);

  assert.equal((await applyFile('apiVersion: v1\nkind: Secret\nmetadata: {name: ipsec-keys, namespace: veil}\nstringData: {keys: "3+ rfc4106(gcm(aes)) 00 128"}\n')).status, 0);
  await ok('-n', 'veil', 'patch', 'secret', 'ipsec-keys', '-p', '{"stringData":{"keys":"4+ rfc4106(gcm(aes)) 11 128"}}');
  const data = await ok('-n', 'veil', 'get', 'secret', 'ipsec-keys', '-o', 'jsonpath={.data.keys}');
  assert.equal(Buffer.from(data, 'base64').toString(), '4+ rfc4106(gcm(aes)) 11 128');
  const bad = await kubectl('-n', 'veil', 'patch', 'secret', 'ipsec-keys', '--type', 'merge', '-p', '{"data":{"keys":"%%%"}}');
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /illegal base64/);
});

test('kubectl apply --server-side: field managers, a conflict unless forced, fields no longer applied are removed', async () => {
  const cm = (data: string, labels = '') => `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: veil-install, namespace: veil${labels}}\ndata: {${data}}\n`;
  const first = await applyFile(cm('a: "1", b: "2"', ', labels: {x: "y"}'), '--server-side', '--field-manager', 'veil');
  assert.equal(first.status, 0, first.stderr);
  let got = JSON.parse(await ok('-n', 'veil', 'get', 'cm', 'veil-install', '-o', 'json'));
  assert.deepEqual(got.data, { a: '1', b: '2' });
  const managed = (server.get('configmaps', 'veil', 'veil-install')!['metadata'] as { managedFields: { manager: string; fieldsV1: Record<string, Record<string, unknown>> }[] }).managedFields;
  assert.equal(managed[0]!.manager, 'veil');
  assert.ok(managed[0]!.fieldsV1['f:data']!['f:a']);
  const conflict = await applyFile(cm('a: "9"'), '--server-side', '--field-manager', 'someone-else');
  assert.notEqual(conflict.status, 0);
  assert.match(conflict.stderr, /conflict with "veil"/);
  assert.equal((await applyFile(cm('a: "9"'), '--server-side', '--field-manager', 'someone-else', '--force-conflicts')).status, 0);
  assert.equal(JSON.parse(await ok('-n', 'veil', 'get', 'cm', 'veil-install', '-o', 'json')).data.a, '9');
  // veil applies again without b and without the label: they go (veil alone owned them); a, now someone-else's, stays.
  assert.equal((await applyFile(cm('c: "3"'), '--server-side', '--field-manager', 'veil')).status, 0);
  got = JSON.parse(await ok('-n', 'veil', 'get', 'cm', 'veil-install', '-o', 'json'));
  assert.deepEqual(got.data, { a: '9', c: '3' });
  assert.equal(got.metadata.labels?.x, undefined);
});

test('kubectl get --watch: sees a patch as it happens', async () => {
  const child = spawn(kubectlPath(), ['--kubeconfig', kubeconfig, 'get', 'nodes', '--watch', '-o', 'jsonpath={.metadata.name} {.metadata.labels.team}{"\\n"}']);
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  try {
    await waitFor('the initial list', () => out.includes('kind-worker a'));
    await waitFor('the watch', () => server.openWatches('nodes') > 0);
    await ok('label', 'node', 'kind-worker', 'team=b', '--overwrite');
    await waitFor('the watch event', () => out.includes('kind-worker b'));
  } finally {
    child.kill();
  }
});

test('informer: bookmarks keep its resourceVersion current; a 410 relists and loses no change made while the watch was cut off', async () => {
  const kc = loadKubeConfig({ kubeconfig });
  const seen = new Map<string, string>();
  const inf = new Informer(kc, { apiVersion: 'v1', kind: 'Node', path: '/api/v1/nodes' }, {
    upsert: (o) => seen.set(o.metadata!.name!, o.metadata!.labels?.['team'] ?? ''),
    remove: (o) => seen.delete(o.metadata!.name!),
  });
  try {
    await inf.start();
    assert.equal(seen.get('kind-worker'), 'b');
    await waitFor('a bookmark', () => inf.stats.bookmarks > 0);
    // Events stop reaching the watch; meanwhile the node changes and another is created and deleted...
    server.holdWatches();
    await ok('label', 'node', 'kind-worker', 'team=c', '--overwrite');
    assert.equal((await applyFile(NODE.replace(/kind-worker/g, 'kind-worker9'))).status, 0);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(seen.get('kind-worker'), 'b', 'the held watch did not deliver');
    assert.ok(seen.has('kind-worker9') === false);
    // ...then the server cuts the watch with 410 Gone: the informer relists and sees it all.
    server.expireWatches();
    await waitFor('the relist', () => seen.get('kind-worker') === 'c' && seen.has('kind-worker9'));
    assert.ok(inf.stats.expired >= 1 && inf.stats.lists >= 2, JSON.stringify(inf.stats));
    await ok('delete', 'node', 'kind-worker9');
    await waitFor('the delete on the new watch', () => !seen.has('kind-worker9'));
  } finally {
    inf.stop();
  }
});

test('lease: created and renewed with MicroTime (as the API requires), released on request', async () => {
  const kc = loadKubeConfig({ kubeconfig });
  const lease = await holdLease(kc, { namespace: 'veil', name: 'kind-worker', holderIdentity: 'kind-worker/1', durationSeconds: 3 });
  try {
    const first = JSON.parse(await ok('-n', 'veil', 'get', 'leases.coordination.k8s.io', 'kind-worker', '-o', 'json'));
    assert.match(first.spec.renewTime, /\.\d{6}Z$/);
    assert.equal(first.spec.holderIdentity, 'kind-worker/1');
    await waitFor('a renewal', () => (server.get('leases', 'veil', 'kind-worker')?.['spec'] as { renewTime?: string }).renewTime !== first.spec.renewTime, 5_000);
  } finally {
    await lease.release();
  }
  assert.match((await kubectl('-n', 'veil', 'get', 'lease', 'kind-worker')).stderr, /NotFound/);
});

test('lease: a renewal the API server fails is tried again within a second, not a third of the duration later', async () => {
  const kc = loadKubeConfig({ kubeconfig });
  let lostError: Error | undefined;
  // 15 s: renewed every 5 s; two failed tries in a row waited 10 s more before (two thirds of the lease)
  const lease = await holdLease(kc, { namespace: 'veil', name: 'flaky-worker', holderIdentity: 'flaky-worker/1', durationSeconds: 15, onLost: (e) => { lostError = e; } });
  const path = '/apis/coordination.k8s.io/v1/namespaces/veil/leases/flaky-worker';
  const renewTime = () => (server.get('leases', 'veil', 'flaky-worker')?.['spec'] as { renewTime?: string }).renewTime;
  try {
    const taken = renewTime();
    const tries = () => server.requests.filter((r) => r === `GET ${path}`).length;
    const before = tries();
    server.failNext(path, 2); // the next regular renewal's read fails, and so does the first retry
    // the regular renewal comes at 5 s, its retries 0.2 and 0.4 s later; without retries the next try is at 15 s
    await waitFor('the renewal after two failed tries', () => renewTime() !== taken, 11_000);
    assert.equal(tries() - before, 3, 'two failed reads, then the read of the renewal that went through');
    assert.equal(lostError, undefined, 'the lease was never lost');
  } finally {
    await lease.release();
  }
});

test('ValidatingAdmissionPolicy as kube-apiserver applies it: objectSelector, matchConditions, variables, messageExpression, Deny (422 Invalid) and Warn, failurePolicy Fail and Ignore; paramKind refused', async () => {
  const rule = { apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE', 'UPDATE'], resources: ['configmaps'] };
  const policy = (name: string, spec: object) => ({ apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingAdmissionPolicy', metadata: { name }, spec: { matchConstraints: { resourceRules: [rule] }, ...spec } });
  const binding = (name: string, actions: string[], label: string) => ({
    apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingAdmissionPolicyBinding', metadata: { name },
    spec: { policyName: name, validationActions: actions, matchResources: { objectSelector: { matchLabels: { vap: label } } } },
  });
  const objects = [
    policy('few-keys', {
      variables: [{ name: 'keys', expression: 'has(object.data) ? size(object.data) : 0' }],
      validations: [{ expression: 'variables.keys <= 2', messageExpression: "'at most 2 keys, not ' + string(variables.keys)" }],
    }), binding('few-keys', ['Deny'], 'few'),
    policy('no-secret', { validations: [{ expression: "!has(object.data) || !('password' in object.data)", message: 'no passwords in ConfigMaps' }] }), binding('no-secret', ['Warn'], 'warn'),
    policy('broken-fail', { validations: [{ expression: "object.data.missing == 'x'" }] }), binding('broken-fail', ['Deny'], 'broken-fail'),
    policy('broken-ignore', { failurePolicy: 'Ignore', validations: [{ expression: "object.data.missing == 'x'" }] }), binding('broken-ignore', ['Deny'], 'broken-ignore'),
    policy('not-for-admins', { matchConditions: [{ name: 'not-admin', expression: "request.userInfo.username != 'kubernetes-admin'" }], validations: [{ expression: 'false' }] }), binding('not-for-admins', ['Deny'], 'few'),
  ];
  const applied = await applyFile(objects.map((o) => toYaml(o)).join('---\n'));
  assert.equal(applied.status, 0, applied.stderr);
  const cm = (name: string, label: string, data: Record<string, string>) => applyFile(JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'veil', labels: { vap: label } }, data }));
  const three = { a: '1', b: '2', c: '3' };
  // Deny: kubectl words the 422 Status (causes without a field) as it does a real server's
  const denied = await cm('vap-few', 'few', three);
  assert.notEqual(denied.status, 0);
  assert.match(denied.stderr, /The configmaps "vap-few" is invalid: : ValidatingAdmissionPolicy 'few-keys' with binding 'few-keys' denied request: at most 2 keys, not 3/);
  assert.equal(server.get('configmaps', 'veil', 'vap-few'), undefined);
  assert.equal((await cm('vap-few', 'few', { a: '1' })).status, 0, 'within the rule; the admin is not matched by not-for-admins');
  assert.equal((await cm('vap-other', 'none', three)).status, 0, 'no binding selects it');
  // Warn: admitted, with the API server's Warning header, which kubectl prints
  const warned = await cm('vap-warn', 'warn', { password: 'x' });
  assert.equal(warned.status, 0, warned.stderr);
  assert.match(warned.stderr, /Warning: Validation failed for ValidatingAdmissionPolicy 'no-secret' with binding 'no-secret': no passwords in ConfigMaps/);
  // an evaluation error (no such key) denies under Fail, is ignored under Ignore
  const failed = await cm('vap-broken', 'broken-fail', { a: '1' });
  assert.match(failed.stderr, /ValidatingAdmissionPolicy 'broken-fail' with binding 'broken-fail' denied request: expression 'object.data.missing == 'x'' resulted in error/);
  assert.equal((await cm('vap-broken', 'broken-ignore', { a: '1' })).status, 0);
  // an update is checked too
  const update = await kubectl('-n', 'veil', 'patch', 'configmap', 'vap-few', '-p', JSON.stringify({ data: three }));
  assert.match(update.stderr, /denied request: at most 2 keys, not 3/);
  const params = await applyFile(JSON.stringify(policy('with-params', { paramKind: { apiVersion: 'v1', kind: 'ConfigMap' }, validations: [{ expression: 'true' }] })));
  assert.match(params.stderr, /paramKind: this test API server does not implement policy parameters/);
  for (const o of objects) await ok('delete', o.kind.toLowerCase(), o.metadata.name);
});
