// The datapath worker answers every control request, though it sleeps in poll(2) where it cannot
// see its message port and learns of a request by the host's eventfd (worker-loop.ts): single
// requests after idle waits, a burst of 200 posted at once, and requests posted while packets wake
// it. Real worker thread, TUN and socket.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { mustRun, run } from '../../src/util/exec.js';

const SCENARIO = fileURLToPath(new URL('./fixtures/worker-requests-scenario.js', import.meta.url));
const ns = `veil-twr-${process.pid}`;
after(() => { run(['ip', 'netns', 'del', ns]); });

test('the datapath worker answers every request: after idle waits, in a burst, and while packets come', { timeout: 120_000 }, () => {
  mustRun(['ip', 'netns', 'add', ns]);
  const r = run(['ip', 'netns', 'exec', ns, process.execPath, SCENARIO], { timeout: 100_000 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  assert.ok(r.status === 0 && line.startsWith('{'), `scenario failed (exit ${r.status}): ${r.stdout}${r.stderr}`);
  const res = JSON.parse(line) as { single: number; burst: number; duringPackets: number; staged: number; peers: number };
  assert.equal(res.single, 5);
  assert.equal(res.burst, 200);
  assert.equal(res.duringPackets, 50);
  assert.equal(res.peers, 1);
  assert.ok(res.staged > 0, `packets reached the worker (staged ${res.staged})`);
});
