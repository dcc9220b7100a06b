// Peers on the Kubernetes backend, the way the operator meets them: `veil peer add/list/config/delete`
// and `veil ipsec peer-config` against a Kubernetes cluster (the test API server over TLS, with the
// Peer CRD as `veil install --kubernetes` applies it), read back with kubectl; the registry's Peer
// calls through the official client (create 409, update with a stale resourceVersion, mutate,
// delete 404), a Peer written with kubectl without bootID keyed by its uid, and a cluster without
// the CRD refused with what to do. Every other kind stays read-only.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { TestApiServer } from '../kube-api/test-api-server.js';
import { startTlsApiServer } from '../kube-api/tls-api-server.js';
import { kubectlAsync, runAsync } from '../kube-api/kubectl.js';
import { KubernetesRegistry } from '../../src/control/kubernetes/kubernetes-registry.js';
import { PEER_API_VERSION, PEER_CRD_NAME } from '../../src/control/kubernetes/peer-crd.js';
import { renderManifests } from '../../src/agent/kubernetes-manifests.js';
import { defaultSettings } from '../../src/agent/settings.js';
import { WG_PUBKEY_ANNOTATION } from '../../src/agent/wireguard-mode.js';
import { AGENT_STATUS_ANNOTATION } from '../../src/control/kubernetes/kube-node.js';
import type { VeilError } from '../../src/util/errors.js';

let server: TestApiServer;
let dir: string;
let kubeconfig: string;
let env: NodeJS.ProcessEnv;

const kubectl = (...a: string[]) => kubectlAsync(kubeconfig, a);
const veil = (...a: string[]) => runAsync(process.execPath, ['dist/src/cli/main.js', ...a], env);
async function kubectlOk(...a: string[]): Promise<string> {
  const r = await kubectl(...a);
  assert.equal(r.status, 0, `kubectl ${a.join(' ')}: ${r.stderr}`);
  return r.stdout;
}
async function create(docs: unknown[]): Promise<void> {
  const f = join(dir, `${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(f, docs.map((d) => toYaml(d)).join('---\n'));
  await kubectlOk('create', '--validate=false', '-f', f);
}

const KEY = (c: string) => `${c.repeat(42)}A=`;
const NODE_KEY = KEY('n');
const registry = () => new KubernetesRegistry({ kubeconfig, namespace: 'veil' });
async function failure(p: Promise<unknown>): Promise<VeilError> {
  try { await p; } catch (e) { return e as VeilError; }
  return assert.fail('the call succeeded');
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'veil-kube-peers-'));
  ({ server, kubeconfig } = await startTlsApiServer(dir));
  env = { ...process.env, VEIL_HOME: join(dir, 'home'), VEIL_CLUSTER: 'k8s' };
  const add = await veil('cluster', 'add', 'k8s', '--kubernetes', '--kubeconfig', kubeconfig);
  assert.equal(add.status, 0, add.stderr);
  const settings = { ...defaultSettings(), 'encryption.enabled': true, 'encryption.type': 'ipsec' as const };
  await create([
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'veil' } },
    ...[0, 1].map((i) => ({
      apiVersion: 'v1', kind: 'Node',
      metadata: { name: `k${i}`, annotations: { [WG_PUBKEY_ANNOTATION]: i ? KEY('m') : NODE_KEY, [AGENT_STATUS_ANNOTATION]: JSON.stringify({ ready: true, bootID: `0000000${i}-0000-4000-8000-000000000000` }) } },
      spec: { podCIDRs: [`10.244.${i}.0/24`] }, status: { addresses: [{ type: 'InternalIP', address: `172.18.0.${i + 2}` }] },
    })),
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'ipsec-keys', namespace: 'veil' }, stringData: { keys: '3+ rfc4106(gcm(aes)) 0123456789abcdef0123456789abcdef01234567 128' } },
    renderManifests({ settings }).find((m) => m.kind === 'ConfigMap' && m.metadata.name === 'veil-install'),
  ]);
});

after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

test('without the CRD: the peer commands say the cluster does not serve Peers, and how to fix it', { timeout: 30_000 }, async () => {
  const r = await veil('peer', 'list');
  assert.equal(r.status, 1);
  assert.match(r.stderr, new RegExp(`does not serve veil's Peer resource \\(the CRD ${PEER_CRD_NAME.replace(/\./g, '\\.')}\\)`));
  assert.match(r.stderr, /veil install --kubernetes/);
  assert.equal((await failure(registry().create({ kind: 'Peer', metadata: { name: 'x' }, spec: {} }))).code, 'NO_PEER_CRD');
});

