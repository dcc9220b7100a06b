// The marks file written on a thread of its own: a snapshot counts as written only once its write
// ended well, a newer snapshot covers an older one, a write into a missing directory fails (and
// says so) without taking the writer down, close() writes what is still queued, and a written
// snapshot outlives an agent killed right after it, with no fsync on the way (the keys it guards die
// with the boot id, and so does the page cache).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
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
    for (const g of gens) assert.equal(w.outcome(g), 'written', `generation ${g} is covered by the newest write`);
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

test('a write that cannot land fails, is never counted written, and the writer goes on', () => {
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

test('a written snapshot outlives the process killed right after it, and no write fsyncs', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'veil-tmw-'));
  try {
    const path = join(dir, 'marks.json');
    const writer = new URL('../../src/esp/sequence-mark-writer.js', import.meta.url).href;
    const script = `import { SequenceMarkWriter } from ${JSON.stringify(writer)};
      const marks = new Map(), w = new SequenceMarkWriter(${JSON.stringify(path)}, marks);
      for (let i = 1; i <= 20; i++) { marks.set('in 7 10.0.0.2>10.0.0.1 ab', i * 8); w.submit(); }
      marks.set('1 10.0.0.1>10.0.0.2', 1048576);
      if (!w.writeNow()) process.exit(3);
      process.kill(process.pid, 'SIGKILL');`; // no close(), no exit handlers: as an agent that crashed
    const r = spawnSync('strace', ['-f', '-qq', '-e', 'trace=fsync,fdatasync,sync_file_range,syncfs,sync,rename,renameat,renameat2', '-e', 'signal=none',
      process.execPath, '--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(r.signal ?? r.status, 'SIGKILL', `the child wrote, then was killed: ${r.stderr}`);
    assert.match(r.stderr, /rename(at2?)?\(.*\.tmp".*marks\.json"/, 'the marks are replaced by a rename');
    assert.doesNotMatch(r.stderr, /\b(fsync|fdatasync|sync_file_range|syncfs|sync)\(/, 'and never synced to disk');
    const read = await readSequenceMarks(path);
    assert.equal(read.get('in 7 10.0.0.2>10.0.0.1 ab'), 160);
    assert.equal(read.get('1 10.0.0.1>10.0.0.2'), 1048576);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
