// ESN replay window (RFC 4303 A2) and the sequence reservation that keeps (key, IV) pairs unique
// across restarts, including a receiver that keeps running while its sender restarts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EspReplayWindow } from '../../src/esp/replay-window.js';
import { OutboundSequence, SEQ_NOT_RESERVED, SEQUENCE_BLOCK } from '../../src/esp/sequence-store.js';
import { readSequenceMarks, replayMarkId, sequenceMarkId } from '../../src/esp/sequence-mark-file.js';
import { SequenceMarkWriter } from '../../src/esp/sequence-mark-writer.js';
import { AEAD_GCM, packTransforms, type EspTransform } from '../../src/esp/esp-transform.js';
import { createOutboundSa } from '../../src/esp/security-association.js';
import { decodeEsp, newDropCounters } from '../../src/esp/esp-decoder.js';
import { sealEsp } from '../../src/esp/esp-encoder.js';
import { isVeilError } from '../../src/util/errors.js';
import { gcm, icmpEcho, saPair } from './esp-helpers.js';

const TWO_32 = 2 ** 32;

/** The marks written as the engine writes them (its writer thread), waited for. */
function writeMarks(file: string, marks: Map<string, number>): void {
  const writer = new SequenceMarkWriter(file, marks);
  try {
    assert.ok(writer.writeNow(), `the marks written to ${file}`);
  } finally {
    writer.close();
  }
}

function accept(w: EspReplayWindow, low: number): number {
  const seq = w.infer(low);
  if (seq < 0 || !w.check(seq)) return -1;
  w.accept(seq);
  return seq;
}

test('replay window: accept() refuses a copy accepted since check() (two copies in one batch)', () => {
  const w = new EspReplayWindow();
  assert.ok(w.check(7) && w.check(7), 'both copies pass the pre-check');
  assert.equal(w.accept(7), true);
  assert.equal(w.accept(7), false, 'the second copy is a replay');
  assert.equal(w.top, 7);
});

test('replay window: duplicates refused, reordering within 1024 accepted, older refused', () => {
  const w = new EspReplayWindow();
  for (let s = 1; s <= 100; s++) assert.equal(accept(w, s), s);
  assert.equal(accept(w, 50), -1, 'duplicate');
  assert.equal(accept(w, 2000), 2000);
  assert.equal(accept(w, 977), 977, 'inside the window, unseen');
  assert.equal(accept(w, 977), -1);
  // Just outside the window (2000 - 1024): only the low bits travel, so A2.2 reads it as the next
  // 2^32 block, where its ICV fails (the decoder then counts a replay); as itself it is refused.
  assert.equal(w.infer(976), TWO_32 + 976);
  assert.equal(w.check(976), false);
  assert.equal(accept(w, 1999), 1999);
  assert.equal(w.check(0), false, 'sequence number 0 is never valid');
  // A jump of more than the window clears it.
  assert.equal(accept(w, 5000), 5000);
  assert.equal(accept(w, 4000), 4000);
  assert.equal(accept(w, 3977), 3977, 'the oldest number inside the window (5000 - 1023)');
  assert.equal(w.check(3977), false);
  assert.equal(w.check(3976), false, 'outside the window');
  assert.equal(w.check(3978), true);
});

test('replay window with ESN: high bits inferred across the 2^32 boundary (RFC 4303 A2.2)', () => {
  const w = new EspReplayWindow(1024, TWO_32 - 2000); // resumed near the boundary
  assert.equal(w.infer(TWO_32 - 5), TWO_32 - 5);
  assert.equal(accept(w, TWO_32 - 5), TWO_32 - 5);
  assert.equal(accept(w, 3), TWO_32 + 3, 'wrapped: the next block');
  assert.equal(w.top, TWO_32 + 3);
  // Window now spans two blocks: late packets from below the boundary keep their old high bits.
  assert.equal(w.infer(TWO_32 - 100), TWO_32 - 100);
  assert.equal(accept(w, TWO_32 - 100), TWO_32 - 100);
  assert.equal(accept(w, TWO_32 - 5), -1, 'already seen before the wrap');
  assert.equal(accept(w, TWO_32 - 1), TWO_32 - 1);
  assert.equal(w.infer(1000), TWO_32 + 1000);
  const fresh = new EspReplayWindow();
  assert.equal(fresh.infer(TWO_32 - 1), -1, 'a fresh window cannot place numbers just below 2^32');
  const resumed = new EspReplayWindow(1024, 5000);
  assert.equal(accept(resumed, 4990), -1, 'a resumed window treats everything up to its top as seen');
  assert.equal(accept(resumed, 5001), 5001);
});

