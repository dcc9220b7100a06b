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

test('a packet just after a write is no rate: another SA\'s write moments later keeps a slow tunnel\'s lead', () => {
  // 10 packets a second; its own write at 1 s, then another SA's write 2 ms later moves this mark too
  const m = new ReplayMark(0, 0);
  m.persisted(m.next(10, 10, 1000), 10, 10, 1000);
  const mark = m.next(11, 11, 1002);
  assert.ok(mark - 11 <= 10, `lead ${mark - 11}: a crash would drop ${((mark - 11) / 10).toFixed(0)} s of this tunnel, not a second`);
});

test('a busy tunnel whose writes come fast still reaches a second of its packets within a few writes', () => {
  const m = new ReplayMark(0, 0);
  const rate = 100_000; // packets a second, one sequence number each
  let now = 0, top = 0, writes = 0;
  let mark = m.durable;
  while (now < 5000) { // each write when the top reaches the mark
    const step = Math.max(1, mark - top);
    now += (step / rate) * 1000; top += step;
    mark = m.next(top, top, now);
    m.persisted(mark, top, top, now);
    writes++;
    if (mark - top >= rate * 0.9) break;
  }
  assert.ok(mark - top >= rate * 0.9, `lead ${mark - top} after ${writes} writes`);
  assert.ok(writes <= 20, `${writes} writes to grow the lead`);
});

test('a mark refilled ahead of need: past its first packet no packet of a steady tunnel waits for a write, and writes stay about one a second', () => {
  // The engine writes the next mark once refillDue() says so, off the packet path; a packet above
  // the durable mark would have to wait for a write (two fsyncs: milliseconds in its RTT).
  for (const rate of [10, 100, 1000, 100_000]) {
    const m = new ReplayMark(0, 0);
    let writes = 0, waited = 0;
    for (let seq = 1; seq <= rate * 10; seq++) {
      const now = seq * 1000 / rate;
      if (seq > m.durable) waited++;
      if (seq > m.durable || m.refillDue(seq)) {
        const mark = m.next(seq, seq - 1, now);
        if (mark > m.durable) { writes++; m.persisted(mark, seq, seq - 1, now); }
      }
    }
    assert.equal(waited, 1, `${rate}/s: only the first packet waits`);
    assert.ok(writes <= 40, `${rate}/s: ${writes} writes in 10 s`);
  }
});

test('no refill is due while the next mark is being written, and one is again after that write failed', () => {
  const m = new ReplayMark(0, 0);
  m.persisted(m.next(100, 100, 1000), 100, 100, 1000); // 100 packets in a second: the mark 200
  assert.ok(m.refillDue(175), 'three quarters of the lead used');
  m.writing();
  for (let top = 175; top <= 200; top++) assert.equal(m.refillDue(top), false, `${top}: the write on its way covers it`);
  m.writeFailed();
  assert.ok(m.refillDue(180), 'due again once the write failed');
  m.writing();
  m.persisted(m.next(180, 180, 1100), 180, 180, 1100);
  assert.equal(m.refillDue(185), false, 'the new lead is not used up');
  assert.ok(m.refillDue(m.durable), 'and due again at its end');
});
