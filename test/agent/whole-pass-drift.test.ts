// The agent's periodic whole pass is the safety net: with nothing changed it reads as little as it
// can and sends nothing, and every drift made behind its back, in the routing table or in the ESP
// datapath's table, is mended by the next one (the tunnel on a real routing table and a real ESP
// engine, in a throwaway namespace: fixtures/whole-pass-drift.ts).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { deleteNetns, makeNetns, runScenario } from '../datapath/fixtures/netns.js';

const SCENARIO = fileURLToPath(new URL('./fixtures/whole-pass-drift.js', import.meta.url));
let ns: string | undefined;
after(() => { if (ns) deleteNetns(ns); });

test("a whole pass with nothing changed sends nothing; one after drift mends it: a route deleted, moved or without its blackhole, a foreign route, a released route put back, a peer or key the datapath lost, an entry gone from its trie; specs kept in a form a message does not carry whole go as their messages", { timeout: 60_000 }, () => {
  ns = makeNetns('wpd');
  const { checks } = runScenario(ns, [], SCENARIO, 50_000) as { checks: Record<string, boolean> };
  assert.deepEqual(checks, {
    firstPass: true, nothingChanged: true, routeDeleted: true, blackholeDeleted: true, routeMoved: true, foreignRoute: true,
    releasedRouteBack: true, peerLost: true, keyLost: true, keyChangedByEvent: true, trieEntryLost: true,
    keptFormSameNotSent: true, keptFormChangeSent: true, keptFormWholePassHeld: true,
  });
});
