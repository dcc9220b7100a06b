// The datapath worker answers every control request, though it sleeps in poll(2) where it cannot
// see its message port and learns of a request by the host's eventfd (worker-loop.ts): single
// requests after idle waits, a burst of 200 posted at once, and requests posted while packets wake
// it. Real worker thread, TUN and socket.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { deleteNetns, makeNetns, runScenario } from './fixtures/netns.js';

const SCENARIO = fileURLToPath(new URL('./fixtures/worker-requests-scenario.js', import.meta.url));
let ns: string | undefined;
after(() => { if (ns) deleteNetns(ns); });

test('the datapath worker answers every request: after idle waits, in a burst, and while packets come', { timeout: 120_000 }, () => {
  ns = makeNetns('wr');
  const res = runScenario(ns, [], SCENARIO, 100_000) as unknown as { single: number; burst: number; duringPackets: number; staged: number; peers: number };
  assert.equal(res.single, 5);
  assert.equal(res.burst, 200);
  assert.equal(res.duringPackets, 50);
  assert.equal(res.peers, 1);
  assert.ok(res.staged > 0, `packets reached the worker (staged ${res.staged})`);
});
