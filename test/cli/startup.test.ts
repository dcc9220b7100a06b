// A CLI command loads what it uses: the Kubernetes client (~800 files), the certificate maker and the
// agent itself are loaded only by the commands that need them, so `veil status` on an etcd cluster
// and every `-h` start in a fraction of the time (every e2e test spawns veil hundreds of times).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

// A module resolve hook that names every file the process loads (on stderr, one per line).
const HOOK = `export async function resolve(s, c, next) { const r = await next(s, c); process.stderr.write('LOADED ' + r.url + '\\n'); return r; }`;
const REGISTER = `import { register } from 'node:module'; register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(HOOK)}));`;

function loaded(...args: string[]): string[] {
  const r = spawnSync(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(REGISTER)}`, 'dist/src/cli/main.js', ...args],
    { encoding: 'utf8', env: { ...process.env, VEIL_HOME: '/nonexistent-veil-home' } });
  assert.equal(r.status, 0, r.stderr);
  const urls = r.stderr.split('\n').filter((l) => l.startsWith('LOADED ')).map((l) => l.slice(7));
  assert.ok(urls.some((u) => u.endsWith('/cli/main.js')), 'the hook saw the CLI load');
  return urls;
}

const HEAVY = ['/node_modules/@kubernetes/client-node/', '/node_modules/@peculiar/x509/', '/node_modules/prom-client/', '/dist/src/agent/agent.js', '/dist/src/datapath/'];

test('help and the operator commands load neither the Kubernetes client, the certificate maker, the metrics library nor the agent', () => {
  for (const args of [['status', '-h'], ['agent', 'status', '-h'], ['agent', 'run', '-h'], ['install', '-h'], ['uninstall', '-h'], ['lab', 'exec', '-h'], ['encryption', 'status', '-h'], ['verify', '-h']]) {
    const urls = loaded(...args);
    for (const heavy of HEAVY) assert.ok(!urls.some((u) => u.includes(heavy)), `veil ${args.join(' ')} loaded ${heavy}`);
  }
});
