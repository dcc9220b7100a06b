// The cluster config (~/.veil/config) and `veil cluster`: a cluster added with etcd endpoints and
// credentials makes every command use that real etcd; clusters the file does not name stay on the
// embedded registry, as the lab's do.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadClusterConfig, saveClusterEntry } from '../../src/control/cluster-config.js';
import { currentCluster, openRegistry } from '../../src/control/cluster.js';
import { EtcdRegistry } from '../../src/control/etcd/etcd-registry.js';
import { isVeilError } from '../../src/util/errors.js';
import { etcdForTests } from './etcd-helpers.js';

const CLI = resolve(fileURLToPath(import.meta.url), '../../../src/cli/main.js');
const root = mkdtempSync(join(tmpdir(), 'veil-t-cfg-'));
after(() => rmSync(root, { recursive: true, force: true }));
const t = etcdForTests({ members: 1, tls: true, auth: true });
let seq = 0;

function env(): { VEIL_HOME: string; VEIL_CONFIG: string } {
  const dir = join(root, `case${seq++}`);
  mkdirSync(dir);
  return { VEIL_HOME: join(dir, 'home'), VEIL_CONFIG: join(dir, 'veil-config') };
}

function veil(e: Record<string, string>, ...args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--no-deprecation', CLI, ...args], { encoding: 'utf8', env: { ...process.env, VEIL_CLUSTER: '', ...e } });
  return { status: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
}

/** Runs fn with these variables set in this process, restoring them after. */
async function withEnv<T>(e: Record<string, string>, fn: () => Promise<T> | T): Promise<T> {
  const saved = Object.fromEntries(Object.keys(e).map((k) => [k, process.env[k]]));
  Object.assign(process.env, e);
  delete process.env['VEIL_CLUSTER'];
  try { return await fn(); } finally {
    for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
  }
}

test('veil cluster add/use/list, and commands then read and write the real etcd', async () => {
  const e = env();
  const etcd = t.etcd;
  const add = veil(e, 'cluster', 'add', 'prod', '--etcd-endpoints', etcd.endpoints.join(','), '--ca', etcd.certs!.ca,
    '--cert', etcd.certs!.client.cert, '--key', etcd.certs!.client.key, '--username', 'veil', '--password-file', etcd.auth!.passwordFile);
  assert.equal(add.status, 0, add.stderr);
  assert.equal(veil(e, 'cluster', 'use', 'prod').status, 0);
  const listed = JSON.parse(veil(e, 'cluster', 'list', '-o', 'json').stdout);
  assert.equal(listed.currentCluster, 'prod');
  assert.deepEqual(listed.clusters[0].registry, {
    type: 'etcd', endpoints: etcd.endpoints, ca: etcd.certs!.ca, cert: etcd.certs!.client.cert, key: etcd.certs!.client.key,
    username: 'veil', passwordFile: etcd.auth!.passwordFile,
  });
  assert.match(veil(e, 'cluster', 'list').stdout, /\*\s+prod\s+etcd\s+https:\/\/127\.0\.0\.1:\d+\s+tls\+client-cert, user veil\s+config/);
  // a write command lands in etcd under veil/prod/, a read command reads it back from there
  const created = veil(e, 'secret', 'create', 'ipsec-keys', '--from-literal', 'keys=3+ rfc4106(gcm(aes)) 0123456789abcdef0123456789abcdef01234567 128');
  assert.equal(created.status, 0, created.stderr);
  assert.match(await etcd.etcdctl(['get', '--keys-only', '--prefix', 'veil/prod/']), /^veil\/prod\/secrets\/ipsec-keys$/m);
  const got = veil(e, 'secret', 'get', 'ipsec-keys', '-o', 'go-template={{.data.keys | base64decode}}');
  assert.equal(got.status, 0, got.stderr);
  assert.equal(got.stdout, '3+ rfc4106(gcm(aes)) 0123456789abcdef0123456789abcdef01234567 128');
  await withEnv(e, async () => {
    assert.equal(currentCluster(), 'prod');
    const reg = openRegistry('prod');
    try {
      assert.ok(reg instanceof EtcdRegistry);
      assert.equal((await reg.list('Secret')).length, 1);
    } finally { reg.close(); }
  });
  // a wrong password in the configured file: the command says which problem and what to do
  const badPw = join(root, 'bad.password');
  writeFileSync(badPw, 'nope\n');
  assert.equal(veil(e, 'cluster', 'add', 'prod', '--etcd-endpoints', etcd.endpoints.join(','), '--ca', etcd.certs!.ca,
    '--cert', etcd.certs!.client.cert, '--key', etcd.certs!.client.key, '--username', 'veil', '--password-file', badPw).status, 0);
  const refused = veil(e, 'secret', 'get', 'ipsec-keys');
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, /etcd refused user 'veil': wrong user name or password: check the password in .*bad\.password/);
});

