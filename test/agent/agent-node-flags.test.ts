// The flags every launcher gives the agent's node on its command line (the lab's supervisor, the
// systemd unit, the DaemonSet): accepted without a warning; NODE_OPTIONS would refuse one of them,
// and where transparent huge pages are not off, how much of node's text landed on huge pages is
// reported (not asserted: the kernel backs the copy with 4 KiB pages when no 2 MiB page is free,
// which a busy machine may not have; the flag's effect is the bench's to show).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { AGENT_NODE_FLAGS } from '../../src/agent/agent-heap.js';

const PROBE = "process.stdout.write(/AnonHugePages:\\s+(\\d+)/.exec(require('fs').readFileSync('/proc/self/smaps_rollup', 'utf8'))[1])";
const thpOff = /\[never\]/.test(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'));

test("node takes the agent's flags on its command line", (t) => {
  const r = spawnSync(process.execPath, [...AGENT_NODE_FLAGS, '-e', PROBE], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '', 'no warning');
  assert.match(r.stdout, /^\d+$/, 'the probe ran under the flags');
  t.diagnostic(thpOff ? 'transparent huge pages off here' : `AnonHugePages ${r.stdout} kB (node's text on 2 MiB pages when ≥ 2048)`);
});

test('NODE_OPTIONS refuses --no-memory-reducer, which is why every launcher uses the command line', () => {
  const r = spawnSync(process.execPath, ['-e', '0'], { env: { ...process.env, NODE_OPTIONS: AGENT_NODE_FLAGS.join(' ') }, encoding: 'utf8' });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /--no-memory-reducer is not allowed in NODE_OPTIONS/);
});

// Executable mappings of 1 MiB or more outside node's image and its shared libraries: V8's copy (or
// file mapping) of its embedded builtins beside each thread's JIT code, made per isolate.
const BUILTIN_COPIES = "const { Worker } = require('worker_threads'); const w = new Worker('setTimeout(() => {}, 10000)', { eval: true }); w.on('online', () => { const maps = require('fs').readFileSync('/proc/self/maps', 'utf8').split('\\n').map((l) => l.split(/\\s+/)); const image = maps.filter((m) => m[5] === process.execPath).map((m) => m[0].split('-').map((x) => parseInt(x, 16))); const lo = Math.min(...image.map((r) => r[0])), hi = Math.max(...image.map((r) => r[1])); process.stdout.write(String(maps.filter((m) => m[1] && m[1][2] === 'x' && !(m[5] ?? '').includes('.so')).map((m) => m[0].split('-').map((x) => parseInt(x, 16))).filter(([a, b]) => b - a >= 1 << 20 && (a < lo || b > hi)).length)); void w.terminate(); });";

test("V8's builtins run from node's own text under the agent's flags: no copy beside a thread's JIT code", (t) => {
  const withFlags = spawnSync(process.execPath, [...AGENT_NODE_FLAGS, '-e', BUILTIN_COPIES], { encoding: 'utf8' });
  assert.equal(withFlags.status, 0, withFlags.stderr);
  assert.equal(withFlags.stdout, '0', 'no executable mapping of the builtins outside node\'s image (main thread and a worker)');
  const without = spawnSync(process.execPath, [...AGENT_NODE_FLAGS.filter((f) => f !== '--no-short-builtin-calls'), '-e', BUILTIN_COPIES], { encoding: 'utf8' });
  t.diagnostic(`without --no-short-builtin-calls: ${without.stdout} such mappings (one per thread: the main thread and a worker)`);
});
