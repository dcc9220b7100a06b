// Reading fields of /proc stat lines, including a real process whose command name holds ') ' and
// spaces, which a naive split on spaces or on the first ')' misreads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readStatField, statField } from '../../src/util/proc-stat.js';

test('statField counts fields from after the last ")" of the command name', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'veil-proc-stat-'));
  const odd = join(dir, 'v) R 1 (x');
  symlinkSync('/bin/sleep', odd);
  const child = spawn(odd, ['30'], { stdio: 'ignore' });
  try {
    await new Promise((r) => child.once('spawn', r));
    const path = `/proc/${child.pid}/stat`;
    assert.equal(readStatField(path, 4), String(process.pid), 'field 4 is the parent pid');
    assert.match(readStatField(path, 3) ?? '', /^[RSD]$/, 'field 3 is the state');
    assert.match(readStatField(path, 22) ?? '', /^\d+$/, 'field 22 is the start time');
  } finally {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('readStatField is undefined for a process that is gone; bad lines and fields are refused', () => {
  assert.equal(readStatField('/proc/0/stat', 3), undefined);
  assert.throws(() => statField('1 (a) S 0', 2), /only fields from 3 on/);
  assert.throws(() => statField('no parentheses here', 3), /not a \/proc stat line/);
  assert.throws(() => statField('1 (a) S 0', 9), /no field 9/);
  assert.equal(statField('1 (a) b) S 7', 4), '7');
});
