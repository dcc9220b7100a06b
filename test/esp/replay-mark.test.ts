// The replay mark's lead follows the packets a tunnel carries, not its sequence numbers: a sender
// restarted after a crash jumps a whole reservation block (2^20) ahead, and a lead sized to that
// jump, once persisted and met by a crash of the receiver, dropped that tunnel's next 2^20 packets
// (found by the resilience test: kill -9 the sender's agent, then the receiver's: the direction
// stayed dead).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReplayMark, REPLAY_MAX_LEAD, REPLAY_MIN_LEAD } from '../../src/esp/replay-mark.js';
import { SEQUENCE_BLOCK } from '../../src/esp/sequence-store.js';

test('a sender\'s jump after its crash is no traffic: the lead stays the slow tunnel\'s', () => {
  const m = new ReplayMark(0, 0);
  m.persisted(m.next(10, 10, 1000), 10, 10, 1000); // 10 packets in a second
  const jumped = 10 + SEQUENCE_BLOCK; // the restarted sender's next number
  const mark = m.next(jumped, 12, 2000);
  assert.equal(mark - jumped, REPLAY_MIN_LEAD, 'a lead of a slow tunnel, not of the jump');
});

test('a busy tunnel gets a lead of about a second of its packets, capped', () => {
  const m = new ReplayMark(0, 0);
  assert.equal(m.next(50_000, 50_000, 1000) - 50_000, 50_000);
  assert.equal(m.next(5_000_000, 5_000_000, 1000) - 5_000_000, REPLAY_MAX_LEAD);
});