test('veil peer add/list/config/delete and ipsec peer-config through the API; kubectl sees the same objects', { timeout: 180_000 }, async () => {
  const crd = renderManifests({ settings: defaultSettings() }).find((m) => m.kind === 'CustomResourceDefinition')!;
  await create([crd]);
  await kubectlOk('wait', '--for', 'condition=established', '--timeout', '20s', `crd/${PEER_CRD_NAME}`);

  const added = await veil('peer', 'add', 'laptop', '--public-key', KEY('l'), '--endpoint', '192.0.2.10:51820', '--allowed-ips', '10.250.0.1/32,192.168.50.0/24', '--keepalive', '25');
  assert.equal(added.status, 0, added.stderr);
  assert.match(added.stdout, /peer\/laptop created/);
  const obj = JSON.parse(await kubectlOk('get', 'peer', 'laptop', '-o', 'json'));
  assert.equal(obj.apiVersion, PEER_API_VERSION);
  assert.deepEqual(obj.spec.endpoint, { address: '192.0.2.10', port: 51820 });
  assert.deepEqual(obj.spec.allowedIPs, ['10.250.0.1/32', '192.168.50.0/24']);
  assert.equal(obj.spec.persistentKeepalive, 25);
  assert.match(obj.spec.bootID, /^[0-9a-f-]{36}$/);
  assert.equal(obj.metadata.managedFields?.[0]?.manager ?? 'veil-cli', 'veil-cli');

  const again = await veil('peer', 'add', 'laptop', '--public-key', KEY('q'), '--endpoint', '192.0.2.11:51820', '--allowed-ips', '10.250.9.1/32');
  assert.equal(again.status, 1);
  assert.match(again.stderr, /peer "laptop" already exists/);
  const clash = await veil('peer', 'add', 'clash', '--public-key', KEY('c'), '--endpoint', '192.0.2.12:51820', '--allowed-ips', '10.244.1.128/25');
  assert.equal(clash.status, 1);
  assert.match(clash.stderr, /peer "clash" refused: its allowed IPs 10.244.1.128\/25 overlap 10.244.1.0\/24 of node 'k1'/);
  assert.equal(server.get('peers', '', 'clash'), undefined);

  const list = await veil('peer', 'list');
  assert.equal(list.status, 0, list.stderr);
  assert.match(list.stdout, /laptop\s+192\.0\.2\.10:51820\s+10\.250\.0\.1\/32,192\.168\.50\.0\/24\s+l{42}A=\s+25/);

  const conf = await veil('peer', 'config', 'laptop');
  assert.equal(conf.status, 0, conf.stderr);
  assert.match(conf.stdout, new RegExp(`\\[Peer\\]\\n(?:#.*\\n)*PublicKey = ${NODE_KEY.replace(/[+/=]/g, '\\$&')}\\n`));
  assert.match(conf.stdout, /Endpoint = 172\.18\.0\.2:51871/);

  const xfrm = await veil('ipsec', 'peer-config', 'laptop');
  assert.equal(xfrm.status, 0, xfrm.stderr);
  assert.match(xfrm.stdout, /ip xfrm state add src 192\.0\.2\.10 dst 172\.18\.0\.2 proto esp spi 3 reqid 1 mode tunnel aead/);
  assert.equal(JSON.parse(await kubectlOk('get', 'peer', 'laptop', '-o', 'json')).spec.ipsecKeyId, 3, 'the key id recorded on the Peer (a PUT with its resourceVersion)');

  const del = await veil('peer', 'delete', 'laptop');
  assert.equal(del.status, 0, del.stderr);
  assert.equal(server.get('peers', '', 'laptop'), undefined);
  const gone = await veil('peer', 'delete', 'laptop');
  assert.equal(gone.status, 1);
  assert.match(gone.stderr, /peer "laptop" not found/);
});

test('the registry\'s Peer calls: 409 on create, a stale update refused, mutate retried, delete 404; a kubectl-written Peer keyed by its uid; other kinds read-only', { timeout: 30_000 }, async () => {
  const reg = registry();
  const spec = { endpoint: { address: '192.0.2.20', port: 51820 }, allowedIPs: ['10.250.3.0/24'] };
  const made = await reg.create({ kind: 'Peer', metadata: { name: 'vm3' }, spec: { ...spec, bootID: '11111111-2222-4333-8444-555555555555' } });
  assert.equal((await failure(reg.create({ kind: 'Peer', metadata: { name: 'vm3' }, spec }))).code, 'ALREADY_EXISTS');
  await reg.update({ ...made, spec: { ...made.spec, persistentKeepalive: 10 } });
  assert.equal((await failure(reg.update({ ...made, spec: { ...made.spec, persistentKeepalive: 20 } }))).code, 'CONFLICT', 'its resourceVersion moved');
  const mutated = await reg.mutate('Peer', 'vm3', (cur) => cur && { ...cur, spec: { ...cur.spec, ipsecKeyId: 4 } });
  assert.equal(mutated?.spec?.['ipsecKeyId'], 4);
  assert.equal(mutated?.spec?.['persistentKeepalive'], 10);
  // refused by the API server's schema, its message passed on
  const invalid = await failure(reg.create({ kind: 'Peer', metadata: { name: 'vm4' }, spec: { ...spec, publicKey: 'not-a-key' } }));
  assert.match(invalid.message, /spec.publicKey in body should match/);

  await create([{ apiVersion: PEER_API_VERSION, kind: 'Peer', metadata: { name: 'by-hand' }, spec: { endpoint: { address: '192.0.2.30', port: 4500 }, allowedIPs: ['10.250.4.0/24'] } }]);
  const uid = JSON.parse(await kubectlOk('get', 'peer', 'by-hand', '-o', 'json')).metadata.uid;
  assert.equal((await reg.get('Peer', 'by-hand'))?.spec?.['bootID'], uid, 'no bootID: its uid, the same for every reader');
  assert.deepEqual((await reg.list('Peer')).map((p) => p.metadata.name).sort(), ['by-hand', 'vm3']);

  assert.equal(await reg.delete('Peer', 'vm3'), true);
  assert.equal(await reg.delete('Peer', 'vm3'), false);
  assert.equal(await reg.get('Peer', 'vm3'), undefined);
  assert.equal((await failure(reg.create({ kind: 'ConfigMap', metadata: { name: 'x' } }))).code, 'READ_ONLY');
  assert.equal((await failure(reg.delete('Secret', 'ipsec-keys'))).code, 'READ_ONLY');
  reg.close();
});
