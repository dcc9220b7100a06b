// The datapath takes peer diffs (updatePeers) from the agent: at every step of a random run the
// engines hold exactly what the whole table (setPeers) would give, for WireGuard and ESP, on real
// TUN devices and sockets; the ESP table's digest is its specs' (the agent's periodic pass sends the
// table only when they differ) and every drift shows in it and is mended by the whole table, for
// both engines (WireGuard's of the table as given: a roam is no drift, and a resend keeps it); an
// ESP handover keeps every SA and key; and a WireGuard key rotation sent as a diff keeps the peer.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { deleteNetns, makeNetns, runScenario } from './fixtures/netns.js';

const SCENARIO = fileURLToPath(new URL('./fixtures/peer-updates-scenario.js', import.meta.url));
let ns: string | undefined;
after(() => { if (ns) deleteNetns(ns); });

test('peer diffs give the engines what the whole table gives; drift shows in either engine\'s digest and the table mends it, a WireGuard roam does not and stays; a rotation by diff keeps the WireGuard peer', { timeout: 120_000 }, () => {
  ns = makeNetns('pu');
  const res = runScenario(ns, [], SCENARIO, 100_000) as unknown as { seed: number; mismatches: string[]; drift: Record<string, boolean>; wgDrift: Record<string, boolean>; handoverKeepsKeys: boolean; rotation: Record<string, boolean> };
  assert.deepEqual(res.mismatches, [], `seed ${res.seed} (VEIL_TEST_SEED replays it)`);
  assert.deepEqual(res.drift, { peerGone: true, keyChanged: true, activeMoved: true, strayPeer: true, prefixLost: true, strayPrefix: true },
    `seed ${res.seed}: each drift of the ESP table changes its digest, and the whole table mends it`);
  assert.deepEqual(res.wgDrift, {
    peerGone: true, endpointChanged: true, endpointNone: true, keepaliveChanged: true, nameChanged: true, nextKeyChanged: true, keyChanged: true,
    strayPeer: true, prefixLost: true, strayPrefix: true, prefixMoved: true, tableLost: true, roamNoDrift: true, roamKept: true, movedSet: true,
  }, `seed ${res.seed}: each drift of the WireGuard table as given changes its digest and the whole table mends it; a roam is no drift, and a resend keeps it`);
  assert.ok(res.handoverKeepsKeys, `seed ${res.seed}: an ESP engine resumed from a handover holds every SA and key of the one before (its export survives close())`);
  assert.deepEqual(res.rotation, { announcedKeptInPlace: true, ownSwitchNoDrift: true, ownSwitchResent: true, removedAfterOwnSwitch: true, unannouncedRebuilt: true, looseKey: true, prefixFollows: true });
});
