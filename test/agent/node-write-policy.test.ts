// The admission policy `veil install --kubernetes` ships (src/agent/node-write-policy.ts), applied
// with the real kubectl to the test API server, which enforces ValidatingAdmissionPolicies with a
// real CEL evaluator and tells callers apart by bearer token (as pod-bound ServiceAccount tokens
// carry authentication.kubernetes.io/node-name on Kubernetes 1.30+). Agent A may write its own
// Node's network.veil.io/ annotations and nothing else: not Node B, not its labels, spec or other
// annotations; the refusals are the API server's Status, read back by @kubernetes/client-node and
// kubectl. Admins and other ServiceAccounts are not matched. The agent's own publish path
// (KubernetesNodeSource) passes it with A's identity and is refused for B's Node.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { stringify as toYaml } from 'yaml';
import { TestApiServer } from '../kube-api/test-api-server.js';
import type { UserInfo } from '../kube-api/admission-policy.js';
import { kubectlPath, makeApiServerCerts, podTokenIdentity, TEST_TOKEN, writeKubeconfig } from '../kube-api/kubectl.js';
import { loadKubeConfig } from '../../src/control/kubernetes/kube-connection.js';
import { renderManifests } from '../../src/agent/kubernetes-manifests.js';
import { NODE_WRITE_POLICY } from '../../src/agent/node-write-policy.js';
import { applySet, defaultSettings } from '../../src/agent/settings.js';
import { KubernetesNodeSource } from '../../src/agent/kubernetes-node-source.js';
import { ENCRYPTION_KEY_ANNOTATION } from '../../src/control/kubernetes/kube-node.js';
import { VeilError } from '../../src/util/errors.js';

const AGENT_USER = 'system:serviceaccount:veil:veil-agent';
const SA_GROUPS = ['system:serviceaccounts', 'system:serviceaccounts:veil', 'system:authenticated'];
const IDENTITIES: Record<string, UserInfo> = {
  'token-agent-a': podTokenIdentity('veil', 'veil-agent', 'a'),
  // a legacy Secret-based token: the agent's ServiceAccount, but no node in its extra
  'token-agent-legacy': { username: AGENT_USER, uid: 'sa-uid', groups: SA_GROUPS },
  'token-other-sa': { username: 'system:serviceaccount:kube-system:node-labeller', groups: ['system:serviceaccounts', 'system:authenticated'], extra: { 'authentication.kubernetes.io/node-name': ['a'] } },
};
const DENIED = `ValidatingAdmissionPolicy '${NODE_WRITE_POLICY}' with binding '${NODE_WRITE_POLICY}' denied request: `;

let server: TestApiServer;
let dir: string;
let url: string;
let ca: string;
const apis = new Map<string, k8s.KubernetesObjectApi>();

function kubeconfigFor(token: string): string {
  return writeKubeconfig(join(dir, `kubeconfig-${token}`), url, ca, token);
}
function apiAs(token: string): k8s.KubernetesObjectApi {
  if (!apis.has(token)) apis.set(token, k8s.KubernetesObjectApi.makeApiClient(loadKubeConfig({ kubeconfig: kubeconfigFor(token) })));
  return apis.get(token)!;
}

function kubectl(token: string, args: string[], stdin?: string): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = execFile(kubectlPath(), ['--kubeconfig', kubeconfigFor(token), ...args], { encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ status: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
    if (stdin !== undefined) p.stdin!.end(stdin);
  });
}

/** A strategic merge patch of Node `name` as `token`, as the agent sends it. */
function patchNode(token: string, name: string, metadata: Record<string, unknown>, spec?: Record<string, unknown>): Promise<k8s.KubernetesObject> {
  return apiAs(token).patch({ apiVersion: 'v1', kind: 'Node', metadata: { name, ...metadata }, ...(spec ? { spec } : {}) } as k8s.KubernetesObject,
    undefined, undefined, 'veil-agent', undefined, k8s.PatchStrategy.StrategicMergePatch);
}

/** The API server's Status for a refused call. */
async function refusal(p: Promise<unknown>): Promise<{ code: number; reason: string; message: string; details: { causes?: { message: string }[] } }> {
  try { await p; } catch (e) {
    assert.ok(e instanceof k8s.ApiException, String(e));
    const body = (typeof e.body === 'string' ? JSON.parse(e.body) : e.body) as { code: number; reason: string; message: string; details: { causes?: { message: string }[] } };
    assert.equal(body.code, e.code);
    return body;
  }
  assert.fail('the write was accepted');
}

