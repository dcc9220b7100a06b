import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

test('veil --help lists the command groups', () => {
  const r = spawnSync(process.execPath, ['dist/src/cli/main.js', '--help'], { encoding: 'utf8' });
  assert.equal(r.status, 0);
  assert.match(r.stdout, /lab\s+Create and inspect/);
});

test('an unknown command fails with a hint', () => {
  const r = spawnSync(process.execPath, ['dist/src/cli/main.js', 'frobnicate'], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /unknown command 'frobnicate'.*veil --help/);
});
