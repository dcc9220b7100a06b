// e2e: `veil demo` (README's main job) runs the whole tutorial on a fresh lab and leaves nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const MAIN = join(process.cwd(), 'dist/src/cli/main.js');
const CLUSTER = `tdemo-${process.pid}`; // a run cut off mid-test must not collide with the next

function namespaces(): string[] {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  return r.stdout.split('\n').map((l) => l.split(' ')[0]!).filter((n) => n.startsWith(`veil-${CLUSTER}_`));
}

test('e2e demo: the tutorial passes end to end and tears its lab down', { timeout: 240_000 }, () => {
  const home = mkdtempSync(join(tmpdir(), 'veil-tdemo-'));
  try {
    const r = spawnSync(process.execPath, [MAIN, 'demo', '--name', CLUSTER], { encoding: 'utf8', env: { ...process.env, VEIL_HOME: home }, timeout: 230_000 });
    const out = r.stdout + r.stderr;
    assert.equal(r.status, 0, out);
    assert.match(out, /Found existing encryption secret ipsec-keys/);
    assert.match(out, /ESP\(spi=0x00000003/);
    assert.match(out, /ESP\(spi=0x00000004/);
    assert.match(out, /, 0% packet loss/);
    assert.match(out, /veil_wg0 \(Pubkey: [A-Za-z0-9+/]{43}=, Port: 51871, Peers: 3\)/);
    assert.match(out, /veil verify passed: 12\/12 node pairs/);
    assert.deepEqual(namespaces(), []);
    assert.ok(!existsSync(join(home, 'clusters', CLUSTER)) || readdirSync(join(home, 'clusters', CLUSTER)).length === 0);
  } finally {
    spawnSync(process.execPath, [MAIN, 'lab', 'down', '--name', CLUSTER], { env: { ...process.env, VEIL_HOME: home } });
    rmSync(home, { recursive: true, force: true });
  }
});

test('e2e demo: refuses to reuse an existing lab and leaves it alone', { timeout: 60_000 }, () => {
  const home = mkdtempSync(join(tmpdir(), 'veil-tdemo-'));
  const env = { ...process.env, VEIL_HOME: home };
  try {
    assert.equal(spawnSync(process.execPath, [MAIN, 'lab', 'up', '--name', CLUSTER, '--nodes', '2'], { env }).status, 0);
    const r = spawnSync(process.execPath, [MAIN, 'demo', '--name', CLUSTER], { encoding: 'utf8', env });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, new RegExp(`already exists.*lab down --name ${CLUSTER}`));
    assert.equal(namespaces().length, 4, 'the existing lab (2 nodes, fabric, etcd) is untouched');
    assert.equal(spawnSync(process.execPath, [MAIN, 'secret', 'get', 'nope', '--cluster', CLUSTER], { encoding: 'utf8', env }).stderr.includes('not found'), true, 'and its etcd still answers');
  } finally {
    spawnSync(process.execPath, [MAIN, 'lab', 'down', '--name', CLUSTER], { env });
    rmSync(home, { recursive: true, force: true });
  }
});
