// The agent's periodic whole pass is the safety net: with nothing changed it reads as little as it
// can and sends nothing, and every drift made behind its back, in the routing table or in the ESP
// datapath's table, is mended by the next one (the tunnel on a real routing table and a real ESP
// engine, in a throwaway namespace: fixtures/whole-pass-drift.ts).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { mustRun, run } from '../../src/util/exec.js';

const SCENARIO = fileURLToPath(new URL('./fixtures/whole-pass-drift.js', import.meta.url));
const ns = `veil-wpd-${process.pid}`;
after(() => { run(['ip', 'netns', 'del', ns]); });

test("a whole pass with nothing changed sends nothing; one after drift mends it: a route deleted, moved or without its blackhole, a foreign route, a released route put back, a peer or key the datapath lost, an entry gone from its trie", { timeout: 60_000 }, () => {
  mustRun(['ip', 'netns', 'add', ns]);
  const r = run(['ip', 'netns', 'exec', ns, process.execPath, SCENARIO], { timeout: 50_000 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  assert.ok(r.status === 0 && line.startsWith('{'), `scenario failed (exit ${r.status}): ${r.stdout}${r.stderr}`);
  const { checks } = JSON.parse(line) as { checks: Record<string, boolean> };
  assert.deepEqual(checks, {
    firstPass: true, nothingChanged: true, routeDeleted: true, blackholeDeleted: true, routeMoved: true, foreignRoute: true,
    releasedRouteBack: true, peerLost: true, keyLost: true, keyChangedByEvent: true, trieEntryLost: true,
  });
});