const nodeB = () => JSON.stringify(server.get('nodes', '', 'b'));

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'veil-node-policy-'));
  const certs = makeApiServerCerts(dir);
  ca = certs.ca;
  server = new TestApiServer({ tls: certs.server, token: TEST_TOKEN, identities: IDENTITIES });
  url = await server.listen({ host: '127.0.0.1', port: 0 });
  const s = defaultSettings();
  applySet(s, 'encryption.enabled=true');
  const policy = renderManifests({ settings: s }).filter((m) => m.apiVersion.startsWith('admissionregistration.k8s.io/'));
  assert.deepEqual(policy.map((m) => m.kind), ['ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding']);
  const node = (name: string, i: number) => ({
    apiVersion: 'v1', kind: 'Node',
    metadata: { name, labels: { 'kubernetes.io/hostname': name }, annotations: { 'node.alpha.kubernetes.io/ttl': '0', 'network.veil.io/wg-pub-key': `${name}-key=` } },
    spec: { podCIDR: `10.244.${i}.0/24`, podCIDRs: [`10.244.${i}.0/24`] },
    status: { addresses: [{ type: 'InternalIP', address: `172.18.0.${i + 2}` }] },
  });
  // the real kubectl applies the policy server-side (discovery, the admissionregistration group) and the Nodes
  const applied = await kubectl(TEST_TOKEN, ['apply', '--server-side', '--validate=false', '--field-manager=veil', '-f', '-'], [...policy, node('a', 0), node('b', 1)].map((m) => toYaml(m)).join('---\n'));
  assert.equal(applied.status, 0, applied.stderr);
  assert.match(applied.stdout, new RegExp(`validatingadmissionpolicy.admissionregistration.k8s.io/${NODE_WRITE_POLICY} serverside-applied`));
});

after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