test('veil uninstall on hosts: refused while an agent holds its lease (this CLI cannot stop it), then removes the install', async () => {
  const e = env();
  const etcd = t.etcd;
  assert.equal(veil(e, 'cluster', 'add', 'hosts', '--etcd-endpoints', etcd.endpoints.join(','), '--ca', etcd.certs!.ca,
    '--cert', etcd.certs!.client.cert, '--key', etcd.certs!.client.key, '--username', 'veil', '--password-file', etcd.auth!.passwordFile).status, 0);
  assert.equal(veil(e, 'cluster', 'use', 'hosts').status, 0);
  const installed = veil(e, 'install', '--encryption', 'wireguard', '--wait-timeout', '1s');
  assert.match(veil(e, 'config', 'view').stdout, /enable-wireguard\s+true/, installed.stderr);
  await withEnv(e, async () => {
    const reg = openRegistry('hosts');
    try {
      const lease = await reg.holdLease('host-a', 15, { pid: 4242 });
      const refused = veil(e, 'uninstall');
      assert.equal(refused.status, 1, refused.stdout);
      assert.match(refused.stderr, /still hold their liveness leases on host-a .*systemctl disable --now veil-agent/);
      assert.match(veil(e, 'config', 'view').stdout, /enable-wireguard\s+true/, 'nothing removed');
      await lease.release();
      const done = veil(e, 'uninstall');
      assert.equal(done.status, 0, done.stderr);
      assert.doesNotMatch(veil(e, 'config', 'view').stdout, /enable-wireguard/);
    } finally { reg.close(); }
  });
});

test('a cluster the config does not name is refused with what to do; lab up and cluster use: the later wins', async () => {
  const e = env();
  await withEnv(e, async () => {
    assert.equal(currentCluster(), 'kind');
    assert.throws(() => openRegistry('kind'), (err) => isVeilError(err) && err.code === 'UNKNOWN_CLUSTER' && /veil lab up --name kind/.test(err.hint ?? ''));
  });
  assert.equal(veil(e, 'cluster', 'add', 'other', '--etcd-endpoints', 'http://127.0.0.1:1').status, 0);
  assert.equal(veil(e, 'cluster', 'use', 'other').status, 0);
  await withEnv(e, () => {
    assert.equal(currentCluster(), 'other');
    // what `veil lab up --name kind` does: it records its cluster as current on this machine
    writeFileSync(join(e.VEIL_HOME, 'current-cluster'), 'kind\n');
    assert.equal(currentCluster(), 'kind');
  });
  const unknown = veil(e, 'secret', 'get', 'x');
  assert.equal(unknown.status, 1);
  assert.match(unknown.stderr, /no cluster named 'kind' .*\(known: other\)/);
  const unreachable = veil(e, 'secret', 'get', 'x', '--cluster', 'other');
  assert.equal(unreachable.status, 1);
  assert.match(unreachable.stderr, /no etcd endpoint is reachable: http:\/\/127\.0\.0\.1:1 \(connection refused\)/);
});

test('the config file keeps its comments when an entry is rewritten, and is 0600; a broken file is named', async () => {
  const e = env();
  await withEnv(e, () => {
    writeFileSync(e.VEIL_CONFIG, '# our clusters\ncurrent-cluster: a  # the usual one\nclusters:\n  - name: a\n    registry: {type: etcd, endpoints: [unix:///run/a:2379]}\n');
    saveClusterEntry({ name: 'b', registry: { type: 'etcd', endpoints: ['http://127.0.0.1:2379'], username: 'veil', passwordFile: '/etc/veil/pw' } });
    const text = readFileSync(e.VEIL_CONFIG, 'utf8');
    assert.equal(statSync(e.VEIL_CONFIG).mode & 0o777, 0o600, 'it names credentials: root\'s (the user\'s) alone, also when it was 0644 before');
    assert.match(text, /# our clusters/);
    assert.match(text, /# the usual one/);
    const cfg = loadClusterConfig();
    assert.equal(cfg.currentCluster, 'a');
    assert.deepEqual(cfg.clusters.map((c) => c.name), ['a', 'b']);
    writeFileSync(e.VEIL_CONFIG, 'clusters:\n  - name: c\n    registry: {type: etcd, endpoints: [127.0.0.1:2379]}\n');
    assert.throws(() => loadClusterConfig(), (err) => isVeilError(err) && err.code === 'BAD_CLUSTER_CONFIG' && /cluster 'c': invalid etcd endpoint '127\.0\.0\.1:2379'/.test(err.message));
    writeFileSync(e.VEIL_CONFIG, 'clusters: [\n');
    assert.throws(() => openRegistry('kind'), (err) => isVeilError(err) && err.code === 'BAD_CLUSTER_CONFIG' && err.message.includes(e.VEIL_CONFIG));
  });
});
