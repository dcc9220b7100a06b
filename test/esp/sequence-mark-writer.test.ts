// The marks file written on a thread of its own: a snapshot counts as durable only once its write
// ended well, a newer snapshot covers an older one, a write into a missing directory fails (and
// says so) without taking the writer down, and close() writes what is still queued.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSequenceMarks } from '../../src/esp/sequence-mark-file.js';
import { SequenceMarkWriter } from '../../src/esp/sequence-mark-writer.js';

test('snapshots are written in order, the newest wins, and a generation is durable once written', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'veil-tmw-'));
  try {
    const path = join(dir, 'marks.json');
    const marks = new Map<string, number>();
    const w = new SequenceMarkWriter(path, marks);
    const gens: number[] = [];
    for (let i = 1; i <= 50; i++) { marks.set('1 10.0.0.1>10.0.0.2', i * 8); gens.push(w.submit()); }
    assert.deepEqual(gens, Array.from({ length: 50 }, (_, i) => i + 1), 'generations count up');
    w.poll(50);
    for (const g of gens) assert.equal(w.outcome(g), 'durable', `generation ${g} is covered by the newest write`);
    assert.equal((await readSequenceMarks(path)).get('1 10.0.0.1>10.0.0.2'), 400);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    marks.set('in 2 10.0.0.2>10.0.0.1 00', 7);
    assert.equal(w.writeNow(), true);
    assert.equal((await readSequenceMarks(path)).get('in 2 10.0.0.2>10.0.0.1 00'), 7);
    marks.set('in 2 10.0.0.2>10.0.0.1 00', 9);
    const last = w.submit();
    w.close(); // writes what is queued
    assert.equal((await readSequenceMarks(path)).get('in 2 10.0.0.2>10.0.0.1 00'), 9);
    assert.throws(() => w.submit(), /closed/);
    assert.equal(last, 52);
    assert.deepEqual(readdirSync(dir), ['marks.json'], 'no temporary file left');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a write that cannot land fails, is never counted durable, and the writer goes on', () => {
  const dir = mkdtempSync(join(tmpdir(), 'veil-tmw-'));
  try {
    const path = join(dir, 'gone', 'marks.json');
    const marks = new Map([['1 a>b', 1]]);
    const w = new SequenceMarkWriter(path, marks);
    const g = w.submit();
    w.poll(g);
    assert.equal(w.outcome(g), 'failed');
    assert.equal(w.writeNow(), false);
    w.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
