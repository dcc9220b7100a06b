// Replay protection across receiver restarts, on a real EspEngine, TUN device and UDP sockets: every
// datagram a receiver accepted is refused after a clean stop and after a crash (its persisted
// replay mark covers it), fresh packets flow right after a clean stop, a sender above 2^32 is
// followed across both (the mark is a full ESN number), and after a crash only numbers up to the
// mark's small lead are lost.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { mustRun, run } from '../../src/util/exec.js';

const SCENARIO = fileURLToPath(new URL('./fixtures/esp-replay-restart-scenario.js', import.meta.url));
const ns = `veil-trep-${process.pid}`;
after(() => { run(['ip', 'netns', 'del', ns]); });

interface Phase { phase: string; sent: number; accepted: number; replay: number; authFailed: number; markFailed: number }
interface Marks { phase: 'marks'; after: string; marks: number[]; last: number[] }

test('ESP replay marks: a restarted receiver (clean stop or crash) refuses every captured datagram again and follows a sender above 2^32', () => {
  mustRun(['ip', 'netns', 'add', ns]);
  const r = run(['ip', 'netns', 'exec', ns, process.execPath, SCENARIO], { timeout: 60_000 });
  assert.equal(r.status, 0, `scenario failed (exit ${r.status}): ${r.stdout}${r.stderr}`);
  const [first, crossing, clean, replayClean, freshClean, crash, replayCrash, freshCrash, freshJump] =
    r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Phase & Marks);
  assert.ok(first && crossing && clean && replayClean && freshClean && crash && replayCrash && freshCrash && freshJump, r.stdout);
  assert.equal(first.accepted + crossing.accepted, 200, 'both senders reach the receiver');
  assert.ok(clean.last[1]! > 2 ** 32, 'the second sender crossed 2^32');
  assert.deepEqual(clean.marks, clean.last, 'a clean stop persists the exact tops');

  assert.equal(replayClean.accepted, 0, 'after a clean restart no captured datagram is accepted again');
  assert.equal(replayClean.replay + replayClean.authFailed, 200);
  assert.equal(freshClean.accepted, 200, 'fresh packets flow at once, also from the sender above 2^32');

  for (const i of [0, 1]) assert.ok(crash.marks[i]! >= crash.last[i]!, `the running receiver's mark covers all it accepted (${crash.marks[i]} >= ${crash.last[i]})`);
  assert.equal(replayCrash.accepted, 0, 'after a crash no captured datagram is accepted again');
  assert.equal(replayCrash.replay + replayCrash.authFailed, 400);
  const lost = freshCrash.sent - freshCrash.accepted;
  assert.equal(freshCrash.replay + freshCrash.authFailed, lost, 'fresh packets under the mark are dropped as replays');
  assert.equal(freshJump.accepted, 40, 'numbers above the mark are accepted after a crash (ESN high half right)');
  assert.equal(freshJump.markFailed, 0);
  console.log(`# after a crash: marks led the tops by ${crash.marks.map((m, i) => m - crash.last[i]!).join(' and ')}; ${lost}/40 fresh packets under them dropped`);
});
