// The keepalives and initiations one timer tick makes leave in one sendmmsg (send-queue.ts),
// not one sendto each; one the kernel refuses (no route) is counted and the others still go. A
// real engine, TUN device and sockets in a throwaway namespace.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { deleteNetns, makeNetns, runScenario } from './fixtures/netns.js';

const SCENARIO = fileURLToPath(new URL('./fixtures/tick-sends-scenario.js', import.meta.url));
let ns: string | undefined;
after(() => { if (ns) deleteNetns(ns); });

interface Part { fired: number; sendCalls: number; sent: number; sendFailed: number; txPackets: number; initiations: number[]; other: number }

test("a tick's handshake initiations to ten peers leave in one sendmmsg; an unreachable peer's is counted and the rest arrive", { timeout: 60_000 }, () => {
  ns = makeNetns('tks');
  const r = runScenario(ns, [], SCENARIO, 30_000) as unknown as { together: Part; refused: Part };
  const t = r.together;
  assert.equal(t.fired, 10, 'every peer timer fired');
  assert.equal(t.sendCalls, 1, `the tick's ten datagrams in one send call: ${JSON.stringify(t)}`);
  assert.equal(t.sent, 10);
  assert.equal(t.initiations.length, 10, 'ten initiations arrived');
  assert.equal(new Set(t.initiations).size, 10, 'each from its own handshake (sender index)');
  assert.equal(t.other, 0);
  assert.equal(t.sendFailed, 0);
  assert.equal(t.txPackets, 0, 'an initiation is no transport packet');
  const f = r.refused;
  assert.equal(f.fired, 11);
  assert.equal(f.initiations.length, 10, `the ten reachable peers' initiations arrived, those after the refused one too: ${JSON.stringify(f)}`);
  assert.equal(new Set(f.initiations).size, 10);
  assert.equal(f.sendFailed, 1, 'the unreachable one counted as failed');
});
