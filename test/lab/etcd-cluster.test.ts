// The lab's real etcd: members start healthy (with TLS and auth when asked), a member can be
// killed and restarted on its data, and stopAll leaves no process and no file behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { EtcdCluster } from '../../src/lab/etcd-cluster.js';

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

test('a TLS + auth etcd: healthy, data survives a SIGKILL and restart, stopAll removes every process and file', async () => {
  const etcd = await EtcdCluster.start({ members: 1, tls: true, auth: true });
  let pids: number[] = [];
  try {
    assert.match(etcd.endpoints[0]!, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(etcd.members[0]!.name, 'veil-etcd-0');
    assert.match(readFileSync(etcd.certs!.ca, 'utf8'), /BEGIN CERTIFICATE/);
    // auth is on: root can write, the veil user only under veil/, nobody without credentials
    await etcd.etcdctl(['put', 'veil/x', '1']);
    await etcd.etcdctl(['put', 'veil/y', '2'], etcd.members, `veil:${etcd.auth!.password}`);
    await assert.rejects(etcd.etcdctl(['put', 'other/y', '2'], etcd.members, `veil:${etcd.auth!.password}`), /permission denied/);
    const first = etcd.members[0]!.process!.pid!;
    await etcd.kill(0);
    assert.equal(alive(first), false);
    await etcd.restart(0);
    assert.notEqual(etcd.members[0]!.process!.pid, first);
    assert.equal((await etcd.etcdctl(['get', '--print-value-only', 'veil/y'])).trim(), '2');
    pids = etcd.members.map((m) => m.process!.pid!);
  } finally {
    await etcd.stopAll();
  }
  for (const pid of pids) assert.equal(alive(pid), false, `etcd ${pid} stopped`);
  assert.equal(existsSync(etcd.dir), false);
});