test('sequence reservation: nothing is sent before the first block is persisted; later blocks are asked for early', () => {
  const s = new OutboundSequence(0, 16);
  assert.equal(s.take(), SEQ_NOT_RESERVED);
  assert.equal(s.persistDue(), 16);
  assert.equal(s.persistDue(), undefined, 'one request at a time');
  assert.equal(s.take(), SEQ_NOT_RESERVED, 'still not durable');
  s.persisted(16);
  const used: number[] = [];
  for (let i = 0; i < 9; i++) used.push(s.take());
  assert.deepEqual(used, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.equal(s.persistDue(), 32, 'less than half a block left: reserve the next one');
  for (let i = 10; i <= 16; i++) assert.equal(s.take(), i);
  assert.equal(s.take(), SEQ_NOT_RESERVED, 'block exhausted before the next was persisted: hold');
  s.persistFailed();
  assert.equal(s.persistDue(), 32, 'a failed write is asked for again');
  s.persisted(32);
  assert.equal(s.take(), 17);
  assert.equal(s.last, 17);
  assert.equal(new OutboundSequence(0).blockSize, SEQUENCE_BLOCK);
});

test('restart: the sender resumes above the persisted mark, never reusing an IV; the running receiver accepts it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'veil-tseq-'));
  try {
    const file = join(dir, 'ipsec-seq.json');
    const t = gcm();
    const { in: inSa } = saPair(t);
    const drops = newDropCounters();
    const id = sequenceMarkId(3, '10.0.0.1', '10.0.0.2');
    const block = 64;
    const ivs = new Set<string>();
    const inner = icmpEcho('192.168.0.1', '192.168.0.2', 'restart');

    async function runSender(packets: number): Promise<void> {
      const marks = await readSequenceMarks(file);
      const out = createOutboundSa({ spi: 3, src: '10.0.0.1', dst: '10.0.0.2', transform: t, nowMs: 0, sequence: new OutboundSequence(marks.get(id) ?? 0, block) });
      const sequence = out.sequence; // the SA's own (it took the one given over)
      for (let sent = 0; sent < packets;) {
        const due = sequence.persistDue();
        if (due !== undefined) {
          marks.set(id, due);
          writeMarks(file, marks);
          sequence.persisted(due);
        }
        const p = sealEsp(out, inner, 0);
        if (typeof p === 'string') { assert.equal(p, 'sequence-not-reserved'); continue; }
        const iv = Buffer.from(p.subarray(8, 16)).toString('hex');
        assert.ok(!ivs.has(iv), `IV ${iv} reused`);
        ivs.add(iv);
        const r = decodeEsp(inSa, p, 0, drops);
        assert.ok(r.ok, JSON.stringify(drops));
        sent++;
      }
      // "crash": the SA and its sequence are dropped without any final write
    }
    await runSender(100);
    await runSender(10);
    await runSender(250);
    assert.equal(ivs.size, 360);
    assert.equal(drops.replay, 0, 'no replay drops for the restarted sender');
    assert.equal(inSa.packets, 360);
    assert.ok(inSa.replay.top > 360, 'the sender jumped ahead');
    assert.deepEqual(readdirSync(dir), ['ipsec-seq.json'], 'no temporary files left');
    assert.ok((await readSequenceMarks(file)).get(id)! >= inSa.replay.top);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('mark file: missing file is empty, round trip, corrupt file is a clear error', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'veil-tseq-'));
  try {
    const file = join(dir, 'marks.json');
    assert.equal((await readSequenceMarks(file)).size, 0);
    writeMarks(file, new Map([['a', 5], ['b', 2 ** 40]]));
    assert.deepEqual([...(await readSequenceMarks(file))], [['a', 5], ['b', 2 ** 40]]);
    assert.match(readFileSync(file, 'utf8'), /"b":1099511627776/);
    for (const bad of ['{', '[]', '{"a":-1}', '{"a":"5"}', 'null']) {
      writeFileSync(file, bad);
      await assert.rejects(readSequenceMarks(file), (e: unknown) => isVeilError(e) && e.code === 'IPSEC_SEQ_MARKS_CORRUPT');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('replay mark id: the key\'s fingerprint as files already hold it (an id that changed would lose every persisted top)', () => {
  const t: EspTransform = { kind: 'aead', name: AEAD_GCM, key: Uint8Array.from({ length: 16 }, (_, i) => i), salt: Uint8Array.of(0xa0, 0xa1, 0xa2, 0xa3), icvLength: 16 };
  // SHA-256 of key then salt, its first 16 hex digits, as written by every earlier build
  const id = 'in 7 10.0.0.2>10.0.0.1 ' + createHash('sha256').update(t.key).update(t.salt).digest('hex').slice(0, 16);
  assert.equal(replayMarkId(7, '10.0.0.2', '10.0.0.1', t), id);
  assert.equal(replayMarkId(7, '10.0.0.2', '10.0.0.1', packTransforms([t])[0]!), id, 'packed or not, the same id');
});
