// The one way veil replaces a file: whole or not at all, and (durable form) on disk before it
// returns. The system calls are checked under strace, atomicity by killing a writer mid-way.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic, writeFileDurable } from '../../src/util/durable-file.js';

const MODULE = new URL('../../src/util/durable-file.js', import.meta.url).href;

function withDir(fn: (dir: string) => void | Promise<void>): () => Promise<void> {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), 'veil-durable-'));
    try {
      await fn(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

test('replaces the contents, honours the mode of a new file, leaves no temporary file', withDir((dir) => {
  const path = join(dir, 'marks.json');
  writeFileDurable(path, 'one', { mode: 0o600 });
  assert.equal(readFileSync(path, 'utf8'), 'one');
  assert.equal(statSync(path).mode & 0o777, 0o600);
  writeFileDurable(path, new Uint8Array([0x74, 0x77, 0x6f]));
  assert.equal(readFileSync(path, 'utf8'), 'two');
  writeFileAtomic(path, 'three');
  assert.equal(readFileSync(path, 'utf8'), 'three');
  assert.deepEqual(readdirSync(dir), ['marks.json']);
}));

test('a failed replacement throws and leaves neither a temporary file nor a changed target', withDir((dir) => {
  assert.throws(() => writeFileDurable(join(dir, 'missing', 'f'), 'x'), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
  const target = join(dir, 'taken');
  mkdirSync(target); // rename(2) cannot replace a directory with a file
  assert.throws(() => writeFileDurable(target, 'x'), (e: NodeJS.ErrnoException) => e.code === 'EISDIR');
  assert.throws(() => writeFileAtomic(target, 'x'), (e: NodeJS.ErrnoException) => e.code === 'EISDIR');
  assert.ok(statSync(target).isDirectory());
  assert.deepEqual(readdirSync(dir), ['taken']);
}));

test('durable: the file is fsync\'d before the rename and its directory after; atomic: no fsync', withDir((dir) => {
  const script = `import { writeFileDurable, writeFileAtomic } from ${JSON.stringify(MODULE)};
    writeFileDurable(${JSON.stringify(join(dir, 'd.json'))}, 'durable');
    process.stderr.write('--- atomic\\n');
    writeFileAtomic(${JSON.stringify(join(dir, 'a.json'))}, 'atomic');`;
  const r = spawnSync('strace', ['-f', '-qq', '-e', 'trace=openat,fsync,rename,renameat,renameat2', '-e', 'signal=none',
    process.execPath, '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const [durablePart, atomicPart] = r.stderr.split('--- atomic');
  // Follow the temporary file's descriptor and the directory's through the calls, in order.
  const calls = durablePart!.split('\n').map((l) => l.replace(/^\[pid\s+\d+\]\s*/, ''));
  const openTmp = calls.findIndex((l) => /openat\(.*\/\.d\.json\.\d+\.[0-9a-f-]+\.tmp", O_WRONLY\|O_CREAT\|O_TRUNC/.test(l));
  assert.ok(openTmp >= 0, 'the temporary file is opened beside the target');
  const tmpFd = /= (\d+)$/.exec(calls[openTmp]!)![1];
  const fsyncTmp = calls.findIndex((l, i) => i > openTmp && l.startsWith(`fsync(${tmpFd})`));
  const rename = calls.findIndex((l) => /^rename(at2?)?\(.*\.tmp".*d\.json"/.test(l));
  const openDir = calls.findIndex((l, i) => i > rename && new RegExp(`openat\\(AT_FDCWD, "${dir}", O_RDONLY`).test(l));
  assert.ok(fsyncTmp > openTmp && rename > fsyncTmp, `fsync(file) before rename: ${calls.join('\n')}`);
  assert.ok(openDir > rename, 'the directory is opened after the rename');
  const dirFd = /= (\d+)$/.exec(calls[openDir]!)![1];
  assert.ok(calls.some((l, i) => i > openDir && l.startsWith(`fsync(${dirFd})`)), 'and fsync\'d');
  assert.ok(/rename(at2?)?\(.*\.tmp".*a\.json"/.test(atomicPart!), 'the atomic form renames too');
  assert.ok(!/fsync\(/.test(atomicPart!), 'but never fsyncs');
}));

test('a writer killed at any moment leaves the old contents or the new, whole', withDir(async (dir) => {
  const path = join(dir, 'state.json');
  // Two large contents, so that a kill lands inside a write more often than between them.
  const script = `import { writeFileAtomic } from ${JSON.stringify(MODULE)};
    const a = JSON.stringify({ v: 'a'.repeat(1 << 20) }), b = JSON.stringify({ v: 'b'.repeat(1 << 20) });
    writeFileAtomic(${JSON.stringify(path)}, a);
    process.stdout.write('ready\\n');
    for (let i = 0; ; i++) writeFileAtomic(${JSON.stringify(path)}, i % 2 ? a : b);`;
  for (let round = 0; round < 5; round++) {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    await new Promise((resolve) => setTimeout(resolve, 20 + 15 * round));
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    const v = (JSON.parse(readFileSync(path, 'utf8')) as { v: string }).v;
    assert.ok(v === 'a'.repeat(1 << 20) || v === 'b'.repeat(1 << 20), 'one of the two contents, whole');
  }
}));
