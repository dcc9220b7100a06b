// The ESP datapath's UDP GRO receive path on real sockets and a real TUN device: a GSO
// super-datagram of ESP packets is split, opened with nonces/AADs from the side area, and a
// replayed copy or a corrupted packet inside the same batch is dropped and counted by reason.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { mustRun, run } from '../../src/util/exec.js';

const SCENARIO = fileURLToPath(new URL('./fixtures/esp-engine-scenario.js', import.meta.url));
const ns = `veil-tesp-${process.pid}`;
after(() => { run(['ip', 'netns', 'del', ns]); });

interface Result {
  sent: number; datagrams: number; rxPackets: number; groSplit: number; inboundTop: number; inboundPackets: number;
  drops: Record<string, number>; counters: Record<string, number>;
  contexts: Record<string, number>; rxAfterIdle: number; txPackets: number;
  lateAfterIdle: { accepted: number; replay: number }; replayDropsInBatch: number; useTimeSkewMs: number;
}

test('ESP receive with UDP GRO: one super-datagram split and opened; an in-batch replay and a corrupted packet are dropped by reason; an SA keeps a native context and its replay window only while it carries traffic', () => {
  mustRun(['ip', 'netns', 'add', ns]);
  const r = run(['ip', 'netns', 'exec', ns, process.execPath, SCENARIO], { timeout: 60_000 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  assert.ok(r.status === 0 && line.startsWith('{'), `scenario failed (exit ${r.status}): ${r.stdout}${r.stderr}`);
  const res = JSON.parse(line) as Result;
  assert.equal(res.sent, res.datagrams, 'the kernel took every datagram');
  assert.ok(res.groSplit > 0, `the kernel delivered a coalesced datagram and it was split (groSplit ${res.groSplit})`);
  assert.equal(res.replayDropsInBatch, 1, 'the second copy of a sequence number in the same batch is a replay');
  assert.equal(res.drops['auth-failed'], 1, 'the bit-flipped packet fails its ICV');
  assert.equal(res.rxPackets, 39, 'every other packet reaches the TUN device');
  assert.equal(res.inboundPackets, 39);
  assert.equal(res.inboundTop, 40, 'the replay window moved to the highest authentic sequence number');
  assert.ok(Math.abs(res.useTimeSkewMs) < 10_000, `the SA's use time is wall-clock (${res.useTimeSkewMs} ms from Date.now())`);
  assert.equal(res.counters['sourceNotAllowed'], 0);
  for (const reason of ['truncated', 'bad-length', 'no-state', 'bad-padding', 'bad-next-header']) assert.equal(res.drops[reason], 0, reason);
  // A batch of many packets keeps a context; an idle sweep frees it; a lone packet (a probe) gets
  // one for its batch only; a second one soon after keeps one: inbound, then outbound.
  assert.deepEqual(res.contexts, {
    afterBatch: 1, afterEarlySweep: 1, afterIdle: 0, afterLonePacket: 0, afterSecondPacket: 1, afterLoneOut: 1, afterSecondOut: 2,
  }, 'native AEAD contexts held');
  assert.equal(res.rxAfterIdle, 2, 'both packets after the idle time are opened and delivered');
  assert.deepEqual(res.lateAfterIdle, { accepted: 0, replay: 1 }, 'an idle SA\'s window went: a number below its top never accepted is refused as a replay');
  assert.equal(res.txPackets, 2, 'both packets from the TUN device are sealed and sent');
});
