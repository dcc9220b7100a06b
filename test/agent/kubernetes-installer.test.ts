// `veil install --kubernetes` and `veil uninstall --kubernetes` against the test API server: the
// CLI refuses before writing anything when the IPsec Secret is missing, applies every object
// server-side, waits with progress while the test plays the DaemonSet controller and the agents,
// converges when run again (no object rewritten), and uninstall removes all of it but the user's
// Secret and, while Peers exist, the Peer CRD. kubectl reads back what was applied. An install that
// fails is rolled back: a first one removes everything, a re-install puts back what was there.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppsV1Api, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { loadKubeConfig } from '../../src/control/kubernetes/kube-connection.js';
import { TestApiServer } from '../kube-api/test-api-server.js';
import { startTlsApiServer } from '../kube-api/tls-api-server.js';
import { kubectlPath, makeApiServerCerts, TEST_TOKEN, writeKubeconfig } from '../kube-api/kubectl.js';
import { AGENT_STATUS_ANNOTATION } from '../../src/control/kubernetes/kube-node.js';

let server: TestApiServer;
let dir: string;
let kubeconfig: string;

interface Run { status: number | null; stdout: string; stderr: string }

/** A command's end; output() is its stdout so far. */
function run(cmd: string, args: string[]): Promise<Run> & { output: () => string } {
  let out = '';
  const done = new Promise<Run>((resolve) => {
    const child = execFile(cmd, args, { encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ status: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
    child.stdout?.on('data', (d) => { out += d; });
  });
  return Object.assign(done, { output: () => out });
}
const kubectl = (...a: string[]) => run(kubectlPath(), ['--kubeconfig', kubeconfig, ...a]);
const veil = (...a: string[]) => run(process.execPath, ['dist/src/cli/main.js', ...a, '--kubeconfig', kubeconfig]);

async function kubectlOk(...a: string[]): Promise<string> {
  const r = await kubectl(...a);
  assert.equal(r.status, 0, `kubectl ${a.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const NODES = ['k1', 'k2'];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'veil-kube-install-'));
  ({ server, kubeconfig } = await startTlsApiServer(dir));
  const nodes = NODES.map((n, i) => `apiVersion: v1\nkind: Node\nmetadata: {name: ${n}}\nspec: {podCIDRs: [10.244.${i}.0/24]}\nstatus: {addresses: [{type: InternalIP, address: 172.18.0.${i + 2}}]}\n`);
  const create = spawn(kubectlPath(), ['--kubeconfig', kubeconfig, 'create', '--validate=false', '-f', '-']);
  create.stdin.end(nodes.join('---\n'));
  await new Promise((r) => create.on('close', r));
});

after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The DaemonSet controller and the agents, as far as the installer can see them. */
async function playControllerAndAgents(): Promise<void> {
  const ds = server.get('daemonsets', 'veil', 'veil-agent');
  assert.ok(ds);
  const gen = (ds['metadata'] as { generation: number }).generation;
  const status = { desiredNumberScheduled: 2, currentNumberScheduled: 2, numberReady: 2, updatedNumberScheduled: 2, numberAvailable: 2, numberMisscheduled: 0, observedGeneration: gen };
  // the DaemonSet controller writes the status subresource (kubectl can only from 1.24 on)
  const apps = loadKubeConfig({ kubeconfig }).makeApiClient(AppsV1Api);
  await apps.patchNamespacedDaemonSetStatus({ name: 'veil-agent', namespace: 'veil', body: { status } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  for (const n of NODES) {
    await kubectlOk('annotate', 'node', n, '--overwrite', `${AGENT_STATUS_ANNOTATION}=${JSON.stringify({ ready: true, health: { state: 'Ok', problems: [] } })}`);
  }
}

test('install --kubernetes with IPsec refuses before writing anything when the key Secret is missing', async () => {
  const r = await veil('install', '--kubernetes', '--encryption', 'ipsec', '--wait-timeout', '5s');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /IPsec needs the Secret veil\/ipsec-keys.*kubectl create -n veil secret generic ipsec-keys/s);
  assert.equal(server.get('namespaces', '', 'veil'), undefined, 'nothing applied');
});

test('install --kubernetes on a cluster older than 1.30 (no ValidatingAdmissionPolicy) refuses before writing anything, saying what it needs', async () => {
  mkdirSync(join(dir, 'old'));
  const certs = makeApiServerCerts(join(dir, 'old'));
  const old = new TestApiServer({ tls: certs.server, token: TEST_TOKEN, unserved: ['validatingadmissionpolicies', 'validatingadmissionpolicybindings'] });
  try {
    const oldConfig = writeKubeconfig(join(dir, 'old', 'kubeconfig'), await old.listen({ host: '127.0.0.1', port: 0 }), certs.ca);
    const r = await run(process.execPath, ['dist/src/cli/main.js', 'install', '--kubernetes', '--encryption', 'wireguard', '--wait-timeout', '5s', '--kubeconfig', oldConfig]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /does not serve ValidatingAdmissionPolicy \(admissionregistration.k8s.io\/v1\).*Kubernetes 1.30 or later/s);
    assert.equal(old.get('namespaces', '', 'veil'), undefined, 'nothing applied');
  } finally {
    await old.close();
  }
});

test('install --kubernetes applies everything, waits with progress, converges on a re-run; uninstall removes it all but the Secret', async () => {
  const ns = spawn(kubectlPath(), ['--kubeconfig', kubeconfig, 'create', '--validate=false', '-f', '-']);
  ns.stdin.end('apiVersion: v1\nkind: Namespace\nmetadata: {name: veil}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: ipsec-keys, namespace: veil}\nstringData: {keys: "3+ rfc4106(gcm(aes)) 0123456789abcdef0123456789abcdef01234567 128"}\n');
  await new Promise((r) => ns.on('close', r));

  const install = veil('install', '--kubernetes', '--encryption', 'ipsec', '--wait-timeout', '60s', '--image', 'veil:test');
  const deadline = Date.now() + 30_000;
  while (!server.get('daemonsets', 'veil', 'veil-agent')) {
    assert.ok(Date.now() < deadline, 'the DaemonSet was applied');
    await new Promise((r) => setTimeout(r, 100));
  }
  // the installer reports the rollout at 0 first (a fixed 1.5 s was not always enough on a loaded machine)
  while (!/Waiting for DaemonSet veil\/veil-agent: 0\/0 pods ready/.test(install.output())) {
    assert.ok(Date.now() < deadline + 30_000, `the installer reported the rollout at 0: ${install.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  await playControllerAndAgents();
  const r = await install;
  assert.equal(r.status, 0, r.stderr + r.stdout);
  assert.match(r.stdout, /Found the IPsec Secret veil\/ipsec-keys \(key id 3\)/);
  assert.match(r.stdout, /Waiting for DaemonSet veil\/veil-agent: 0\/0 pods ready/);
  assert.match(r.stdout, /2\/2 pods ready, 2\/2 updated; agents ready on 2\/2 nodes/);
  assert.match(r.stdout, /successfully installed! IPsec encryption is on for all 2 nodes/);

  // kubectl sees what the CLI applied, owned by the "veil" field manager
  const ds = JSON.parse(await kubectlOk('-n', 'veil', 'get', 'ds', 'veil-agent', '-o', 'json'));
  assert.equal(ds.spec.template.spec.containers[0].image, 'veil:test');
  assert.equal((server.get('daemonsets', 'veil', 'veil-agent')!['metadata'] as { managedFields: { manager: string }[] }).managedFields[0]!.manager, 'veil');
  assert.match(await kubectlOk('get', 'clusterrole', 'veil-agent', '-o', 'jsonpath={.rules[0].verbs}'), /"patch"/);
  assert.equal(await kubectlOk('get', 'clusterrole', 'veil-agent', '-o', 'jsonpath={.rules[1].resources}'), '["peers"]');
  // the Peer CRD, Established before install returned: a Peer can be written at once
  assert.equal(await kubectlOk('get', 'crd', 'peers.network.veil.io', '-o', 'jsonpath={.status.conditions[?(@.type=="Established")].status}'), 'True');
  assert.equal(server.requests.findIndex((q) => q.startsWith('PATCH /apis/apiextensions.k8s.io/v1/customresourcedefinitions/')) < server.requests.findIndex((q) => q.startsWith('PATCH /apis/apps/v1/')), true, 'the CRD applied first');
  assert.equal(await kubectlOk('-n', 'veil', 'get', 'sa', 'veil-agent', '-o', 'jsonpath={.metadata.name}'), 'veil-agent');
  assert.equal(await kubectlOk('get', 'validatingadmissionpolicybinding', 'veil-agent-writes-own-node', '-o', 'jsonpath={.spec.policyName}'), 'veil-agent-writes-own-node');
  assert.equal(JSON.parse(JSON.parse(await kubectlOk('-n', 'veil', 'get', 'cm', 'veil-install', '-o', 'json')).data['settings.json'])['encryption.type'], 'ipsec');
  const token = JSON.parse(await kubectlOk('-n', 'veil', 'get', 'secret', 'veil-agent-api-token', '-o', 'json'));

  // Run again: everything is as applied, so no object is written; the token stays.
  const rv = ds.metadata.resourceVersion;
  const again = await veil('install', '--kubernetes', '--encryption', 'ipsec', '--wait-timeout', '20s', '--image', 'veil:test');
  assert.equal(again.status, 0, again.stderr);
  assert.equal(JSON.parse(await kubectlOk('-n', 'veil', 'get', 'ds', 'veil-agent', '-o', 'json')).metadata.resourceVersion, rv);
  assert.equal(JSON.parse(await kubectlOk('-n', 'veil', 'get', 'secret', 'veil-agent-api-token', '-o', 'json')).data.token, token.data.token);

  // a Peer the user declared keeps the CRD (deleting it would delete the Peer) until it is gone
  const p = spawn(kubectlPath(), ['--kubeconfig', kubeconfig, 'create', '--validate=false', '-f', '-']);
  p.stdin.end('apiVersion: network.veil.io/v1alpha1\nkind: Peer\nmetadata: {name: laptop}\nspec: {endpoint: {address: 192.0.2.10, port: 51820}, allowedIPs: [10.250.0.1/32]}\n');
  await new Promise((res) => p.on('close', res));
  assert.ok(server.get('peers', '', 'laptop'));
  const un = await veil('uninstall', '--kubernetes');
  assert.equal(un.status, 0, un.stderr);
  assert.match(un.stdout, /Kept CustomResourceDefinition peers.network.veil.io: it holds your Peer\(s\) laptop/);
  assert.ok(server.get('peers', '', 'laptop'), "the user's Peer stays");
  for (const [res, name] of [['daemonsets', 'veil-agent'], ['configmaps', 'veil-install'], ['serviceaccounts', 'veil-agent'], ['secrets', 'veil-agent-api-token'], ['roles', 'veil-agent']] as const) {
    assert.equal(server.get(res, 'veil', name), undefined, `${res}/${name} deleted`);
  }
  assert.equal(server.get('clusterroles', '', 'veil-agent'), undefined);
  assert.equal(server.get('clusterrolebindings', '', 'veil-agent'), undefined);
  assert.equal(server.get('validatingadmissionpolicies', '', 'veil-agent-writes-own-node'), undefined);
  assert.equal(server.get('validatingadmissionpolicybindings', '', 'veil-agent-writes-own-node'), undefined);
  for (const n of NODES) assert.equal(((server.get('nodes', '', n)!['metadata'] as { annotations?: Record<string, string> }).annotations ?? {})[AGENT_STATUS_ANNOTATION], undefined);
  assert.ok(server.get('secrets', 'veil', 'ipsec-keys'), "the user's key Secret stays");
  assert.match(un.stdout, /Kept Namespace veil: it holds your Secret\(s\) ipsec-keys/);
  await kubectlOk('delete', 'peer', 'laptop');
  const un2 = await veil('uninstall', '--kubernetes');
  assert.equal(un2.status, 0, un2.stderr);
  assert.equal(server.get('customresourcedefinitions', '', 'peers.network.veil.io'), undefined, 'no Peer left: the CRD goes');
});

/** What install applies, and whether each is there now. */
function veilObjectsLeft(): string[] {
  const refs = [['daemonsets', 'veil', 'veil-agent'], ['configmaps', 'veil', 'veil-install'], ['serviceaccounts', 'veil', 'veil-agent'], ['secrets', 'veil', 'veil-agent-api-token'],
    ['roles', 'veil', 'veil-agent'], ['clusterroles', '', 'veil-agent'], ['clusterrolebindings', '', 'veil-agent'], ['validatingadmissionpolicies', '', 'veil-agent-writes-own-node'],
    ['validatingadmissionpolicybindings', '', 'veil-agent-writes-own-node'], ['customresourcedefinitions', '', 'peers.network.veil.io']] as const;
  return refs.filter(([res, ns, name]) => server.get(res, ns, name)).map(([res, , name]) => `${res}/${name}`);
}

test('install --kubernetes whose agents never become ready is rolled back: nothing it applied is left, the user\'s Secret stays', async () => {
  assert.deepEqual(veilObjectsLeft(), [], 'no veil before');
  const r = await veil('install', '--kubernetes', '--encryption', 'wireguard', '--wait-timeout', '2s');
  assert.equal(r.status, 1, r.stdout);
  assert.match(r.stderr, /veil is not ready after 2 s: 0\/0 pods ready.*; the install was rolled back: everything it applied was removed/s);
  assert.match(r.stdout, /The install failed: rolling back/);
  assert.deepEqual(veilObjectsLeft(), [], 'every object it applied is gone');
  assert.ok(server.get('secrets', 'veil', 'ipsec-keys'), "the user's key Secret stays");
});

test('a re-install --kubernetes that fails puts back the objects veil had before (the running DaemonSet, the settings, the token)', async () => {
  const first = veil('install', '--kubernetes', '--encryption', 'ipsec', '--wait-timeout', '60s', '--image', 'veil:test');
  const deadline = Date.now() + 30_000;
  while (!server.get('daemonsets', 'veil', 'veil-agent')) {
    assert.ok(Date.now() < deadline, 'the DaemonSet was applied');
    await new Promise((r) => setTimeout(r, 100));
  }
  await playControllerAndAgents();
  assert.equal((await first).status, 0);
  const dsBefore = JSON.parse(await kubectlOk('-n', 'veil', 'get', 'ds', 'veil-agent', '-o', 'json'));
  const token = JSON.parse(await kubectlOk('-n', 'veil', 'get', 'secret', 'veil-agent-api-token', '-o', 'json')).data.token;

  // a new image and a setting: the DaemonSet controller never rolls it out (its status stays at the old generation)
  const r = await veil('install', '--kubernetes', '--encryption', 'ipsec', '--set', 'agent.metricsPort=9977', '--wait-timeout', '2s', '--image', 'veil:broken');
  assert.equal(r.status, 1, r.stdout);
  assert.match(r.stderr, /veil is not ready after 2 s.*; the install was rolled back: the objects veil had before were put back/s);
  const ds = JSON.parse(await kubectlOk('-n', 'veil', 'get', 'ds', 'veil-agent', '-o', 'json'));
  assert.deepEqual(ds.spec, dsBefore.spec, 'the DaemonSet as it was: image veil:test, the old port');
  assert.equal(ds.spec.template.spec.containers[0].image, 'veil:test');
  assert.equal(JSON.parse(JSON.parse(await kubectlOk('-n', 'veil', 'get', 'cm', 'veil-install', '-o', 'json')).data['settings.json'])['agent.metricsPort'], 9962, 'the settings as they were');
  assert.equal(JSON.parse(await kubectlOk('-n', 'veil', 'get', 'secret', 'veil-agent-api-token', '-o', 'json')).data.token, token, 'the token kept');
  const un = await veil('uninstall', '--kubernetes');
  assert.equal(un.status, 0, un.stderr);
});
