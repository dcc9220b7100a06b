// The benches' command lines: a wrong flag is answered by what is wrong and the usage (exit 2),
// --help by the usage (exit 0); none of them starts a lab or measures anything on the way.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

const bench = (file: string, ...args: string[]) => spawnSync(process.execPath, [`dist/bench/${file}`, ...args], { encoding: 'utf8', timeout: 30_000 });

for (const file of ['run.js', 'scale.js', 'interleaved-builds.js', 'lone-packet-hops.js']) {
  test(`${file}: an unknown flag, a flag without its value: what is wrong and the usage, exit 2`, () => {
    for (const args of [['--no-such-flag'], ['--out']]) {
      const r = bench(file, ...args);
      assert.equal(r.status, 2, `${file} ${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^bad option: /);
      assert.match(r.stderr, /Usage: node dist\/bench\//);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    }
  });

  test(`${file}: --help prints the usage, exit 0`, () => {
    const r = bench(file, '--help');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^Usage: node dist\/bench\//);
  });
}

test('interleaved-builds.js: an entry that names no mode, or fewer than two: exit 2, no lab made', () => {
  for (const args of [['--entry', 'a=/nowhere:bogus', '--entry', 'b=/nowhere:veil-ipsec'], ['--entry', 'a=/nowhere:veil-ipsec']]) {
    const r = bench('interleaved-builds.js', ...args);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /^bad option: .*(a mode of|at least two --entry)/);
  }
});
