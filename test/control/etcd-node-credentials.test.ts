// Per-node etcd credentials on a real etcd with auth: node A's user reads the cluster and writes its
// own Node and Lease, and etcd refuses it node B's object (and every other key) with an error that
// says so; a reset password locks the old one out; --delete removes user and role.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EtcdRegistry } from '../../src/control/etcd/etcd-registry.js';
import { grantNodeCredentials, nodeUserName, revokeNodeCredentials } from '../../src/control/etcd/etcd-node-credentials.js';
import type { EtcdConnectionOptions } from '../../src/control/etcd/etcd-connection.js';
import { isVeilError, type VeilError } from '../../src/util/errors.js';
import { etcdForTests, regOptions } from './etcd-helpers.js';

const t = etcdForTests({ members: 1, auth: true });
const CLUSTER = 'sec';

const rootOpts = (): EtcdConnectionOptions => ({ endpoints: t.etcd.endpoints, username: 'root', password: t.etcd.auth!.rootPassword });

async function refusal(what: Promise<unknown>): Promise<VeilError> {
  try {
    await what;
  } catch (e) {
    assert.ok(isVeilError(e), `a VeilError, not ${String(e)}`);
    return e;
  }
  return assert.fail('etcd accepted the write');
}

test("node A's etcd user writes its own Node and Lease, and is refused node B's object and every other key", { timeout: 60_000 }, async () => {
  const admin = t.registry(CLUSTER, { ...rootOpts() });
  await admin.create({ kind: 'Node', metadata: { name: 'node-b' }, spec: { internalIP: '172.18.0.3', podCIDR: '10.244.2.0/24' } });
  const credsA = await grantNodeCredentials(rootOpts(), CLUSTER, 'node-a');
  assert.equal(credsA.username, nodeUserName(CLUSTER, 'node-a'));
  assert.equal(credsA.enforced, true, 'etcd refuses the new user a write outside its keys');

  const a = t.registry(CLUSTER, { username: credsA.username, password: credsA.password });
  // what an agent does: register, publish its fields, hold its lease, read and watch the cluster
  await a.mutate('Node', 'node-a', () => ({ kind: 'Node', metadata: { name: 'node-a' }, spec: { internalIP: '172.18.0.2', podCIDR: '10.244.1.0/24' } }));
  await a.mutate('Node', 'node-a', (cur) => cur && { ...cur, metadata: { ...cur.metadata, annotations: { 'network.cilium.io/wg-pub-key': 'AAAA' } } });
  const lease = await a.holdLease('node-a', 10, { node: 'node-a' });
  assert.deepEqual((await a.list('Node')).map((n) => n.metadata.name).sort(), ['node-a', 'node-b']);
  const seen: string[] = [];
  const w = a.watch('Node', await a.revision(), (ev) => seen.push(ev.object.metadata.name));

  const before = await admin.get('Node', 'node-b');
  const forged = await refusal(a.mutate('Node', 'node-b', (cur) => cur && { ...cur, spec: { ...cur.spec, internalIP: '172.18.0.66' } }));
  assert.equal(forged.code, 'ETCD_PERMISSION_DENIED', forged.describe());
  assert.match(forged.message, /etcd denied writing Node 'node-b' to node user 'veil-node\/sec\/node-a': a node's etcd user may write only its own Node and Lease objects/);
  assert.match(forged.hint ?? '', /admin credentials/);
  assert.deepEqual(await admin.get('Node', 'node-b'), before, "node B's object is unchanged");

  // a name that merely starts with its own, a delete, another node's lease, a secret, the settings
  for (const attempt of [
    () => a.create({ kind: 'Node', metadata: { name: 'node-a-impostor' }, spec: { internalIP: '172.18.0.9', podCIDR: '10.244.2.0/24' } }),
    () => a.delete('Node', 'node-b'),
    () => a.holdLease('node-b', 10, { node: 'node-b' }),
    () => a.create({ kind: 'Secret', metadata: { name: 'ipsec-keys' }, type: 'Opaque', data: { keys: Buffer.from('3+ rfc4106(gcm(aes)) 00 128').toString('base64') } }),
    () => a.mutate('ConfigMap', 'veil-config', () => ({ kind: 'ConfigMap', metadata: { name: 'veil-config' }, data: {} })),
  ]) assert.equal((await refusal(attempt())).code, 'ETCD_PERMISSION_DENIED');
  assert.deepEqual((await admin.list('Node')).map((n) => n.metadata.name).sort(), ['node-a', 'node-b']);
  assert.equal(await admin.get('Secret', 'ipsec-keys'), undefined);

  // its own writes still go through, and the watch saw only them
  await a.mutate('Node', 'node-a', (cur) => cur && { ...cur, status: { ready: true } });
  const deadline = Date.now() + 10_000;
  while (!seen.includes('node-a') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual([...new Set(seen)], ['node-a']);
  w.stop();
  await lease.release();
  assert.equal(await admin.get('Lease', 'node-a'), undefined, 'its lease is released with its own rights');
});

test('a new password locks the old one out; delete removes the user', { timeout: 60_000 }, async () => {
  const first = await grantNodeCredentials(rootOpts(), CLUSTER, 'node-c');
  const second = await grantNodeCredentials(rootOpts(), CLUSTER, 'node-c');
  assert.notEqual(first.password, second.password);
  const stale = new EtcdRegistry({ cluster: CLUSTER, endpoints: t.etcd.endpoints, username: first.username, password: first.password });
  try {
    assert.equal((await refusal(stale.list('Node'))).code, 'ETCD_AUTH_FAILED');
  } finally {
    stale.close();
  }
  assert.equal(await revokeNodeCredentials(rootOpts(), CLUSTER, 'node-c'), true);
  assert.equal(await revokeNodeCredentials(rootOpts(), CLUSTER, 'node-c'), false);
  const gone = new EtcdRegistry({ cluster: CLUSTER, endpoints: t.etcd.endpoints, username: second.username, password: second.password });
  try {
    assert.equal((await refusal(gone.list('Node'))).code, 'ETCD_AUTH_FAILED');
  } finally {
    gone.close();
  }
});

test('a user without etcd root cannot make node users, and is told so', { timeout: 60_000 }, async () => {
  const err = await refusal(grantNodeCredentials({ ...regOptions(t.etcd, CLUSTER), endpoints: t.etcd.endpoints }, CLUSTER, 'node-d'));
  assert.equal(err.code, 'ETCD_NOT_ADMIN', err.describe());
  assert.match(err.message, /managing users needs etcd's root role/);
});
