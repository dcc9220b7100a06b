// The agent's periodic whole pass is the safety net: with nothing changed it reads as little as it
// can and sends nothing, and every drift made behind its back, in the routing table or in the
// datapath's table, is mended by the next one (the tunnel on a real routing table and a real ESP or
// WireGuard engine, in a throwaway namespace: fixtures/whole-pass-drift.ts, -wireguard.ts).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { deleteNetns, makeNetns, runScenario } from '../datapath/fixtures/netns.js';

const SCENARIO = fileURLToPath(new URL('./fixtures/whole-pass-drift.js', import.meta.url));
const WIREGUARD = fileURLToPath(new URL('./fixtures/whole-pass-drift-wireguard.js', import.meta.url));
let ns: string | undefined, wgNs: string | undefined;
after(() => { if (ns) deleteNetns(ns); if (wgNs) deleteNetns(wgNs); });

test("a whole pass with nothing changed sends nothing; one after drift mends it: a route deleted, moved or without its blackhole, a foreign route, a released route put back, a peer or key the datapath lost, an entry gone from its trie; specs kept in a form a message does not carry whole go as their messages", { timeout: 60_000 }, () => {
  ns = makeNetns('wpd');
  const { checks } = runScenario(ns, [], SCENARIO, 50_000) as { checks: Record<string, boolean> };
  assert.deepEqual(checks, {
    firstPass: true, nothingChanged: true, routeDeleted: true, blackholeDeleted: true, routeMoved: true, foreignRoute: true,
    releasedRouteBack: true, peerLost: true, keyLost: true, keyChangedByEvent: true, trieEntryLost: true,
    keptFormSameNotSent: true, keptFormChangeSent: true, keptFormWholePassHeld: true,
  });
});

test('WireGuard: a whole pass with nothing changed sends no table, nor for a peer that roamed (which stays where it roamed); one after drift of the table as given mends it: a peer, a keepalive, the whole table or a trie entry the datapath lost', { timeout: 60_000 }, () => {
  wgNs = makeNetns('wpw');
  const { checks } = runScenario(wgNs, [], WIREGUARD, 50_000) as { checks: Record<string, boolean> };
  assert.deepEqual(checks, {
    firstPass: true, nothingChanged: true, roamKept: true, peerLost: true, keepaliveLost: true, tableLost: true,
    movedByEvent: true, movedHeld: true, trieEntryLost: true,
  });
});