test('agent A may not write Node B: 403 Forbidden, the policy\'s message naming both Nodes; B is unchanged', async () => {
  const before = nodeB();
  const r = await refusal(patchNode('token-agent-a', 'b', { annotations: { 'network.veil.io/wg-pub-key': 'impostor=' } }));
  assert.equal(r.code, 403);
  assert.equal(r.reason, 'Forbidden');
  const inner = `${DENIED}the veil agent on Node a may not write Node b: an agent writes only its own Node`;
  assert.equal(r.message, `nodes "b" is forbidden: ${inner}`);
  assert.deepEqual(r.details.causes, [{ message: inner }]);
  assert.equal(nodeB(), before);
  // kubectl says the same
  const k = await kubectl('token-agent-a', ['annotate', 'node', 'b', '--overwrite', 'network.veil.io/wg-pub-key=impostor=']);
  assert.notEqual(k.status, 0);
  assert.match(k.stderr, /nodes "b" is forbidden: ValidatingAdmissionPolicy 'veil-agent-writes-own-node' .*may not write Node b/);
  assert.equal(nodeB(), before);
  // a token without a node (not pod-bound, or a cluster before 1.30) writes no Node at all
  const legacy = await refusal(patchNode('token-agent-legacy', 'a', { annotations: { 'network.veil.io/wg-pub-key': 'x=' } }));
  assert.equal(legacy.code, 403);
  assert.match(legacy.message, /denied request: a veil agent writes only its own Node, and its token names none \(authentication.kubernetes.io\/node-name: Kubernetes 1.30\+/);
});

test('agent A writes, changes and removes its own Node\'s network.veil.io/ annotations', async () => {
  await patchNode('token-agent-a', 'a', { annotations: { 'network.veil.io/wg-pub-key': 'a-new=', [ENCRYPTION_KEY_ANNOTATION]: '3' } });
  let a = server.get('nodes', '', 'a')!['metadata'] as { annotations: Record<string, string> };
  assert.equal(a.annotations['network.veil.io/wg-pub-key'], 'a-new=');
  await patchNode('token-agent-a', 'a', { annotations: { [ENCRYPTION_KEY_ANNOTATION]: null } });
  a = server.get('nodes', '', 'a')!['metadata'] as { annotations: Record<string, string> };
  assert.ok(!(ENCRYPTION_KEY_ANNOTATION in a.annotations));
  assert.equal(a.annotations['node.alpha.kubernetes.io/ttl'], '0');
  const k = await kubectl('token-agent-a', ['annotate', 'node', 'a', '--overwrite', 'network.veil.io/wg-pub-key=by-kubectl=']);
  assert.equal(k.status, 0, k.stderr);
});

test('agent A may not change its own Node\'s labels, spec or other annotations: 422 Invalid with the policy\'s message', async () => {
  const before = JSON.stringify(server.get('nodes', '', 'a'));
  const cases: [string, Promise<unknown>, string][] = [
    ['a label', patchNode('token-agent-a', 'a', { labels: { 'node-role.kubernetes.io/control-plane': '' } }), 'a veil agent may not change a Node\'s labels'],
    ['a label removed', patchNode('token-agent-a', 'a', { labels: { 'kubernetes.io/hostname': null } }), 'a veil agent may not change a Node\'s labels'],
    ['the pod CIDR', patchNode('token-agent-a', 'a', {}, { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24'] }), 'a veil agent may not change a Node\'s spec'],
    ['a taint', patchNode('token-agent-a', 'a', {}, { unschedulable: true }), 'a veil agent may not change a Node\'s spec'],
    ['another annotation', patchNode('token-agent-a', 'a', { annotations: { 'node.alpha.kubernetes.io/ttl': '30' } }), 'a veil agent may change only the network.veil.io/ annotations of its Node'],
    ['another annotation added', patchNode('token-agent-a', 'a', { annotations: { 'example.com/x': 'y' } }), 'a veil agent may change only the network.veil.io/ annotations of its Node'],
    ['another annotation removed', patchNode('token-agent-a', 'a', { annotations: { 'node.alpha.kubernetes.io/ttl': null } }), 'a veil agent may change only the network.veil.io/ annotations of its Node'],
  ];
  for (const [what, p, message] of cases) {
    const r = await refusal(p);
    assert.deepEqual([r.code, r.reason, r.message], [422, 'Invalid', `nodes "a" is forbidden: ${DENIED}${message}`], what);
  }
  const k = await kubectl('token-agent-a', ['label', 'node', 'a', 'evil=true']);
  assert.notEqual(k.status, 0);
  // kubectl words a 422 from its Status's kind, name and causes, as it does for a real API server
  assert.match(k.stderr, /The nodes "a" is invalid: : ValidatingAdmissionPolicy 'veil-agent-writes-own-node' with binding 'veil-agent-writes-own-node' denied request: a veil agent may not change a Node's labels/);
  assert.equal(JSON.stringify(server.get('nodes', '', 'a')), before);
});

test('other identities are not matched: the admin and another ServiceAccount change any Node', async () => {
  await patchNode(TEST_TOKEN, 'b', { labels: { 'example.com/admin': 'yes' }, annotations: { 'network.veil.io/wg-pub-key': 'set-by-admin=' } }, { unschedulable: true });
  const k = await kubectl(TEST_TOKEN, ['label', 'node', 'b', 'example.com/zone=z1']);
  assert.equal(k.status, 0, k.stderr);
  await patchNode('token-other-sa', 'b', { labels: { 'example.com/labelled': 'yes' } });
  const b = server.get('nodes', '', 'b')!['metadata'] as { labels: Record<string, string> };
  assert.deepEqual([b.labels['example.com/admin'], b.labels['example.com/zone'], b.labels['example.com/labelled']], ['yes', 'z1', 'yes']);
});

test('the agent\'s own publish path (KubernetesNodeSource) passes the policy with its identity, and is refused for another Node', async () => {
  const kc = loadKubeConfig({ kubeconfig: kubeconfigFor('token-agent-a') });
  const source = (name: string) => new KubernetesNodeSource({ kc, nodeName: name, namespace: 'veil', underlayFor: (address) => ({ interface: 'eth0', address, mtu: 1500 }) });
  const fields = { agent: { ready: true, pid: 1, bootID: 'a-boot', startedAt: 'now', health: { state: 'Ok' as const, problems: [] } }, encryptionKey: 7, annotations: { 'network.veil.io/wg-pub-key': 'published=' } };
  const own = source('a');
  const wrong = source('b');
  try {
    await own.publish(fields);
    const a = server.get('nodes', '', 'a')!['metadata'] as { annotations: Record<string, string> };
    assert.deepEqual([a.annotations[ENCRYPTION_KEY_ANNOTATION], a.annotations['network.veil.io/wg-pub-key']], ['7', 'published=']);
    const before = nodeB();
    const e = await wrong.publish(fields).then(() => assert.fail('published on b'), (x: unknown) => x);
    assert.ok(e instanceof VeilError, String(e));
    assert.match(e.describe(), /cannot publish on node 'b': nodes "b" is forbidden: ValidatingAdmissionPolicy 'veil-agent-writes-own-node' .*may not write Node b.*\(HTTP 403\)/s);
    assert.match(e.describe(), /an admission policy refused the write/);
    assert.equal(nodeB(), before);
  } finally {
    own.close();
    wrong.close();
  }
});

test('without the policy (deleted by the admin) agent A could write Node B: the refusals above are the policy\'s', async () => {
  const del = await kubectl(TEST_TOKEN, ['delete', 'validatingadmissionpolicybinding', NODE_WRITE_POLICY]);
  assert.equal(del.status, 0, del.stderr);
  await patchNode('token-agent-a', 'b', { annotations: { 'network.veil.io/wg-pub-key': 'impostor=' } });
  assert.equal((server.get('nodes', '', 'b')!['metadata'] as { annotations: Record<string, string> }).annotations['network.veil.io/wg-pub-key'], 'impostor=');
});
